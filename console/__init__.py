"""Provides the Textual ops console that reads the connector's SQLite state."""

from __future__ import annotations

__version__ = "0.1.0"
