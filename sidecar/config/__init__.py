"""Provides the sidecar's configuration: the shared schema and loader, plus live changes.

The schema, loading and rendering live in :mod:`connector_config` (shared with the console and
the demo); this package re-exports them, so the sidecar imports ``from sidecar.config import
Config``. :mod:`sidecar.config.live` (``POST /config`` and the file watcher) is the sidecar's own.
"""

from __future__ import annotations

from connector_config import (
    BACKENDS,
    CHANNELS,
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    DIALECTS,
    ENV_OVERRIDES,
    ChatwootConfig,
    Config,
    ConfigError,
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
    config_error,
    config_from_mapping,
    config_to_dict,
    deep_merge,
    load_config,
    load_raw,
    masked_config_dict,
    secret_values,
    validate_outbound_url,
)

__all__ = [
    "BACKENDS", "CHANNELS", "CONFIG_PATH_ENV", "DEFAULT_CONFIG_PATH", "DIALECTS", "ENV_OVERRIDES",
    "ChatwootConfig", "Config", "ConfigError", "ConsoleConfig", "ContextConfig", "CrewConfig",
    "HealthConfig", "LocalAnswer", "LoggingConfig", "McpCrewConfig", "ProcessingConfig", "RoutingConfig",
    "RoutingRule", "ServerConfig", "StateConfig", "config_error", "config_from_mapping", "config_to_dict",
    "deep_merge", "load_config", "load_raw", "masked_config_dict", "secret_values", "validate_outbound_url",
]
