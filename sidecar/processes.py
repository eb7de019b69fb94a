"""Provides the multi-process mode: one parent that starts, watches and stops the sidecar's processes.

With ``server.processes`` >= 2 (or ``auto``: one per CPU) the sidecar uses every core:

- ``processing.worker_processes`` children run the journal applier and the queue worker
  (role ``worker``, no HTTP);
- the other children answer HTTP (role ``intake``: webhooks, callbacks, /health, /metrics,
  /config), all on the one listening socket the parent bound (the kernel spreads connections).

Every child opens the same state. On SQLite the file's own lock serialises their writes
(``BEGIN IMMEDIATE`` and a busy timeout; WAL lets readers go on), so every guarantee of the
single process holds: a webhook is acknowledged after its commit, jobs are leased and fenced,
one conversation at a time. Workers notice other processes' commits by polling the database's
change counter (sidecar.runtime), a few milliseconds late at most.

The parent owns no state: it starts the children, restarts one that dies unexpectedly (after a
pause growing from 1 s to 30 s), relays their log lines into the one log file (so rotation never
races), prints ``sidecar.ready`` once every child is ready, and on SIGTERM/SIGINT stops them
all (SIGTERM, then SIGKILL after the grace) and exits 0. Children die with their parent
(PR_SET_PDEATHSIG), so ``kill -9`` of the parent leaves no orphan serving the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from sidecar.config import Config, secret_values
from sidecar.ops.logs import get_logger, log_event, relay, setup_logging

log = get_logger()
READY_MARK = "sidecar.process_ready"
"""The line a child prints once it serves (the parent's own ``sidecar.ready`` waits for all)."""
_FIRST_PAUSE, _MAX_PAUSE = 1.0, 30.0


def process_count(config: Config) -> int:
    """``server.processes`` as a number (``auto``: the CPUs this process may use, at most 8)."""
    wanted = config.server.processes
    if wanted == "auto":
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return max(1, min(cpus, 8))
    return int(wanted)


def roles(config: Config) -> list[str]:
    """The role of each process: ``["all"]`` for one process, else workers and intakes."""
    count = process_count(config)
    if count == 1:
        return ["all"]
    workers = min(config.processing.worker_processes, count - 1)
    return ["worker"] * workers + ["intake"] * (count - workers)


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies (no orphan keeps serving)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Child:
    role: str
    index: int
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    restarts: int = 0
    pause: float = _FIRST_PAUSE
    started_at: float = 0.0
    restart_at: float | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


class Parent:
    """Starts the children, relays their logs, restarts the ones that die, stops them all."""

    def __init__(self, config: Config, listener: socket.socket, child_args: list[str]) -> None:
        self.config = config
        self.listener = listener
        self.child_args = child_args
        self.children = [_Child(role, i) for i, role in enumerate(roles(config))]
        self._event = threading.Event()
        self._stopping = False
        self._announced = False
        self._lock = threading.Lock()

    # -- children ---------------------------------------------------------------------------------
    def _start(self, child: _Child) -> None:
        fd = self.listener.fileno()
        argv = [sys.executable, "-m", "sidecar", *self.child_args, "--role", child.role]
        pass_fds: tuple[int, ...] = ()
        if child.role == "intake":
            argv += ["--listen-fd", str(fd)]
            pass_fds = (fd,)
        child.ready = False
        child.started_at = time.monotonic()
        child.proc = subprocess.Popen(argv, pass_fds=pass_fds, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        child.reader = threading.Thread(target=self._relay, args=(child, child.proc), daemon=True,
                                        name=f"relay-{child.role}-{child.index}")
        child.reader.start()
        log_event(log, "sidecar.process_started", role=child.role, index=child.index, pid=child.proc.pid)

    def _relay(self, child: _Child, proc: subprocess.Popen[bytes]) -> None:
        """Copies a child's lines into the log; notices its ready line."""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                relay(line)
            if not child.ready and READY_MARK in line:
                child.ready = True
                self._event.set()
        self._event.set()  # the child's output ended: it exited (or is exiting)

    def _announce_when_ready(self) -> None:
        if self._announced or not all(c.ready for c in self.children):
            return
        self._announced = True
        server = self.config.server
        log_event(log, "sidecar.ready", host=server.host, port=server.port, pid=os.getpid(),
                  processes=len(self.children), workers=sum(c.role == "worker" for c in self.children))

    def _check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                code = proc.returncode
                child.proc = None
                if self._stopping:
                    continue
                # It had been running a while: not a crash loop, so the pause starts over.
                if now - child.started_at > _MAX_PAUSE:
                    child.pause = _FIRST_PAUSE
                child.restart_at = now + child.pause
                log_event(log, "sidecar.process_died", level=40, role=child.role, index=child.index, status=code,
                          restart_in=round(child.pause, 1))
                child.pause = min(_MAX_PAUSE, child.pause * 2)
            if child.proc is None and child.restart_at is not None and now >= child.restart_at and not self._stopping:
                child.restart_at = None
                child.restarts += 1
                self._start(child)

    # -- the parent's life --------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: self._event.set())
        for child in self.children:
            self._start(child)
        while not self._stopping:
            self._event.wait(timeout=1.0)  # woken by a child's line, its exit, or a signal
            self._event.clear()
            self._check()
            self._announce_when_ready()
        return self._stop_children()

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True
        self._event.set()

    def _stop_children(self) -> int:
        grace = self.config.server.shutdown_grace_seconds
        log_event(log, "sidecar.stopping", processes=len(self.children))
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 10
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log_event(log, "sidecar.process_killed", level=30, role=child.role, index=child.index)
                child.proc.kill()
                child.proc.wait()
            if child.reader is not None:
                child.reader.join(timeout=5)
        self.listener.close()
        log_event(log, "sidecar.stopped")
        return 0


def run_parent(config: Config, listener: socket.socket, child_args: list[str]) -> int:
    """The parent of the multi-process mode (``python -m sidecar`` with ``server.processes`` >= 2)."""
    logging_config = config.logging
    setup_logging(logging_config.dir, level=logging_config.level, as_json=logging_config.json,
                  max_bytes=logging_config.max_bytes, backup_count=logging_config.backup_count,
                  secrets=secret_values(config))
    return Parent(config, listener, child_args).run()
