"""Provides the connector's configuration: config.yaml's schema, its loader and its rendering.

Shared by the sidecar (``sidecar.config`` re-exports it and adds live changes), the console
(which reads its own sections) and the demo. It imports none of them, nor ``state``, Sanic,
Textual or aiohttp (an import-linter contract), so every one of them may import it.

- :mod:`connector_config.schema`: the records, every key declared once with its default,
  check and documentation.
- :mod:`connector_config.fields`: the value types the schema uses.
- :mod:`connector_config.urls`: which URLs the sidecar may call.
- :mod:`connector_config.errors`: ``ConfigError`` and its making from pydantic's errors.
- :mod:`connector_config.load`: file + environment -> ``Config``.
- :mod:`connector_config.render`: ``Config`` -> the file's shape (plain, masked, YAML text).
"""

from __future__ import annotations

from connector_config.errors import ConfigError, config_error
from connector_config.lifecycle import RetentionConfig
from connector_config.load import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    EMPTY_FILE_REASON,
    ENV_OVERRIDES,
    config_from_mapping,
    deep_merge,
    load_config,
    load_raw,
    parse_yaml,
    section_from_mapping,
)
from connector_config.render import (
    MASK_PREFIX,
    config_to_dict,
    mask,
    masked_config_dict,
    render_patched_yaml,
    secret_values,
    write_atomically,
)
from connector_config.schema import (
    BACKENDS,
    CHANNELS,
    DIALECTS,
    LOG_LEVELS,
    REMOTE_BACKENDS,
    ChatwootConfig,
    Config,
    ConsoleConfig,
    ContextConfig,
    CrewConfig,
    HealthConfig,
    LocalAnswer,
    LoggingConfig,
    McpCrewConfig,
    ProcessingConfig,
    RoutingConfig,
    RoutingRule,
    ServerConfig,
    StateConfig,
)
from connector_config.team import (
    BudgetsConfig,
    BusinessHours,
    ContactsConfig,
    HandoffConfig,
    InboxConfig,
    ReplyPacing,
)
from connector_config.urls import METADATA_HOSTS, validate_outbound_url

__all__ = [
    "BACKENDS", "CHANNELS", "CONFIG_PATH_ENV", "DEFAULT_CONFIG_PATH", "DIALECTS", "EMPTY_FILE_REASON",
    "ENV_OVERRIDES", "LOG_LEVELS", "MASK_PREFIX", "METADATA_HOSTS", "REMOTE_BACKENDS",
    "BudgetsConfig", "BusinessHours", "ChatwootConfig", "Config", "ContactsConfig", "HandoffConfig",
    "InboxConfig", "ReplyPacing", "RetentionConfig", "ConfigError", "ConsoleConfig", "ContextConfig", "CrewConfig",
    "HealthConfig", "LocalAnswer", "LoggingConfig", "McpCrewConfig", "ProcessingConfig", "RoutingConfig",
    "RoutingRule", "ServerConfig", "StateConfig", "config_error", "config_from_mapping", "config_to_dict",
    "deep_merge", "load_config", "load_raw", "mask", "masked_config_dict", "parse_yaml",
    "render_patched_yaml", "secret_values", "section_from_mapping", "validate_outbound_url",
    "write_atomically",
]
