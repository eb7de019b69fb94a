"""Provides the value types config.yaml's keys are declared with (each carries its own check).

YAML is typed, so the checks are strict: ``port: "5000"``, ``port: true`` and ``port: 5000.0``
are refused rather than converted, and ``json: "yes"`` is not a boolean. Durations accept
integers and decimals. Checks raise :class:`Refused` with a reason that never quotes the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Strict

from connector_config.errors import Refused, kind
from connector_config.urls import check_database_url, check_http_url, check_outbound_url

Channel = Literal["whatsapp", "facebook", "instagram", "webwidget", "api", "email", "telegram",
                  "sms", "line", "twitter", "tiktok"]
"""Channel names that routing rules may use (CONTRACT §2, from ``conversation.channel``)."""

Dialect = Literal["connector-v1", "chatwootai"]
"""Wire formats spoken to MCP-Crew (CONTRACT §5)."""

Backend = Literal["http", "mcp", "crewai_amp", "local"]
"""Kinds of crew back-end a ``crews:`` entry may name."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
"""Accepted values of ``logging.level``."""


def _folding(fold: Callable[[str], str]) -> BeforeValidator:
    """Normalises a choice before it is compared (``WhatsApp`` is ``whatsapp``)."""
    return BeforeValidator(lambda value: fold(value.strip()) if isinstance(value, str) else value)


# -- text --------------------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise Refused("must not be empty")
    return value


Text = Annotated[str, Strict()]
"""Any string, empty included (tokens, messages)."""

Word = Annotated[str, Strict(), AfterValidator(str.strip)]
"""A string kept without surrounding spaces (a tool name)."""

Name = Annotated[str, Strict(), AfterValidator(_not_blank), AfterValidator(str.strip)]
"""A non-empty string without surrounding spaces (a host, a path, a crew name, a keyword)."""

Message = Annotated[str, Strict(), AfterValidator(_not_blank)]
"""A non-empty text sent as it is written (a canned reply)."""


def _regex(value: str) -> str:
    if not value:
        raise Refused("must not be empty")
    try:
        re.compile(value)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise Refused(f"invalid regular expression: {exc.msg}{where}") from None
    except (RecursionError, OverflowError, ValueError):
        raise Refused("invalid regular expression: too complex") from None
    return value


Regex = Annotated[str, Strict(), AfterValidator(_regex)]
"""A regular expression, checked to compile."""

HttpUrl = Annotated[str, Strict(), AfterValidator(check_http_url)]
"""An http(s) URL or empty (how others reach us: any address)."""

OutboundUrl = Annotated[str, Strict(), AfterValidator(check_outbound_url)]
"""An http(s) URL the sidecar calls, or empty (see :mod:`connector_config.urls`)."""

DatabaseUrl = Annotated[str, Strict(), AfterValidator(check_database_url)]
"""Empty, or a ``postgresql://`` (``postgres://``) URL; a secret (it carries the password)."""


# -- numbers -----------------------------------------------------------------------------------


def Int(minimum: int, maximum: int | None = None) -> Any:
    """An integer (never a boolean, a decimal or a string) within bounds."""

    def check(value: int) -> int:
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise Refused(f"must be {bounds}")
        return value

    return Annotated[int, Strict(), AfterValidator(check)]


def _process_count(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"must be auto or a whole number, not {kind(value)}")
    if not 1 <= value <= 64:
        raise Refused("must be auto or between 1 and 64")
    return value


ProcessCount = Annotated[int | Literal["auto"], BeforeValidator(_process_count)]
"""``auto`` (one process per CPU this process may use) or a number of processes, 1..64."""


def _finite(value: Any) -> Any:
    # An integer too large for a float would be reported as "not a number"; it is one.
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise Refused("must be a finite number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise Refused("must be a finite number")
    return value


def Seconds(*, positive: bool = False, minimum: float | None = None,
            maximum: float | None = None) -> Any:
    """A duration in seconds, integer or decimal; timeouts must be > 0, others >= 0."""

    def check(value: float) -> float:
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise Refused(f"must be between {minimum:g} and {maximum:g} seconds")
        if positive and value <= 0:
            raise Refused("must be a number of seconds > 0")
        if value < 0:
            raise Refused("must be a number of seconds >= 0")
        return value

    return Annotated[float, BeforeValidator(_finite), Strict(), AfterValidator(check)]


def _ratio(value: float) -> float:
    if not 0 < value <= 1:
        raise Refused("must be greater than 0 and at most 1")
    return value


Ratio = Annotated[float, BeforeValidator(_finite), Strict(), AfterValidator(_ratio)]
"""A share in (0, 1]."""


def _fraction(value: float) -> float:
    if not 0 <= value <= 1:
        raise Refused("must be between 0 and 1")
    return value


Fraction = Annotated[float, BeforeValidator(_finite), BeforeValidator(lambda v: float(v) if type(v) is int else v),
                     Strict(), AfterValidator(_fraction)]
"""A share in [0, 1] (0 usually switching something off)."""

Flag = Annotated[bool, Strict()]
"""``true`` or ``false`` (not ``"yes"``, not 1)."""


# -- lists -------------------------------------------------------------------------------------


def _one_or_many(value: Any) -> Any:
    """A YAML scalar or list as a list; lets rules say ``channel: whatsapp``."""
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, Mapping):
        raise Refused("must be a value or a list, not a mapping")
    return [value]


OneOrMany = BeforeValidator(_one_or_many)
"""Marks a tuple field that also takes a single value."""


def _secrets(value: Any) -> Any:
    """``webhook_secret``: one string (``""`` = none) or a list of them during a rotation."""
    if isinstance(value, str):
        return (value,) if value else ()
    if not isinstance(value, list | tuple):
        raise Refused(f"must be a string or a list of strings, not {kind(value)}")
    return value


def _no_empty_secret(value: str) -> str:
    if not value:
        raise Refused("must not be empty")
    return value


Secrets = Annotated[tuple[Annotated[str, Strict(), AfterValidator(_no_empty_secret)], ...],
                    BeforeValidator(_secrets)]
"""Webhook signing secrets: a string or a list of non-empty strings."""


def _headers(value: Any) -> Any:
    """A mapping of header names to values as (name, value) pairs, each checked."""
    if isinstance(value, tuple) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in value):
        value = dict(value)  # already pairs (a config rebuilt with dataclasses.replace)
    if not isinstance(value, Mapping):
        raise Refused(f"must be a mapping of header names to values, not {kind(value)}")
    pairs = []
    for name, header_value in value.items():
        if not isinstance(name, str) or not name or any(ch in name for ch in ":\r\n ") or not name.isprintable():
            raise Refused("is not a valid header name", at=str(name))
        if not isinstance(header_value, str):
            raise Refused(f"must be a string, not {kind(header_value)}", at=name)
        # A line break would let a value inject further headers.
        if "\r" in header_value or "\n" in header_value:
            raise Refused("must not contain line breaks", at=name)
        pairs.append((name, header_value))
    return tuple(pairs)


Headers = Annotated[tuple[tuple[str, str], ...], BeforeValidator(_headers)]
"""Extra HTTP headers, written as a mapping, held as (name, value) pairs."""
