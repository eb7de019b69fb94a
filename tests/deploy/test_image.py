"""The Dockerfile and the package cannot drift apart.

No image is built here (issue 9's container smoke test does that). Instead the builder stage's
COPY lines are replayed into a temporary root, the package is installed from that copy into a
fresh virtualenv at the image's venv path, and the final stage's CMD and HEALTHCHECK run
exactly as written, with the Dockerfile's ENV, every absolute path moved under the temporary
root. A package folder missing from COPY, a renamed module or a health check that cannot pass
fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy import dockerfile as df
from tests.harness import free_port

STAGES = df.stages()
FINAL = STAGES[-1]
BUILDER = STAGES[0]
INSTALL_TIMEOUT = 600


def test_every_stage_uses_the_pinned_slim_base_by_tag() -> None:
    assert len(STAGES) >= 2, "multi-stage: wheels are built apart from the runtime image"
    for stage in STAGES:
        assert stage.base == "python:3.11-slim-bookworm", stage.base
        assert "@sha256" not in stage.base


def test_final_stage_runs_unprivileged_with_state_in_the_data_volume() -> None:
    user = FINAL.last("USER")
    assert user is not None and user.args.split(":")[0].isdigit() and user.args.split(":")[0] != "0"
    values = df.env(FINAL, {"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert values["SIDECAR_DB"] == "/data/connector.db"
    assert values["SIDECAR_LOG_DIR"] == "/data/logs"
    assert values["SIDECAR_CONFIG"] == "/app/config.yaml"
    volume = FINAL.last("VOLUME")
    assert volume is not None and "/data" in volume.args
    expose = FINAL.last("EXPOSE")
    assert expose is not None and expose.args.split() == ["5000"]
    assert FINAL.last("CMD") is not None and FINAL.last("ENTRYPOINT") is None


def test_health_check_uses_only_the_standard_library() -> None:
    argv = df.healthcheck(FINAL)
    assert argv[:2] == ["python", "-c"], argv
    imported = set()
    for statement in argv[2].split(";"):
        words = statement.replace(",", " ").split()
        if words and words[0] == "import":
            imported |= {w.split(".")[0] for w in words[1:] if w != "as"}
    assert imported and imported <= set(sys.stdlib_module_names), imported


def test_every_copied_file_is_in_the_build_context() -> None:
    patterns = df.ignore_patterns()
    for stage in STAGES:
        for sources, _, from_stage in df.copies(stage):
            if from_stage is not None:
                continue
            for source in sources:
                path = df.REPO / source
                assert path.exists(), f"COPY {source}: not in the repository"
                assert df.in_context(source.rstrip("/"), patterns), f"COPY {source}: excluded by .dockerignore"
    for secret_prone in (".env", ".venv/bin/python", "demo-data/connector.db", "tests/harness.py"):
        assert not df.in_context(secret_prone, patterns), f"{secret_prone} would reach the build context"


# ------------------------------------------------------------------ replaying the image's commands


@dataclass
class ImageRoot:
    root: Path
    env: dict[str, str]
    workdir: Path

    def host_path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")


def _copy_into(root: Path, workdir: str, sources: list[str], destination: str) -> None:
    target = root / (destination if destination.startswith("/") else f"{workdir}/{destination}").lstrip("/")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for source in sources:
        src = df.REPO / source
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore, dirs_exist_ok=True)
        else:
            dest = target / src.name if destination.endswith("/") else target
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


def _replay_copies(stage: df.Stage, root: Path) -> None:
    workdir = "/"
    for inst in stage.instructions:
        if inst.keyword == "WORKDIR":
            workdir = inst.args.strip()
        elif inst.keyword == "COPY":
            [(sources, destination, from_stage)] = df.copies(df.Stage("", None, [inst]))
            if from_stage is None:
                _copy_into(root, workdir, sources, destination)


HOST_PATH = "@HOST_PATH@"  # stands for the base image's PATH while the Dockerfile's paths are moved


def _map_paths(value: str, root: Path) -> str:
    """``/data/x`` -> ``<root>/data/x``, element by element for PATH-like lists."""
    parts = [str(root / part.lstrip("/")) if part.startswith("/") else part for part in value.split(os.pathsep)]
    return os.pathsep.join(parts).replace(HOST_PATH, os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageRoot]:
    """The package installed as the builder stage would, into ``<root>/opt/venv``."""
    root = tmp_path_factory.mktemp("image") / "root"
    _replay_copies(BUILDER, root)
    _replay_copies(FINAL, root)
    builder_dir = BUILDER.last("WORKDIR")
    assert builder_dir is not None
    venv = root / "opt" / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Tests use no network: the project itself is installed fresh from the copied sources (so
    # a missing COPY, package or entry point shows up), while its pinned dependencies are
    # borrowed from the test run's own environment through a .pth line instead of downloaded.
    site = next((venv / "lib").glob("python3*/site-packages"))
    borrowed = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "_borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n", encoding="utf-8")
    wheels = root.parent / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-index",
         "--no-deps", "--no-build-isolation", "-w", str(wheels), str(root / builder_dir.args.strip().lstrip("/"))],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert built.returncode == 0, built.stderr[-3000:]
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-index", "--no-deps", *map(str, wheels.glob("*.whl"))],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert install.returncode == 0, install.stderr[-3000:]
    values = df.env(FINAL, {"PATH": HOST_PATH})
    env = {name: _map_paths(value, root) for name, value in values.items()}
    # What a `docker run` would also have, and nothing of this machine's connector settings.
    for name in ("HOME", "LANG", "TMPDIR"):
        if name in os.environ:
            env.setdefault(name, os.environ[name])
    workdir = FINAL.last("WORKDIR")
    assert workdir is not None
    yield ImageRoot(root, env, root / workdir.args.strip().lstrip("/"))


def _run(argv: list[str], image: ImageRoot, extra: dict[str, str] | None = None,
         timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=image.workdir, env={**image.env, **(extra or {})},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
async def test_cmd_serves_and_healthcheck_passes_on_a_fresh_install(image_root: ImageRoot) -> None:
    cmd = df.exec_form(FINAL.last("CMD").args)  # type: ignore[union-attr]
    check = df.healthcheck(FINAL)
    # The image listens on 0.0.0.0:5000; here a free loopback port stands in. The health check
    # reads SIDECAR_PORT, so it follows.
    listen = {"SIDECAR_HOST": "127.0.0.1", "SIDECAR_PORT": str(free_port())}

    before = await asyncio.to_thread(_run, check, image_root, listen)
    assert before.returncode != 0, "the health check passes with nothing listening"

    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=str(image_root.workdir), env={**image_root.env, **listen},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []

    async def ready() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "replace").rstrip())
            if "sidecar.ready" in lines[-1]:
                return
        raise AssertionError("CMD exited before it was ready:\n" + "\n".join(lines[-30:]))

    drain: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(ready(), 60)
        drain = asyncio.create_task(_drain(proc))
        healthy = await asyncio.to_thread(_run, check, image_root, listen)
        assert healthy.returncode == 0, healthy.stderr[-2000:]
        proc.send_signal(signal.SIGTERM)  # `docker stop`
        assert await asyncio.wait_for(proc.wait(), 30) == 0, "\n".join(lines[-30:])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
    # State and logs went where the image's ENV says: the /data volume.
    assert image_root.host_path("/data/connector.db").exists()
    assert image_root.host_path("/data/logs/chatwoot_mcp_connector.log").exists()


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    async for _ in proc.stdout:
        pass


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 60)
def test_console_runs_from_the_same_install(image_root: ImageRoot) -> None:
    """``docker compose run --rm console`` runs ``python -m console`` in this image."""
    if not (df.REPO / "console" / "__main__.py").exists():
        pytest.skip("console/__main__.py is not in the repository yet (the console is being built)")
    result = _run(["python", "-m", "console", "--help"], image_root)
    assert result.returncode == 0, result.stderr[-2000:]
