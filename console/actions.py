"""Provides Operator: the console's only writes (dead-letter retry/discard, bot ownership).

Each write opens a short-lived writer connection, runs one BEGIN IMMEDIATE transaction
through ``state`` (which records who and when in ``operator_actions``) and closes it again,
so the console never keeps a write lock or a second long-lived writer around.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from console.reader import describe
from state import Database, StateError, is_database_url, open_database, operator, shown_location

T = TypeVar("T")


class OperatorError(Exception):
    """A write failed; ``str()`` is a one-line message."""


def default_actor() -> str:
    """``console:<login>``: who made the change, as recorded in operator_actions."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"console:{user}"


class Operator:
    """Operator writes through ``state``."""

    def __init__(self, path: str, actor: str | None = None) -> None:
        self.location = path
        self.path = shown_location(path)
        """What messages show (a PostgreSQL URL's host:port/database, never its password)."""
        self.actor = actor or default_actor()

    def _write(self, fn: Callable[[Database], T]) -> T:
        if not is_database_url(self.location) and not os.path.exists(self.location):
            # open_store would create an empty file here; the sidecar must create it.
            raise OperatorError(f"No database at {self.path}.")
        try:
            # Never migrate from the console: only the sidecar owns the schema.
            db = open_database(self.location)
        except (StateError, sqlite3.Error, OSError) as exc:
            raise OperatorError(describe(self.path, exc)) from exc
        try:
            return fn(db)
        except (StateError, sqlite3.Error) as exc:
            raise OperatorError(describe(self.path, exc)) from exc
        finally:
            db.close()

    def retry(self, job_id: int) -> bool:
        return self._write(lambda db: db.write(operator.retry_dead_letter, job_id, self.actor, time.time()))

    def discard(self, job_id: int) -> bool:
        return self._write(lambda db: db.write(operator.discard_dead_letter, job_id, self.actor, time.time()))

    def set_bot(self, account_id: int, conversation_id: int, *, bot: bool) -> bool:
        return self._write(lambda db: db.write(
            lambda tx: operator.set_bot_ownership(tx, account_id, conversation_id, bot=bot, actor=self.actor,
                                                  now=time.time())))
