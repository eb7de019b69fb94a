"""Provides the sidecar's maintenance commands: ``python -m sidecar <command> ...``.

- ``forget --contact-id N | --conversation-id N [--account-id N]``: erase a person's content
  (:mod:`sidecar.commands.forget`);
- ``backup FILE``, ``restore FILE``, ``compact``: the state file (:mod:`sidecar.commands.files`;
  SQLite's: on a PostgreSQL state they refuse, naming the server's tools).

Each reads the same config as the sidecar (``--config``, else ``$SIDECAR_CONFIG``, else
./config.yaml) and works on the same state (``state.database_url``, else ``state.path``; ``--db``
names a file or a URL directly), through ``state`` only. A bad argument, a bad config or a refused
request prints one line and exits 2; a failure of the storage itself exits 1; success prints one
line and exits 0.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from sidecar.config import ConfigError, load_config

COMMANDS = ("forget", "backup", "restore", "compact")


class Refused(Exception):
    """A request the command will not carry out (bad input, or unsafe now): exit 2, one line."""


class Failed(Exception):
    """The storage failed while the command worked (full disk, I/O error): exit 1, one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``forget: --contact-id: ...``) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def parser(command: str, description: str) -> OneLineParser:
    made = OneLineParser(prog=command, description=description)
    made.add_argument("--config", help="config file (default: $SIDECAR_CONFIG, else ./config.yaml)")
    made.add_argument("--db", help="the state: a SQLite file or a postgresql:// URL (default: the config's "
                                   "state.database_url, else state.path; $SIDECAR_DATABASE_URL, $SIDECAR_DB)")
    return made


def state_path(args: argparse.Namespace) -> str:
    """The state the command works on: a SQLite file's path or a PostgreSQL URL, like the
    sidecar's (raises Refused for a bad config)."""
    if args.db:
        return str(args.db)
    try:
        return load_config(args.config, os.environ).state.location
    except ConfigError as exc:
        raise Refused(f"config error: {exc}") from None


def in_postgres(location: str) -> bool:
    from state import is_database_url

    return is_database_url(location)


def shown(location: str) -> str:
    """The location for a message: a path as it is, a URL without its password."""
    from state import shown_location

    return shown_location(location)


def open_state(path: str, *, migrate: bool) -> Any:
    """The state at ``path`` (a file or a URL) for a maintenance command, or a one-line refusal."""
    from state import DatabaseMissing, StateError, open_database

    if not in_postgres(path) and not os.path.exists(path):
        raise Refused(f"no state at {path} (state.path, or --db)")
    try:
        return open_database(path, migrate=migrate)
    except DatabaseMissing:
        raise Refused(f"no state at {shown(path)} (state.path, or --db)") from None
    except StateError as exc:
        raise Refused(f"cannot use {shown(path)}: {exc}") from None


def running_sidecars(path: str) -> list[str]:
    """Sidecar processes that recently said they run on this state (``processes`` table); a row of
    this host whose process is gone does not count. One description per process."""
    from state import StateError, open_database

    if not in_postgres(path) and not os.path.exists(path):
        return []
    try:
        db = open_database(path, readonly=True)
    except StateError:
        return []  # not a state this version reads: nothing of ours runs on it
    try:
        now = time.time()
        rows = db.read(lambda tx: tx.processes.live(now))
    finally:
        db.close()
    here = socket.gethostname()
    found = []
    for row in rows:
        if row["host"] == here and not _alive(int(row["pid"])):
            continue
        found.append(f"pid {row['pid']} on {row['host']}, seen {now - row['seen_at']:.0f}s ago")
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(argv: list[str]) -> int:
    """Runs ``argv[0]`` (one of COMMANDS) with the rest of the arguments; the exit status."""
    from sidecar.commands import files, forget

    handlers: dict[str, Callable[[str, list[str]], str]] = {
        "forget": forget.main, "backup": files.backup_main, "restore": files.restore_main,
        "compact": files.compact_main}
    command, rest = argv[0], argv[1:]
    try:
        print(handlers[command](command, rest))
    except Refused as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    return 0
