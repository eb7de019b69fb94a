"""Provides what ``POST /config`` does to a posted document before it is validated.

Pure functions over plain mappings: the changed keys between two configs (for the audit trail
and the answer), posted keys an environment variable overrides, and the handling of masked
secrets sent back as ``GET /config`` showed them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector_config import (
    ENV_OVERRIDES,
    MASK_PREFIX,
    Config,
    ConfigError,
    config_to_dict,
    masked_config_dict,
)


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf keys; lists are leaves (a rule list changes as a whole)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def config_changes(old: Config, new: Config) -> dict[str, dict[str, Any]]:
    """``{dotted key: {"old", "new"}}`` of every changed value, secrets masked."""
    plain_old, plain_new = _flatten(config_to_dict(old)), _flatten(config_to_dict(new))
    shown_old, shown_new = _flatten(masked_config_dict(old)), _flatten(masked_config_dict(new))
    changes: dict[str, dict[str, Any]] = {}
    for key in sorted(set(plain_old) | set(plain_new)):
        if plain_old.get(key) != plain_new.get(key):
            changes[key] = {"old": shown_old.get(key), "new": shown_new.get(key)}
    return changes


def env_overridden(patch: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """Posted keys that an environment variable overrides (the env value keeps winning)."""
    out = []
    for name, section, file_key, _ in ENV_OVERRIDES:
        posted = patch.get(section)
        if isinstance(posted, Mapping) and file_key in posted and (env.get(name) or "").strip():
            out.append(f"{section}.{file_key} (env {name})")
    return out


def strip_masked_echoes(patch: Mapping[str, Any], masked: Mapping[str, Any], plain: Mapping[str, Any],
                        prefix: str = "") -> dict[str, Any]:
    """The patch without secrets echoed in their masked form (``GET /config`` output sent back).

    A value equal to the running secret's mask means "unchanged" and is left out, so the file
    keeps the real secret. Inside a secret list (webhook secrets during a rotation) a masked
    item is replaced by the secret it masks. Any other value starting with ``****`` is refused:
    it is a mask, not a secret, and writing it would lock Chatwoot or the crews out.
    """
    out: dict[str, Any] = {}
    for key, value in patch.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        shown = masked.get(key) if isinstance(masked, Mapping) else None
        real = plain.get(key) if isinstance(plain, Mapping) else None
        if isinstance(value, Mapping):
            out[key] = strip_masked_echoes(value, shown if isinstance(shown, Mapping) else {},
                                           real if isinstance(real, Mapping) else {}, dotted)
        elif isinstance(value, str) and value.startswith(MASK_PREFIX) and value != real:
            if value != shown:
                raise ConfigError(dotted, "is a masked value (****…); send the real secret or leave the key out")
            # else: the running secret's own mask, i.e. "unchanged": left out of the patch
        elif isinstance(value, list) and any(isinstance(v, str) and v.startswith(MASK_PREFIX) for v in value):
            shown_items = shown if isinstance(shown, list) else [shown]
            real_items = real if isinstance(real, list) else [real]
            items = []
            for index, item in enumerate(value):
                if isinstance(item, str) and item.startswith(MASK_PREFIX):
                    if item not in shown_items:
                        raise ConfigError(f"{dotted}[{index}]", "is a masked value (****…) of no current secret")
                    item = real_items[shown_items.index(item)]
                items.append(item)
            if items != real_items:
                out[key] = items
        else:
            out[key] = value
    return out


def _is_mask(value: Any) -> bool:
    if isinstance(value, list):
        return any(_is_mask(v) for v in value)
    return isinstance(value, str) and value.startswith(MASK_PREFIX)


def drop_env_masks(document: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Masked echoes of keys the environment sets are dropped before anything else: their
    running value comes from the environment and must never be copied into the file."""
    out = dict(document)
    for name, section, file_key, _ in ENV_OVERRIDES:
        posted = out.get(section)
        if (env.get(name) or "").strip() and isinstance(posted, Mapping) and _is_mask(posted.get(file_key)):
            out[section] = {k: v for k, v in posted.items() if k != file_key}
    return out
