"""Provides the PostgreSQL back-end: the state shared by several sidecar processes and replicas.

``state.open_database`` and ``state.open_service`` choose it for a ``postgresql://`` URL
(``state.database_url``); everything above them (the stores, the units of work, the console) is
the same code as on SQLite.
"""

from __future__ import annotations

from state.postgres.connect import check_url, describe, is_url, redact
from state.postgres.database import PostgresDatabase
from state.postgres.service import DEFAULT_POOL_SIZE, PostgresService

__all__ = ["DEFAULT_POOL_SIZE", "PostgresDatabase", "PostgresService", "check_url", "describe", "is_url", "redact"]
