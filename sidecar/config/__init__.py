"""Provides the sidecar's configuration: typed frozen records, loading, masking and live changes.

Everything outside this package imports from here (``from sidecar.config import Config``).
"""

from __future__ import annotations

from sidecar.config.schema import (
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
    "RoutingRule", "ServerConfig", "StateConfig", "config_from_mapping", "config_to_dict", "deep_merge",
    "load_config", "load_raw", "masked_config_dict", "secret_values", "validate_outbound_url",
]
