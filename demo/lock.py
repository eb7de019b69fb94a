"""Provides DataDirLock: one demo per data folder, for as long as it runs.

A second demo in the same folder would delete the first one's database under it and rewrite
its config file and admin token, which the first then hot-loads. So each demo holds an
exclusive ``flock`` on ``<data dir>/demo.lock`` from before it touches anything there until it
exits. The kernel drops the lock with the process, however it ends (Ctrl-C, a crash, SIGKILL):
a stale lock file is never a problem, only a live demo holds the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "demo.lock"


class DataDirBusy(Exception):
    """Another live demo holds the folder."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(f"{data_dir} is in use by another demo{holder}")


class DataDirLock:
    """The held lock; ``release()`` (or the process's exit) frees the folder."""

    def __init__(self, fd: int, path: Path, *, created: bool) -> None:
        self._fd: int | None = fd
        self.path = path
        self.created = created
        """The lock file did not exist before this demo."""

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Locks ``data_dir`` (created if missing); raises DataDirBusy if a live demo holds it."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_NAME
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DataDirBusy(data_dir, holder) from None
        except BaseException:
            os.close(fd)
            raise
        # Who holds it, for the refusal message of the next one (informative only: the lock
        # itself is the flock, never the file's content).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path, created=created)

    def release(self, *, remove: bool = False) -> None:
        """Frees the folder; ``remove`` also deletes the lock file if this demo created it
        (for a folder the demo refused to use). A lock file is otherwise left in place:
        deleting it could let two demos lock two different files of the same name."""
        if self._fd is None:
            return
        if remove and self.created:
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the only descriptor drops the flock
        self._fd = None


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        return f" (pid {pid})"
    return ""
