"""Provides the PostgreSQL back-end: the state shared by several sidecar processes and replicas.

``state.open_database`` and ``state.open_service`` choose it for a ``postgresql://`` URL
(``state.database_url``); everything above them (the stores, the units of work, the console) is
the same code as on SQLite.

Importing this package is cheap: the URL helpers need no driver, and ``PostgresDatabase`` and
``PostgresService`` (which load psycopg) are imported on first use, so a process on SQLite never
pays for the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.postgres.urls import check_url, describe, is_url, redact

if TYPE_CHECKING:
    from state.postgres.database import PostgresDatabase
    from state.postgres.service import PostgresService

DEFAULT_POOL_SIZE = 8
"""Connections (and threads) per sidecar process."""


def __getattr__(name: str) -> Any:
    if name == "PostgresDatabase":
        from state.postgres.database import PostgresDatabase

        return PostgresDatabase
    if name == "PostgresService":
        from state.postgres.service import PostgresService

        return PostgresService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_POOL_SIZE", "PostgresDatabase", "PostgresService", "check_url", "describe", "is_url", "redact"]
