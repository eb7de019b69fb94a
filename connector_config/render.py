"""Provides the way back from a :class:`Config` to config.yaml's shape: plain, masked, or as text.

- :func:`config_to_dict` / :func:`masked_config_dict`: the config as the file would write it
  (``GET /config``, the audit trail, the console's config view), secrets in clear or masked.
- :func:`secret_values`: every secret, for the log and output redactors.
- :func:`render_patched_yaml` and :func:`write_atomically`: ``POST /config``'s write-back,
  which keeps the operator's comments and layout (ruamel.yaml's round-trip mode) and writes
  numbers so that the start-up loader (PyYAML, YAML 1.1) reads back the same values.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import io
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.representer import RoundTripRepresenter

from connector_config.errors import ConfigError
from connector_config.schema import Config, CrewConfig, RoutingRule
from connector_config.team import InboxConfig
from connector_config.urls import database_url_password

# A header whose name contains one of these words carries a credential: it is masked and
# reported by secret_values() like the tokens.
_SECRET_HEADER_WORDS = ("auth", "token", "secret", "key", "password", "cookie", "signature")

MASK_PREFIX = "****"
"""How every masked secret starts."""


def mask(secret: str) -> str:
    """``****`` plus the last 4 characters; short secrets show nothing of themselves."""
    if not secret:
        return ""
    if len(secret) <= 4:
        return MASK_PREFIX
    return MASK_PREFIX + secret[-4:]


def is_secret_header(name: str) -> bool:
    """Whether a crew's extra header carries a credential (by its name)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def _plain(value: Any) -> Any:
    """Dataclasses to dicts, tuples to lists and dates to ISO text, recursively."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _span_text(span: tuple[int, int]) -> str:
    start, end = span
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def _inbox_dict(inbox: InboxConfig) -> dict[str, Any]:
    """An inbox as written in config.yaml (opening spans as ``08:00-18:00``, empty keys left out)."""
    out: dict[str, Any] = {}
    if inbox.mode is not None:
        out["mode"] = inbox.mode
    hours = inbox.business_hours
    if hours is not None:
        out["business_hours"] = {
            **_plain(hours),
            "weekly": {day: [_span_text(span) for span in spans] for day, spans in hours.weekly.items()},
        }
    return out


def _rule_dict(rule: RoutingRule) -> dict[str, Any]:
    # Only the conditions the rule uses, as an operator would write it.
    return {name: value for name, value in _plain(rule).items() if value not in ((), [], None)}


def _crew_dict(crew: CrewConfig, show: Callable[[str], str]) -> dict[str, Any]:
    settings = _plain(crew)
    del settings["name"]  # the key under crews:
    settings["token"] = show(crew.token)
    settings["headers"] = {
        name: show(value) if is_secret_header(name) else value for name, value in crew.headers
    }
    return settings


def _renamed(section: dict[str, Any], old: str, new: str, value: Any) -> dict[str, Any]:
    """``section`` with key ``old`` replaced by ``new: value`` at the same position."""
    return {
        (new if name == old else name): (value if name == old else v) for name, v in section.items()
    }


def _to_dict(config: Config, show: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        f.name: _plain(getattr(config, f.name)) for f in fields(config) if f.name != "source_path"
    }
    out["server"]["admin_token"] = show(config.server.admin_token)
    out["chatwoot"]["api_access_token"] = show(config.chatwoot.api_access_token)
    secrets = [show(secret) for secret in config.chatwoot.webhook_secrets]
    # The file key is the singular `webhook_secret`: one secret is written as a string, as
    # operators usually do, several as a list.
    written = secrets if len(secrets) > 1 else (secrets[0] if secrets else "")
    out["chatwoot"] = _renamed(out["chatwoot"], "webhook_secrets", "webhook_secret", written)
    out["mcp_crew"]["api_key"] = show(config.mcp_crew.api_key)
    out["state"]["database_url"] = show(config.state.database_url)
    out["routing"]["rules"] = [_rule_dict(rule) for rule in config.routing.rules]
    out["crews"] = {crew.name: _crew_dict(crew, show) for crew in config.crews}
    # JSON (GET /config, the console's copy) wants string keys; the loader reads them back as ids.
    out["inboxes"] = {str(inbox_id): _inbox_dict(inbox) for inbox_id, inbox in config.inboxes.items()}
    out["reply_pacing"] = _plain(config.reply_pacing.channels)
    return out


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as a plain YAML/JSON-able dict in config.yaml's shape (secrets included)."""
    return _to_dict(config, lambda secret: secret)


def masked_config_dict(config: Config) -> dict[str, Any]:
    """Like :func:`config_to_dict`, with every secret shown as ``****`` plus its last 4 chars."""
    return _to_dict(config, mask)


def secret_values(config: Config) -> list[str]:
    """Every non-empty secret in the config, for log and output redaction."""
    candidates = [
        config.server.admin_token,
        config.chatwoot.api_access_token,
        *config.chatwoot.webhook_secrets,
        config.mcp_crew.api_key,
        # The URL whole (it is shown only masked) and its password alone (a driver's or the
        # server's message may quote it without the rest).
        config.state.database_url,
        database_url_password(config.state.database_url),
    ]
    for crew in config.crews:
        candidates.append(crew.token)
        candidates += [value for name, value in crew.headers if is_secret_header(name)]
    return list(dict.fromkeys(secret for secret in candidates if secret))


# -- the write-back of POST /config --------------------------------------------------------------


class _Representer(RoundTripRepresenter):
    """ruamel's round-trip representer, with floats written the YAML 1.1 way."""


def _represent_float(representer: RoundTripRepresenter, value: float) -> Any:
    # ruamel writes 0.00001 as `1e-05`, which YAML 1.1 (PyYAML, the start-up loader) reads as
    # a string: its float needs a dot in the mantissa. `1.0e-05` is a float to both.
    if not math.isfinite(value):
        return representer.represent_float(value)
    mantissa, exponent_mark, exponent = repr(value).partition("e")
    if exponent_mark and "." not in mantissa:
        mantissa += ".0"
    text = f"{mantissa}e{exponent}" if exponent_mark else mantissa
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


_Representer.add_representer(float, _represent_float)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long value (a URL, a regex) onto a second line
    yaml.indent(mapping=2, sequence=4, offset=2)  # the shipped config.yaml's style
    return yaml


def _merge_into(target: CommentedMap, patch: Mapping[str, Any]) -> None:
    """Applies ``patch`` to the round-trip document in place, so comments stay where they are."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)  # JSON null: back to the default
        elif isinstance(value, Mapping) and isinstance(target.get(key), CommentedMap):
            _merge_into(target[key], value)
        else:
            target[key] = value


def render_patched_yaml(text: str, patch: Mapping[str, Any]) -> str:
    """config.yaml's text with ``patch`` merged in, comments and layout kept."""
    yaml = _yaml()
    doc = yaml.load(text) if text.strip() else None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise ConfigError("config", "the file's top level is not a mapping")
    _merge_into(doc, patch)
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    return buffer.getvalue()


def write_atomically(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, ``os.replace``: readers see old or new, never half.

    Raises:
        OSError: the file or its folder cannot be written (nothing is changed then).
    """
    target = path.resolve()  # a symlinked config (e.g. a mounted volume) is updated where it lives
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o600
    if target.exists() and (not mode & 0o222 or not os.access(target, os.W_OK)):
        # The rename would succeed in a writable folder (and always for root), but a file
        # nobody may write is the operator saying "do not change this": leave it alone.
        raise PermissionError(errno.EACCES, "the file is read-only", str(target))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
