"""A small Dockerfile reader for the deployment tests: stages, ENV, COPY, CMD, HEALTHCHECK.

It understands what our Dockerfile uses (line continuations, comments, JSON and shell forms,
``ENV k=v`` pairs, ``COPY --from``), not the whole Dockerfile language.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuations joined, comment lines dropped (as Docker does)."""
    out: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        logical = " ".join(part for part in buffer if part)
        buffer = []
        keyword, _, args = logical.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    return out


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    result: list[Stage] = []
    for inst in instructions(path.read_text(encoding="utf-8")):
        if inst.keyword == "FROM":
            words = [w for w in inst.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(words[0], name))
        elif result:
            result[-1].instructions.append(inst)
    return result


def exec_form(args: str) -> list[str]:
    """``["a", "b"]`` as a list; the shell form as ``/bin/sh -c`` (what Docker runs)."""
    if args.lstrip().startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
        return value
    return ["/bin/sh", "-c", args]


def healthcheck(stage: Stage) -> list[str]:
    inst = stage.last("HEALTHCHECK")
    assert inst is not None, "the final stage has no HEALTHCHECK"
    match = re.search(r"(^|\s)CMD\s+(.*)$", inst.args)
    assert match, f"HEALTHCHECK without CMD: {inst.args}"
    return exec_form(match.group(2))


def env(stage: Stage, inherited: dict[str, str]) -> dict[str, str]:
    """The stage's ENV values, with ``$NAME``/``${NAME}`` expanded from earlier values."""
    values = dict(inherited)
    for inst in stage.all("ENV"):
        for word in shlex.split(inst.args):
            name, sep, value = word.partition("=")
            assert sep, f"line {inst.line}: use ENV name=value"
            values[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ""), value)
    return values


def copies(stage: Stage) -> list[tuple[list[str], str, str | None]]:
    """(sources, destination, --from stage or None) of every COPY."""
    out = []
    for inst in stage.all("COPY"):
        words = shlex.split(inst.args)
        source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
        paths = [w for w in words if not w.startswith("--")]
        out.append((paths[:-1], paths[-1], source_stage))
    return out


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[tuple[bool, str]]:
    """(is_exception, pattern) lines of .dockerignore."""
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        out.append((negate, line.lstrip("!").strip("/")))
    return out


def _matches(pattern: str, relative: str) -> bool:
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # the path and its parents
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase(part, tail) for part in parts)
    return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates)


def in_context(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """Whether the build context keeps ``relative``: the last matching pattern decides.

    An approximation of Docker's rules (a pattern also matches the path's parent folders),
    exact for the allow-list style of our .dockerignore.
    """
    keep = True
    for negate, pattern in patterns:
        if _matches(pattern, relative):
            keep = negate
    return keep
