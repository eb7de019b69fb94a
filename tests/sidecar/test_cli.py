"""The command line: a bad config exits 2 with one line naming the key, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


def test_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("processing:\n  max_attempts: lots\n", encoding="utf-8")
    result = _run("--config", str(tmp_path / "config.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "processing.max_attempts" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_explicit_config_and_bad_env_are_one_line_errors(tmp_path: Path) -> None:
    result = _run("--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    env = {"PATH": "/usr/bin:/bin", "SIDECAR_PORT": "eighty"}
    result = _run(cwd=tmp_path, env=env)
    assert result.returncode == 2 and "server.port" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_port_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    """--port is checked by the same schema as server.port in the file."""
    result = _run("--port", "70000", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "config error: --port: must be between 1 and 65535"
