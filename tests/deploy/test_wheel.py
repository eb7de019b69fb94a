"""The project's wheel (what the image installs) works on its own, away from the checkout.

The wheel is built from a copy of the files git tracks, installed into a fresh virtualenv, and
``python -m sidecar`` and ``python -m console`` run from a folder outside the checkout, so only
what the wheel holds can be imported: a package left out of ``[tool.setuptools.packages.find]``,
a data file left out of ``package-data`` or a file never added to git fails here. The image
itself (its COPY lines, user, volume and health check) is built and run for real by
``scripts/container-smoke`` in CI (``.ci/run``); hadolint checks the Dockerfile.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import ENV_PREFIXES, REPO, free_port
from tests.waiting import wait_until

INSTALL_TIMEOUT = 600
pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TIMEOUT + 120)]


@dataclass
class Installed:
    python: Path
    workdir: Path
    env: dict[str, str]


def _tracked_copy(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel of the tracked sources, installed into a fresh venv (dependencies borrowed from
    this test run's environment through a .pth line: the tests use no network)."""
    root = tmp_path_factory.mktemp("wheel")
    source, wheels, venv, workdir = root / "src", root / "wheels", root / "venv", root / "run"
    _tracked_copy(source)
    workdir.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    borrowed = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "_borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n", encoding="utf-8")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-index", "--no-deps",
         "--no-build-isolation", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert built.returncode == 0, built.stderr[-3000:]
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index", "--no-deps",
         *map(str, wheels.glob("*.whl"))], capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES) and k != "PYTHONPATH"}
    env.update(SIDECAR_DB=str(root / "data" / "connector.db"), SIDECAR_LOG_DIR=str(root / "logs"),
               SIDECAR_CONFIG=str(source / "config.yaml"), PYTHONUNBUFFERED="1")
    yield Installed(python, workdir, env)


def test_only_the_product_is_installed(installed: Installed) -> None:
    """Simulators, demo, benchmarks and tests stay out of what ships."""
    code = ("import importlib.util as u; print(' '.join(n for n in ('sidecar', 'state', 'console', "
            "'connector_config', 'simulators', 'demo', 'bench', 'tests') if u.find_spec(n)))")
    found = subprocess.run([str(installed.python), "-c", code], cwd=installed.workdir, env=installed.env,
                           capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert found == ["sidecar", "state", "console", "connector_config"]


async def test_the_installed_sidecar_serves_health_and_stops_on_sigterm(installed: Installed) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(installed.python), "-m", "sidecar", "--host", "127.0.0.1", "--port", str(port),
        cwd=str(installed.workdir), env=installed.env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "replace").rstrip())

    reader = asyncio.create_task(read())
    try:
        def ready() -> bool:
            assert proc.returncode is None, "exited before it was ready:\n" + "\n".join(lines[-30:])
            return any("sidecar.ready" in line for line in lines)

        await wait_until(ready, timeout=60, what="sidecar.ready")
        reader_, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader_.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b'"checks"' in answer
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, "\n".join(lines[-30:])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    assert Path(installed.env["SIDECAR_DB"]).exists()
    assert (Path(installed.env["SIDECAR_LOG_DIR"]) / "chatwoot_mcp_connector.log").exists()


def test_the_installed_console_starts(installed: Installed) -> None:
    """``python -m console`` from the same install (its stylesheet is package data)."""
    result = subprocess.run([str(installed.python), "-c", "import console.app, importlib.resources as r; "
                             "assert r.files('console').joinpath('app.tcss').is_file()"],
                            cwd=installed.workdir, env=installed.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    helped = subprocess.run([str(installed.python), "-m", "console", "--help"], cwd=installed.workdir,
                            env=installed.env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr[-2000:]
