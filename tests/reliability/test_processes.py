"""The multi-process mode (server.processes >= 2): an intake process and a queue-worker process on
one SQLite state. Every acknowledged message is answered once; a crashed child is replaced; the
parent stops them all; a child never outlives its parent."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from simulators import FakeChatwoot, FakeCrew
from tests.conftest import ProcessFactory
from tests.harness import SidecarProcess
from tests.reliability.helpers import open_jobs
from tests.waiting import wait_until

# Each test starts three or four interpreters that import the whole stack (and restarts one):
# on a loaded 2-core machine that alone can take a minute, so the hang detector is wider.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _children(proc: SidecarProcess) -> list[tuple[str, psutil.Process]]:
    """(role, process) of each child of the sidecar's parent process."""
    assert proc.proc is not None
    out = []
    for child in psutil.Process(proc.proc.pid).children():
        cmdline = child.cmdline()
        out.append((next((cmdline[i + 1] for i, a in enumerate(cmdline) if a == "--role"), "?"), child))
    return out


async def test_intake_and_worker_processes_answer_everything_once(process_factory: ProcessFactory,
                                                                  chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    proc = await process_factory({"server": {"processes": 2}})
    children = dict(_children(proc))
    assert set(children) == {"intake", "worker"}
    first = [chatwoot.open_conversation(ch) for ch in ("whatsapp", "facebook", "webwidget", "instagram") * 5]
    for conv in first:
        status, body = await chatwoot.customer_says(conv, "Onde está meu pedido?")
        assert (status, body["status"]) == (200, "accepted")
    await chatwoot.wait_for(lambda: all(chatwoot.replies(c.display_id) for c in first), timeout=30)

    # The queue worker crashes: the parent starts a new one, and nothing is lost or doubled.
    children["worker"].kill()
    await proc.wait_for_output("sidecar.process_died role=worker", timeout=20)
    second = [chatwoot.open_conversation("whatsapp") for _ in range(10)]
    for conv in second:  # acknowledged by the intake process meanwhile
        status, _ = await chatwoot.customer_says(conv, "Ainda não chegou")
        assert status == 200
    await chatwoot.wait_for(lambda: all(chatwoot.replies(c.display_id) for c in second), timeout=40)
    await wait_until(lambda: open_jobs(proc) == 0, what="all work finished")
    assert all(len(chatwoot.replies(c.display_id)) == 1 for c in first + second)
    assert len(crew.unique_requests()) == 30 and crew.duplicates == 0

    pids = [c.pid for _, c in _children(proc)]
    assert await proc.stop() == 0
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_children_die_with_their_parent(process_factory: ProcessFactory) -> None:
    proc = await process_factory({"server": {"processes": 3}})
    children = [c for _, c in _children(proc)]
    assert sorted(role for role, _ in _children(proc)) == ["intake", "intake", "worker"]
    assert proc.proc is not None
    os.kill(proc.proc.pid, signal.SIGKILL)
    await proc.proc.wait()
    _, alive = await asyncio.to_thread(psutil.wait_procs, children, 30)
    assert alive == []  # PR_SET_PDEATHSIG: none keeps serving the port without its parent
