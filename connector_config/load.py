"""Provides reading config.yaml and the environment into a validated :class:`Config`.

The one loader of the project: the sidecar at start-up and on every live change, the console
(its own sections only) and the demo all go through :func:`load_raw` and
:func:`config_from_mapping`. Only ``ConfigError`` ever comes out.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from connector_config.errors import ConfigError, config_error, kind
from connector_config.schema import Config

DEFAULT_CONFIG_PATH = "config.yaml"
"""Used when neither ``--config`` nor ``$SIDECAR_CONFIG`` names a file; may be absent."""

CONFIG_PATH_ENV = "SIDECAR_CONFIG"
"""Environment variable naming the config file."""

_CONFIG = TypeAdapter(Config)


# -- environment overrides (CONTRACT §2: the seed's variable names, kept exactly) ---------------


def _env_text(name: str, key: str, text: str) -> str:
    return text


def _env_int(name: str, key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(key, f"must be an integer (from {name})") from None


def _env_list(name: str, key: str, text: str) -> list[str]:
    # Several secrets during a rotation: CHATWOOT_WEBHOOK_SECRET=new,old
    return [part.strip() for part in text.split(",") if part.strip()]


ENV_OVERRIDES: tuple[tuple[str, str, str, Callable[[str, str, str], Any]], ...] = (
    ("SIDECAR_HOST", "server", "host", _env_text),
    ("SIDECAR_PORT", "server", "port", _env_int),
    ("SIDECAR_PUBLIC_URL", "server", "public_url", _env_text),
    ("SIDECAR_ADMIN_TOKEN", "server", "admin_token", _env_text),
    ("SIDECAR_DB", "state", "path", _env_text),
    ("SIDECAR_DATABASE_URL", "state", "database_url", _env_text),
    ("SIDECAR_LOG_DIR", "logging", "dir", _env_text),
    ("CHATWOOT_API_URL", "chatwoot", "api_url", _env_text),
    ("CHATWOOT_API_ACCESS_TOKEN", "chatwoot", "api_access_token", _env_text),
    ("CHATWOOT_WEBHOOK_SECRET", "chatwoot", "webhook_secret", _env_list),
    ("MCP_CREW_API_URL", "mcp_crew", "api_url", _env_text),
    ("MCP_CREW_API_KEY", "mcp_crew", "api_key", _env_text),
    ("MCP_CREW_DECISION_ENGINE_URL", "mcp_crew", "decision_engine_url", _env_text),
    ("MAX_CONTEXT_MESSAGES", "context", "max_messages", _env_int),
)
"""(variable, section, file key, converter) for every environment override."""


def _with_env(raw: Mapping[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``raw`` with the environment laid over it (env wins), and ``{dotted key: variable}`` used.

    An empty variable counts as unset: compose files often pass ``FOO=${FOO:-}``, and that
    must not wipe a value written in config.yaml.
    """
    sections = dict(raw)
    used: dict[str, str] = {}
    for name, section, file_key, convert in ENV_OVERRIDES:
        text = (env.get(name) or "").strip()
        if not text:
            continue
        key = f"{section}.{file_key}"
        value = convert(name, key, text)
        current = sections.get(section)
        if current is not None and not isinstance(current, Mapping):
            continue  # the section itself is wrong: validation names it
        sections[section] = {**(current or {}), file_key: value}
        used[key] = name
    return sections, used


# -- mapping -> Config -------------------------------------------------------------------------


def config_from_mapping(
    raw: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    source_path: str | None = None,
) -> Config:
    """Validate a config.yaml-shaped mapping plus environment overrides into a ``Config``.

    Args:
        raw: the file's document; not modified.
        env: ``os.environ`` by default; pass ``{}`` to ignore the environment.
        source_path: recorded as ``Config.source_path``.

    Returns:
        The validated config.

    Raises:
        ConfigError: naming the first bad key.
    """
    env = os.environ if env is None else env
    if not isinstance(raw, Mapping):
        raise ConfigError("config", f"must be a mapping of sections, not {kind(raw)}")
    document, from_env = _with_env(raw, env)
    try:
        # By alias only: the file says `webhook_secret`, never the attribute's name.
        config = _CONFIG.validate_python(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise config_error(exc, document, env_keys=from_env) from None
    return config if source_path is None else dataclasses.replace(config, source_path=source_path)


def section_from_mapping(raw: Mapping[str, Any], name: str, env: Mapping[str, str] | None = None) -> Any:
    """One section of the config (``"state"``, ``"console"``), ignoring every other section.

    For readers that need a part of the file, like the console: a mistake in a section they
    do not read is the sidecar's to report, not theirs.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("config", f"must be a mapping of sections, not {kind(raw)}")
    return getattr(config_from_mapping({name: raw[name]} if name in raw else {}, env), name)


# -- file -> mapping ---------------------------------------------------------------------------


def _resolve_path(path: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether it was asked for explicitly."""
    explicit = path or env.get(CONFIG_PATH_ENV, "").strip()
    if explicit:
        return Path(explicit), True
    return Path(DEFAULT_CONFIG_PATH), False


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are allowed to be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(label: str, text: str) -> Any:
    """The YAML document in ``text`` (None when empty); raises ``ConfigError`` keyed ``label``."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no object tags
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # Only the problem text: the error's snippet of the line could hold a secret.
        raise ConfigError(label, f"invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError:
        raise ConfigError(label, "invalid YAML") from None
    except RecursionError:
        raise ConfigError(label, "invalid YAML: nested too deeply") from None


EMPTY_FILE_REASON = "the file is empty"
"""Reason of the ``ConfigError`` raised by ``load_raw(..., allow_empty=False)``."""


def load_raw(
    path: str | None = None, env: Mapping[str, str] | None = None, *, allow_empty: bool = True
) -> tuple[dict[str, Any], str | None]:
    """Read the config file as a plain mapping, without validating it.

    Args:
        path: ``--config``; else ``$SIDECAR_CONFIG``; else ``./config.yaml``.
        env: ``os.environ`` by default.
        allow_empty: whether a file without a document (empty, blanks or comments only)
            means "all defaults" (start-up) or is an error (a file that became empty while
            running is a save in progress, not an intent).

    Returns:
        The mapping and the path read (None when the optional ``./config.yaml`` was absent,
        which means all defaults). ``POST /config`` merges its patch into this mapping before
        validating with :func:`config_from_mapping`.

    Raises:
        ConfigError: keyed by the file's path.
    """
    env = os.environ if env is None else env
    target, explicit = _resolve_path(path, env)
    label = str(target)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(label, "config file not found") from None
        return {}, None
    except UnicodeDecodeError:
        raise ConfigError(label, "not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(label, f"cannot read file: {exc.strerror or type(exc).__name__}") from None
    data = parse_yaml(label, text)
    if data is None:
        if not allow_empty:
            raise ConfigError(label, EMPTY_FILE_REASON)
        return {}, label
    if not isinstance(data, dict):
        raise ConfigError(label, f"top level must be a mapping of sections, not {kind(data)}")
    return data, label


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config.

    The file is ``path``, else ``$SIDECAR_CONFIG``, else ``./config.yaml``. A missing file is
    an error only when asked for explicitly; a missing ``./config.yaml`` means all defaults.
    ``env`` defaults to ``os.environ`` and overrides the file. Raises only ``ConfigError``.
    """
    env = os.environ if env is None else env
    raw, source = load_raw(path, env)
    return config_from_mapping(raw, env, source_path=source)


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``patch``: mappings merge recursively, lists and scalars replace.

    Neither argument is modified; the result shares no mutable part with them.
    """
    merged: dict[str, Any] = {key: copy.deepcopy(value) for key, value in base.items()}
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
