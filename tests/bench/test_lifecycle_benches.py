"""The lifecycle benchmarks run end to end on a small state (shape, never speed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=str(REPO), capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_filter_bench_compares_both_ways() -> None:
    out = _run("bench/filter_fts.py", "--conversations", "3000", "--rounds", "1")
    assert "| query | text | rows | before p50 / p95 ms | after p50 / p95 ms |" in out
    assert "| unique order number | `#74219` | 1 |" in out  # the same rows both ways (the bench checks)
    assert "Upkeep: a conversation update costs" in out


def test_retention_bench_runs_a_pass_during_intake() -> None:
    out = _run("bench/retention_cost.py", "--deliveries", "2000", "--seconds", "1", "--rate", "50",
               "--batch-sizes", "5,20")
    assert "| deliveries | 20 |" in out and "| during a pass |" in out and "| no pruning |" in out
