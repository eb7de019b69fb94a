"""The lock files and the pins cannot drift apart, and what installs uses the locks.

``requirements.lock`` (what the image runs) and ``requirements-dev.lock`` (that plus the test
extras and the CI tools, what ``make`` installs into .venv) are written by ``make lock`` from
``pyproject.toml`` and ``requirements-ci.txt``. A pin edited without ``make lock`` fails here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = REPO / "requirements.lock"
DEV_LOCK = REPO / "requirements-dev.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)"
                    r"(?:\s*;\s*(?P<marker>[^\\]*?))?\s*(?P<more>\\)?$")
_HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}\s*(?P<more>\\)?$")


@dataclass
class Locked:
    version: str
    marker: str | None
    hashes: int


def read_lock(path: Path) -> dict[str, Locked]:
    """name -> entry; fails on any line that is not a pinned entry, a hash or a comment."""
    entries: dict[str, Locked] = {}
    current: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if (hashed := _HASH.match(line)) and current is not None:
            entries[current].hashes += 1
            current = current if hashed.group("more") else None
            continue
        entry = _ENTRY.match(line)
        assert entry, f"{path.name}:{number}: not a `name==version` entry or a hash: {line!r}"
        name = canonicalize_name(entry.group("name"))
        assert name not in entries, f"{path.name}:{number}: {name} locked twice"
        entries[name] = Locked(entry.group("version"), entry.group("marker"), 0)
        current = name if entry.group("more") else None
    return entries


RUNTIME = read_lock(RUNTIME_LOCK)
DEV = read_lock(DEV_LOCK)


def _pins(requirements: list[str], where: str) -> dict[str, str]:
    pins = {}
    for text in requirements:
        req = Requirement(text)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{where}: pin {text!r} exactly (==)"
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def _ci_requirements() -> list[str]:
    lines = (REPO / "requirements-ci.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


@pytest.mark.parametrize(("where", "requirements", "locks"), [
    ("[project] dependencies", PYPROJECT["project"]["dependencies"], {"requirements.lock": RUNTIME,
                                                                        "requirements-dev.lock": DEV}),
    ("[project.optional-dependencies] test", PYPROJECT["project"]["optional-dependencies"]["test"],
     {"requirements-dev.lock": DEV}),
    ("requirements-ci.txt", _ci_requirements(), {"requirements-dev.lock": DEV}),
], ids=["runtime", "test", "ci"])
def test_every_pin_is_locked_at_its_version(where: str, requirements: list[str], locks: dict[str, dict[str, Locked]]) -> None:
    pins = _pins(requirements, where)
    assert pins, f"{where}: nothing pinned?"
    for lock_name, lock in locks.items():
        drift = {name: (version, lock[name].version if name in lock else None)
                 for name, version in pins.items() if name not in lock or lock[name].version != version}
        assert not drift, f"{where} vs {lock_name} (pinned, locked): {drift}; run `make lock` and commit the locks"


def test_the_dev_lock_holds_the_image_runtime_at_the_same_versions() -> None:
    """The tests run against exactly the packages the image installs."""
    differ = {name: (entry.version, DEV[name].version if name in DEV else None)
              for name, entry in RUNTIME.items() if name not in DEV or DEV[name].version != entry.version}
    assert not differ, f"requirements.lock vs requirements-dev.lock: {differ}; run `make lock`"


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_every_locked_package_has_hashes_and_the_lock_says_how_it_was_made(lock: Path) -> None:
    entries = read_lock(lock)
    assert len(entries) > 20, "the whole tree, not only the direct pins"
    assert not [name for name, entry in entries.items() if entry.hashes == 0]
    assert "#    make lock" in lock.read_text(encoding="utf-8").splitlines()[1]


def test_the_build_backend_is_locked_too() -> None:
    """.venv installs the project with --no-build-isolation: its build requirements come from the lock."""
    for text in PYPROJECT["build-system"]["requires"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in DEV and SpecifierSet(str(req.specifier)).contains(DEV[name].version), (text, DEV.get(name))


def test_this_environment_was_installed_from_the_dev_lock() -> None:
    """What the suite runs with is what the lock says (CI: a fresh .venv from `make`)."""
    wrong = {}
    for name, entry in DEV.items():
        if entry.marker and not Marker(entry.marker).evaluate():
            continue  # another platform's package (pywin32, colorama on Windows)
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != entry.version:
            wrong[name] = (entry.version, installed)
    assert not wrong, f"(locked, installed): {wrong}; rebuild the venv: make clean && make .venv/.installed"


def test_make_and_the_image_install_from_the_locks() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    stamp = re.search(r"^\$\(STAMP\):(?P<deps>.*)\n(?P<recipe>(?:\t.*\n)+)", makefile, re.M)
    assert stamp, "Makefile: no $(STAMP) rule"
    assert {"pyproject.toml", "requirements.lock", "requirements-dev.lock"} <= set(stamp.group("deps").split())
    installs = [line for line in stamp.group("recipe").splitlines() if " install " in line]
    assert any("--require-hashes -r requirements-dev.lock" in line for line in installs), installs
    assert all("-r requirements-dev.lock" in line or "--no-deps" in line for line in installs), installs

    # The image: its dependencies from requirements.lock with their hashes (wheels built, then
    # installed), the project's own wheel alone without the lock and without dependencies.
    # (scripts/container-smoke builds the image for real in CI.)
    dockerfile = " ".join((REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ").split())
    assert dockerfile.count("--require-hashes") >= 2 and dockerfile.count("-r requirements.lock") >= 2
    assert re.search(r"install [^&]*--no-deps [^&]*chatwoot_mcp_connector-\*\.whl", dockerfile)
