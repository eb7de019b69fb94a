"""Provides ``python -m sidecar backup FILE``, ``restore FILE`` and ``compact``: the state file.

- ``backup FILE``: a consistent copy of the state while the sidecar runs (SQLite's backup API);
  FILE must not exist yet (``--force`` replaces it).
- ``restore FILE``: puts a backup in place of the state, after checking it (an intact connector
  state, not newer than this version). Refused while a sidecar runs on the state. The state it
  replaces is kept beside it as ``<state>.before-restore-<time>``.
- ``compact``: rewrites the whole file so it gives every free page back to the disk (and can do so
  from then on by itself). Refused while a sidecar runs on the state (the rewrite blocks writes).

All three are SQLite's: on a PostgreSQL state each exits 2 with one line naming the server's tools
(``pg_dump``/``pg_restore``; autovacuum).
"""

from __future__ import annotations

import os
import time

from sidecar.commands import (
    Failed,
    Refused,
    in_postgres,
    open_state,
    parser,
    running_sidecars,
    shown,
    state_path,
)

PG_BACKUP = ("the state is in PostgreSQL ({where}): {what} it with {tool} (README, \"Backup and restore\"); "
             "`{command}` copies a SQLite state file only")
"""The one line for backup and restore on PostgreSQL: the server's own tools make a consistent copy."""
PG_COMPACT = ("the state is in PostgreSQL ({where}): autovacuum makes pruned rows' space reusable by itself, "
              "there is nothing to compact (shrinking the files takes VACUUM FULL or pg_repack, which lock each "
              "table: a maintenance window's job)")


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _refuse_while_running(path: str, what: str) -> None:
    running = running_sidecars(path)
    if running:
        raise Refused(f"a sidecar is running on {path} ({running[0]}): stop it before {what}")


def backup_main(command: str, argv: list[str]) -> str:
    from state import DatabaseMissing, SchemaMismatch, StateError
    from state.sqlite import backup

    args_parser = parser(command, "Copy the state to FILE while the sidecar runs (one consistent snapshot).")
    args_parser.add_argument("file", metavar="FILE", help="where the copy goes (a new file)")
    args_parser.add_argument("--force", action="store_true", help="replace FILE if it exists")
    args = args_parser.parse_args(argv)
    path = state_path(args)
    if in_postgres(path):
        raise Refused(PG_BACKUP.format(where=shown(path), what="back up", tool="pg_dump -Fc", command=command))
    if os.path.abspath(args.file) == os.path.abspath(path):
        raise Refused(f"FILE: {args.file} is the state itself")
    try:
        done = backup.backup(path, args.file, overwrite=args.force)
    except FileExistsError:
        raise Refused(f"FILE: {args.file} already exists (choose another name, or --force)") from None
    except FileNotFoundError as exc:
        raise Refused(f"FILE: {exc}") from None
    except DatabaseMissing:
        raise Refused(f"no state at {path} (state.path, or --db)") from None
    except SchemaMismatch as exc:
        raise Refused(str(exc)) from None
    except (StateError, OSError) as exc:
        raise Failed(f"the copy failed, nothing was written to {args.file}: {exc}") from None
    return (f"backed up {path} to {done.path}: {_mib(done.bytes)}, schema {done.schema}, "
            f"{done.conversations:,} conversations, {done.seconds:.1f}s")


def restore_main(command: str, argv: list[str]) -> str:
    from state import SchemaMismatch, StateError, Tx, open_database
    from state.sqlite import backup

    args_parser = parser(command, "Replace the state with a backup made by `backup` (the sidecar stopped).")
    args_parser.add_argument("file", metavar="FILE", help="the backup")
    args = args_parser.parse_args(argv)
    path = state_path(args)
    if in_postgres(path):
        raise Refused(PG_BACKUP.format(where=shown(path), what="restore", tool="pg_restore", command=command))
    if os.path.abspath(args.file) == os.path.abspath(path):
        raise Refused(f"FILE: {args.file} is the state itself")
    try:
        backup.check(args.file)
    except SchemaMismatch as exc:
        raise Refused(f"FILE: {exc}") from None
    except StateError as exc:
        raise Refused(f"FILE: {exc}") from None
    _refuse_while_running(path, "restoring")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        snapshot, kept = backup.restore(args.file, path)
        db = open_database(path, migrate=True)  # an older backup is brought up to date
        try:
            def settle(tx: Tx) -> None:
                tx.processes.forget_all()
                tx.jobs.expire_leases()
            db.write(settle)
        finally:
            db.close()
    except (StateError, OSError) as exc:
        raise Failed(f"the restore failed: {exc}") from None
    before = f"; the state it replaced is kept as {kept}" if kept else ""
    return (f"restored {path} from {args.file}: schema {snapshot.schema}, {snapshot.conversations:,} "
            f"conversations{before}")


def compact_main(command: str, argv: list[str]) -> str:
    from state import StateError

    args_parser = parser(command, "Rewrite the state file so it gives its free space back to the disk "
                                  "(the sidecar stopped).")
    args = args_parser.parse_args(argv)
    path = state_path(args)
    if in_postgres(path):
        raise Refused(PG_COMPACT.format(where=shown(path)))
    if not os.path.exists(path):
        raise Refused(f"no state at {path} (state.path, or --db)")
    _refuse_while_running(path, "compacting")
    started = time.monotonic()
    db = open_state(path, migrate=True)
    try:
        before = db.storage()
        try:
            db.compact()
        except StateError as exc:
            if "free disk" in str(exc):
                raise Refused(str(exc)) from None
            raise
        after = db.storage()
    except StateError as exc:
        raise Failed(f"the state could not be rewritten: {exc}") from None
    finally:
        db.close()
    return (f"compacted {path}: {_mib(before.file_bytes + before.wal_bytes)} -> {_mib(after.file_bytes)} "
            f"in {time.monotonic() - started:.1f}s; free space now goes back to the disk as retention prunes")
