"""The console never imports the sidecar (they only share ``state``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_console_does_not_import_sidecar() -> None:
    code = ("import sys, console.app, console.__main__; "
            "print(','.join(m for m in ('sidecar', 'sanic', 'aiohttp') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            timeout=60, check=True)
    assert result.stdout.strip() == ""
