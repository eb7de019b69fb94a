"""Secret-leak checks for tests: a grep for every configured secret.

Usage (``sidecar.client`` keeps every answer it gets)::

    status, body, _ = await sidecar.client.get("/health")
    ...
    assert_no_secrets(sidecar, sidecar.client.bodies)

``assert_no_secrets`` loads the sidecar's config the way the sidecar does (config.yaml plus the
process's environment overrides), takes every value of ``secret_values(config)`` and searches
the log directory (rotated files included), the sidecar's log lines and the given response
bodies. Any hit fails the test, naming where it was found but not the secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sidecar.config import load_config, secret_values
from tests.harness import SidecarBase


def configured_secrets(proc: SidecarBase) -> list[str]:
    """Every secret the sidecar runs with (its config file plus its env overrides)."""
    return secret_values(load_config(str(proc.config_path), proc.env))


def log_texts(log_dir: Path) -> dict[str, str]:
    """Every file in the log directory (current and rotated), by name."""
    if not log_dir.exists():
        return {}
    return {p.name: p.read_text(encoding="utf-8", errors="replace") for p in sorted(log_dir.iterdir()) if p.is_file()}


def find_secrets(secrets: Iterable[str], texts: dict[str, str]) -> list[str]:
    """``"<where>: secret #<n> (len <k>)"`` for every secret found; never the secret itself."""
    hits = []
    for index, secret in enumerate(secrets):
        for where, text in texts.items():
            if secret and secret in text:
                hits.append(f"{where}: secret #{index} (len {len(secret)})")
    return hits


def assert_no_secrets(proc: SidecarBase, responses: Iterable[str] = (),
                      extra_secrets: Iterable[str] = ()) -> int:
    """Fails if any configured secret appears in the logs, the output or the responses.

    Returns how many texts were searched (so a test can check it searched something).
    """
    secrets = [*configured_secrets(proc), *extra_secrets]
    assert secrets, "no secrets configured: the check would prove nothing"
    texts = {f"log {name}": text for name, text in log_texts(proc.log_dir).items()}
    texts["log lines"] = "\n".join(proc.output)
    texts.update({f"response {i}": body for i, body in enumerate(responses)})
    hits = find_secrets(secrets, texts)
    assert not hits, "secrets leaked:\n" + "\n".join(hits)
    return len(texts)
