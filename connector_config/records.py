"""Provides the decorator and base every config record shares (frozen pydantic dataclasses)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, model_validator
from pydantic.dataclasses import dataclass

from connector_config.errors import Refused, kind

_MODEL = ConfigDict(
    extra="forbid",
    use_attribute_docstrings=True,
    allow_inf_nan=False,
    # Fields are filled by their Python name (``ChatwootConfig(webhook_secrets=...)``, and
    # dataclasses.replace); the loader validates a file by alias only, so config.yaml says
    # ``webhook_secret`` and ``webhook_secrets`` there is an unknown key.
    validate_by_name=True,
    validate_by_alias=True,
)

section = dataclass(frozen=True, slots=True, config=_MODEL)
"""Decorator of every record below."""


@section
class _Section:
    """Shared by every record: empty values keep their defaults."""

    @model_validator(mode="before")
    @classmethod
    def _empty_keeps_default(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, Mapping):
            for name in data:
                if not isinstance(name, str):
                    raise Refused(f"keys must be strings, not {kind(name)}")
            return {name: value for name, value in data.items() if value is not None}
        return data  # keyword arguments (direct construction) or a wrong type pydantic reports
