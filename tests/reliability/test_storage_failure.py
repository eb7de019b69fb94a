"""R12: the disk fills up under the database. Intake answers 503 (never a 2xx without a
commit) and recovers by itself, without a restart, once space is back."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from simulators import FakeChatwoot, FakeCrew
from tests.reliability.helpers import (
    Ledger,
    health,
    jobs,
    open_jobs,
    post_delivery,
    signed_delivery,
    stored_delivery_ids,
)
from tests.waiting import wait_until


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (needs root / CAP_SYS_ADMIN, else skips)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a small tmpfs, and mounting one needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); no way to fill a disk safely")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> Path:
    """Writes a file until the disk is full."""
    filler = path / "filler"
    chunk = b"\0" * 16384
    # Unbuffered: a buffered file would raise ENOSPC again when it flushes on close.
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


@pytest.mark.slow
@pytest.mark.sqlite_only  # SQLite itself; tests/postgres has the PostgreSQL side
async def test_disk_full_gives_503_never_an_uncommitted_2xx_and_recovers(
    sidecar_factory, chatwoot: FakeChatwoot, crew: FakeCrew, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        proc = await sidecar_factory({"state": {"path": str(disk / "connector.db")}})
        try:
            ledger = Ledger()
            url = proc.webhook_url
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
                async def send(count: int, size: int) -> list[int | None]:
                    out = []
                    for _ in range(count):
                        conv = chatwoot.open_conversation("whatsapp")
                        delivery, body, headers = signed_delivery(chatwoot, conv, "z" * size)
                        out.append(await post_delivery(session, url, delivery, body, headers, ledger))
                    return out

                assert await send(3, 100) == [200] * 3
                await wait_until(lambda: open_jobs(proc) == 0, what="warm-up answered")
                filler = fill(disk)

                during = await send(25, 20_000)
                assert 503 in during, during
                assert set(during) <= {200, 503}, during  # refused cleanly, never a 500 or a reset
                # /health probes with a real write. SQLite may free WAL space when it drops and
                # reopens its connection, so a probe can legitimately succeed: only check coherence.
                status, doc = await health(proc)  # still serving
                assert (status == 503) == (doc["checks"]["database"]["status"] == "down"), doc

                filler.unlink()  # storage is back: no restart, no operator action
                after = await send(5, 200)
                assert after == [200] * 5
                status, _ = await health(proc)
                assert status == 200

            stored = stored_delivery_ids(proc)
            assert ledger.ok() <= stored, ledger.ok() - stored  # no 2xx without a commit
            refused = {d for d, s in ledger.statuses.items() if s == 503}
            assert not refused & stored  # a 503 never left a half record
            await wait_until(lambda: open_jobs(proc) == 0, timeout=30, what="accepted work answered")
            assert len(jobs(proc)) == len(ledger.ok())
            for job in jobs(proc):
                assert job["state"] == "done"
                assert len(chatwoot.replies(job["conversation_id"])) == 1
            assert crew.duplicates == 0
            check = proc.integrity_check()
            assert check == "ok"
        finally:
            await proc.stop()
