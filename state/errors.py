"""Provides the state package's exception hierarchy."""

from __future__ import annotations


class StateError(Exception):
    """Base class for every error raised by the state package."""


class StorageUnavailable(StateError):
    """The database cannot be written (read-only file, full disk, I/O error)."""


class DatabaseMissing(StateError):
    """A read-only opener found no database file at the given path."""


class SchemaMismatch(StateError):
    """The database was written by an older or newer version of the connector."""
