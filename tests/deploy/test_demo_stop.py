"""Stopping the demo the ways a newcomer does: Ctrl-C or SIGTERM after the terminal or pipe that
showed its output went away, and Ctrl-C in a real terminal under ``make run``.

Each test waits on the process itself (``wait(timeout)``), never a sleep: a demo that does not
exit fails the test at the timeout.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import termios
import threading
from pathlib import Path

import psutil
import pytest

from tests.harness import REPO, free_port

pytestmark = pytest.mark.timeout(120)

BANNER_END = b"Ctrl-C stops."
EXIT_WITHIN_SECONDS = 15.0
"""A few seconds: the customers stop at once, the crews' answers in progress take up to ~4 s."""


def _demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "CHATWOOT_", "MCP_CREW_", "DEMO_"))}
    env.update({"PYTHONPATH": str(REPO), "DEMO_DATA_DIR": str(tmp_path / "demo-data"),
                "SIDECAR_PORT": str(free_port())})
    return env


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_stops_on_a_signal_after_its_output_pipe_closed(tmp_path: Path, sig: signal.Signals) -> None:
    """``make run 2>&1 | tee demo.log``, then Ctrl-C ends ``tee``: every later write of the
    demo fails with a broken pipe, and it must still stop, with status 0 and no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "sidecar", "--demo"], cwd=tmp_path, env=_demo_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        seen = b""
        for line in proc.stdout:  # the banner; pytest-timeout ends a demo that never prints it
            seen += line
            if BANNER_END in line:
                break
        assert BANNER_END in seen, seen.decode(errors="replace")
        proc.stdout.close()  # the reader is gone: stdout and stderr are broken pipes now
        proc.stderr.close()
        proc.send_signal(sig)
        assert proc.wait(timeout=EXIT_WITHIN_SECONDS) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    # It stopped the normal way: the sidecar's own log says so (not a crash, not a kill).
    log = (tmp_path / "demo-data" / "logs" / "chatwoot_mcp_connector.log").read_text(encoding="utf-8")
    assert "sidecar.stopped" in log


class Terminal:
    """A pseudo-terminal whose session runs ``argv``: Ctrl-C typed into it is a real one (the
    terminal sends SIGINT to its foreground process group)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = os.openpty()
        self.master = master
        self.output = bytearray()
        self._seen = threading.Condition()

        def controlling_terminal() -> None:  # in the child, after setsid (start_new_session)
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, preexec_fn=controlling_terminal)
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every process holding the terminal is gone
                chunk = b""
            with self._seen:
                self.output.extend(chunk)
                self._seen.notify_all()
            if not chunk:
                return

    def wait_for(self, needle: bytes, timeout: float) -> None:
        with self._seen:
            found = self._seen.wait_for(lambda: needle in self.output or not self._reader.is_alive(), timeout)
        assert found and needle in self.output, self.text()

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def close(self) -> None:
        """Kills whatever still runs: the shell's group and the demo, which has a group of its own."""
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(10)
        os.close(self.master)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="no .venv: `make run` would build one")
@pytest.mark.parametrize("command", ["make run", "make run 2>&1 | tee demo.log"])
def test_ctrl_c_in_a_terminal_ends_make_run_with_status_0(tmp_path: Path, command: str) -> None:
    """The README's promise: Ctrl-C stops the demo cleanly and ``make run`` exits 0 (GNU make
    itself would end with the SIGINT it was sent, status 130, if the Ctrl-C reached it)."""
    # -o: the existing .venv is taken as up to date (never rebuilt by a test).
    make = f"make --no-print-directory -C {REPO} -o .venv/.installed run"
    shell = command.replace("make run", make)
    term = Terminal(["/bin/sh", "-c", shell], tmp_path, _demo_env(tmp_path))
    try:
        term.wait_for(BANNER_END, timeout=60)
        term.type(b"\x03")  # Ctrl-C
        assert term.proc.wait(timeout=EXIT_WITHIN_SECONDS) == 0, term.text()
        term.wait_for(b"demo summary:", timeout=5)
    finally:
        term.close()
    assert "Interrupt" not in term.text()
    if "tee" in command:
        # Ctrl-C did not end tee either: the log has the whole run, summary included.
        assert "demo summary:" in (tmp_path / "demo.log").read_text(encoding="utf-8")
