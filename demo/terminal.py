"""Provides the demo's terminal plumbing: output that survives a reader going away, and Ctrl-C
for the demo alone.

``say``/``complain`` write one line to stdout/stderr. ``make run 2>&1 | tee demo.log`` and
then a Ctrl-C ends ``tee``: from then on every write would raise ``BrokenPipeError`` (Python
ignores SIGPIPE), including the one in the signal handler and Python's own flush at exit. The
first failed write points that stream at ``/dev/null`` (the recipe in Python's ``signal``
docs), so the demo goes on stopping cleanly with nobody to read it.

``take_foreground`` makes the demo the terminal's foreground process group while it runs (what
a shell does for each job), so a Ctrl-C reaches the demo and not the program that started it.
That program is ``make`` in ``make run``: GNU make, sent SIGINT, waits for its child and then
kills itself with the same signal whatever the child's status (``make: *** [run] Interrupt``,
status 130). With the terminal's Ctrl-C going to the demo alone, make sees the demo's own clean
exit, 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Literal

Stream = Literal["stdout", "stderr"]


def say(line: str = "") -> None:
    """One line to stdout (the banner, the feed, the summary)."""
    _write("stdout", line)


def complain(line: str) -> None:
    """One line to stderr (why the demo cannot start)."""
    _write("stderr", line)


def _write(name: Stream, line: str) -> None:
    stream = getattr(sys, name)
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):  # EPIPE, EIO (terminal gone), or the stream already closed
        silence(name)


def silence(name: Stream) -> None:
    """Points ``sys.<name>`` at /dev/null: its reader is gone, and nothing written later (nor
    the interpreter's flush at exit) may fail or block."""
    stream = getattr(sys, name)
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (replaced, or closed): swap the object
        setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives until exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def take_foreground() -> Callable[[], None] | None:
    """Makes this process its own process group and the terminal's foreground one.

    Returns the function that gives the terminal back (call it before exiting), or None when
    nothing was changed: no controlling terminal, started in the background, or already a
    group of its own (run straight from a shell). While the demo holds the terminal, Ctrl-Z is
    ignored: a stopped demo would keep the terminal, and the shell, which only knows about
    ``make``, could not give it back.
    """
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    parent_group = os.getpgrp()
    try:
        foreground = os.tcgetpgrp(tty) == parent_group
    except OSError:
        foreground = False
    if not foreground or parent_group == os.getpid():
        os.close(tty)
        return None
    # A process outside the foreground group that changes it is sent SIGTTOU (which stops it)
    # unless it ignores the signal; the demo is such a process once it has a group of its own.
    previous_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    previous_tstp = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(tty, os.getpgrp())
    except OSError:
        with contextlib.suppress(OSError):  # back into make's group: Ctrl-C must reach the demo
            os.setpgid(0, parent_group)
        signal.signal(signal.SIGTSTP, previous_tstp)
        signal.signal(signal.SIGTTOU, previous_ttou)
        os.close(tty)
        return None

    def give_back() -> None:
        try:
            with contextlib.suppress(OSError):  # the terminal may be gone (hang-up)
                if os.tcgetpgrp(tty) == os.getpgrp():
                    os.tcsetpgrp(tty, parent_group)
        finally:
            os.close(tty)
            signal.signal(signal.SIGTSTP, previous_tstp)
            signal.signal(signal.SIGTTOU, previous_ttou)

    return give_back
