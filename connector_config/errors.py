"""Provides ConfigError and its making from pydantic's validation errors.

Every refusal reaches the operator as one line, ``<dotted.key>: <reason>``. pydantic's own
errors carry the refused input (and its ``str()`` prints it), and config.yaml holds tokens and
secrets, so this module builds each reason from the error's *type* and the input's *kind* only.
The single exception is a closed choice (a channel, a dialect, a log level): the refused word is
quoted there, shortened, because it is never a secret and seeing the typo helps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError


class ConfigError(Exception):
    """A configuration value is missing, malformed or refused."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        """Dotted key of the bad value, e.g. ``processing.max_attempts``."""
        self.reason = reason
        """Why it was refused; never contains a secret value."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle their args; ours are (key, reason), not the formatted message.
        return (type(self), (self.key, self.reason))


class Refused(ValueError):
    """Raised by the schema's own checks; pydantic reports it as a ``value_error``.

    ``reason`` never contains the value. ``at`` is a key path below the validated field
    (``"retry_base_seconds"``, ``"vendas.name"``) for checks that look at several keys at once.
    """

    def __init__(self, reason: str, at: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        """Why the value was refused."""
        self.at = at
        """Where below the checked field the problem is; empty for the field itself."""


def kind(value: Any) -> str:
    """A type name for error messages; never the value itself (it may be a secret)."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def shown(value: Any) -> str:
    """A non-secret value quoted for an error message, shortened."""
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def join(key: str, name: str) -> str:
    """``key`` + ``name`` as a dotted key; ``[n]`` indexes attach without a dot."""
    if not key:
        return name
    if not name:
        return key
    return f"{key}{name}" if name.startswith("[") else f"{key}.{name}"


def _dotted(loc: tuple[int | str, ...], raw: Any) -> str:
    """The error location as the operator wrote it in config.yaml.

    Walks ``raw`` (the validated input) along ``loc``. Two shapes differ between the file
    and the model: ``crews:`` is a mapping in the file and a tuple in the model, so a crew's
    index becomes its name; and a rule condition may be one value instead of a list, so the
    ``[0]`` of the one-item list it became is dropped.
    """
    key, node = "", raw
    for part in loc:
        if isinstance(part, int):
            if isinstance(node, Mapping):  # crews: the n-th entry of the mapping
                names = list(node)
                name = names[part] if 0 <= part < len(names) else part
                key = join(key, str(name).strip())
                node = node.get(name) if isinstance(name, str) else None
            elif isinstance(node, list | tuple):
                key = join(key, f"[{part}]")
                node = node[part] if 0 <= part < len(node) else None
            # else: a scalar written instead of a one-item list; its index is not in the file
        else:
            key = join(key, part)
            node = node.get(part) if isinstance(node, Mapping) else None
    return key


def _choices(expected: str) -> str:
    """pydantic's ``"'a', 'b' or 'c'"`` as ``"a, b, c"``."""
    return expected.replace("'", "").replace(" or ", ", ")


_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "dataclass_type": "a mapping", "dataclass_exact_type": "a mapping", "dict_type": "a mapping",
    "model_type": "a mapping",
    "tuple_type": "a list", "list_type": "a list",
}


def _reason(error: Mapping[str, Any]) -> tuple[str, str]:
    """(reason, key suffix) of one pydantic error, without its input unless it is a choice."""
    kind_of_input = kind(error.get("input"))
    ctx = error.get("ctx") or {}
    match error["type"]:
        case "value_error" if isinstance(ctx.get("error"), Refused):
            return ctx["error"].reason, ctx["error"].at
        case "missing":
            return "is required", ""
        case "unexpected_keyword_argument" | "extra_forbidden":
            return "unknown key", ""
        case "finite_number":
            return "must be a finite number", ""
        case "literal_error":
            return f"must be one of {_choices(str(ctx.get('expected', '')))} (got {shown(error.get('input'))})", ""
        case "invalid_key":
            return f"keys must be strings, not {kind_of_input}", "[..]"
        case kind_name if kind_name in _TYPE_WORDS:
            return f"must be {_TYPE_WORDS[kind_name]}, not {kind_of_input}", ""
        case other:
            # A check without a message of ours; pydantic's own text might quote the input.
            return f"is invalid ({other})", ""


def config_error(exc: ValidationError, raw: Any = None, *, env_keys: Mapping[str, str] | None = None) -> ConfigError:
    """The first of pydantic's errors as a :class:`ConfigError` naming the dotted key.

    Args:
        exc: what pydantic raised.
        raw: the validated input, to name keys as the file spells them (see ``_dotted``).
        env_keys: ``{dotted key: variable}`` of values that came from the environment; an
            error in one of them names the variable too.

    Returns:
        The error to raise (``from None``: pydantic's own message shows the input).
    """
    first = exc.errors(include_url=False)[0]
    loc = tuple(first.get("loc", ()))
    reason, below = _reason(first)
    if below == "[..]":  # a non-string key: the mapping holding it is at fault
        loc, below = loc[:-1], ""
    key = join(_dotted(loc, raw), below) or "config"
    variable = (env_keys or {}).get(key)
    if variable and f"(from {variable})" not in reason:
        reason = f"{reason} (from {variable})"
    return ConfigError(key, reason)
