"""The command line: a bad config exits 2 with one line naming the key, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO, free_port


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


def _config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"server: {{host: 127.0.0.1, port: {port}}}\n"
                    f"state: {{path: {tmp_path / 'data' / 'connector.db'}}}\n"
                    f"logging: {{dir: {tmp_path / 'logs'}}}\n", encoding="utf-8")
    return path


def _one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "CHATWOOT_", "MCP_CREW_", "DEMO_"))}
    env["PYTHONPATH"] = str(REPO)
    return {**env, **extra}


def test_a_busy_port_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("--config", str(_config(tmp_path, free_port())), "--port", str(port), cwd=tmp_path,
                      env=_clean_env())
        line = _one_line_exit_2(result)
        assert line == f"error: server.port: 127.0.0.1:{port} is already in use"
        # The demo says the same about an explicit --port.
        demo = subprocess.run([sys.executable, "-m", "sidecar", "--demo", "--port", str(port)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, env=_clean_env())
        assert _one_line_exit_2(demo).startswith(f"error: server.port: 127.0.0.1:{port} is already in use")
    assert not (tmp_path / "data").exists()  # nothing was created


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
def test_an_unwritable_state_path_exits_2_with_one_line(tmp_path: Path, where: str) -> None:
    if where == "proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc here")
        db = "/proc/x.db"  # not even root can create a file there
    else:
        (tmp_path / "a-file").write_text("", encoding="utf-8")
        db = str(tmp_path / "a-file" / "x.db")
    port = free_port()
    result = _run("--config", str(_config(tmp_path, port)), cwd=tmp_path, env=_clean_env(SIDECAR_DB=db))
    line = _one_line_exit_2(result)
    assert line.startswith(f"error: state.path: cannot create {db} ("), line
    # The port was let go again at once: another process can listen there.
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
