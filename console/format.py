"""Provides the helpers that turn stored values into safe, compact display text.

Customer text is data: it is always wrapped in :class:`rich.text.Text` (never parsed as
markup), control characters that a terminal would act on are made visible, and cells are cut
to a bounded length so a 10,000-character line cannot push a table out of shape.
"""

from __future__ import annotations

import time

from rich.text import Text

# Bidi embedding/override/isolate controls reorder whatever follows them on the line; shown
# literally they would let a message visually rewrite neighbouring cells ("Trojan source").
_BIDI_CONTROLS = frozenset(
    chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)
)
MAX_DETAIL_CHARS = 20_000
"""Longest text shown for one message in the detail views (the rest is summarised)."""


def _visible(ch: str, *, keep_newlines: bool) -> str:
    if ch == "\n":
        return "\n" if keep_newlines else " ⏎ "
    if ch == "\t":
        return "    " if keep_newlines else " "
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # Unicode "control pictures": ␛ for ESC, ␀ for NUL …
    if code == 0x7F:
        return "␡"
    if 0x80 <= code < 0xA0 or ch in _BIDI_CONTROLS:
        return "�"
    return ch


def clean(value: object, *, keep_newlines: bool = False) -> str:
    """Makes any value printable: control characters become visible symbols."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(_visible(ch, keep_newlines=keep_newlines) for ch in text)


def literal(value: object, limit: int = 80, style: str = "") -> Text:
    """One line of untrusted text for a table cell, cut to ``limit`` characters."""
    text = clean(value)
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return Text(text, style=style, no_wrap=True, overflow="ellipsis", end="")


def block(value: object, limit: int = MAX_DETAIL_CHARS, style: str = "") -> Text:
    """Multi-line untrusted text (a message body), wrapped by the widget, bounded in size."""
    raw = "" if value is None else str(value)
    extra = len(raw) - limit
    text = clean(raw[:limit] if extra > 0 else raw, keep_newlines=True)
    out = Text(text, style=style)
    if extra > 0:
        out.append(f" … ({extra:,} more characters)", style="dim italic")
    return out


def age(seconds: float | None) -> str:
    """A compact age: 42s, 5m, 3h, 2d (``-`` when unknown)."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def since(at: float | None, now: float) -> str:
    """Age of an epoch timestamp relative to ``now``."""
    return age(None if at is None else now - at)


def clock_time(at: float | None) -> str:
    """Local wall-clock time of an epoch (HH:MM:SS), or ``-``."""
    if at is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(at))


def stamp(at: float | None) -> str:
    """Local date and time of an epoch (YYYY-MM-DD HH:MM:SS), or ``-``."""
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def seconds(value: float | None) -> str:
    """A duration: 850ms, 1.2s, 3m."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    return age(value)



def size(value: float | None) -> str:
    """A byte count as KiB, MiB or GiB (``-`` when unknown)."""
    if value is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"
