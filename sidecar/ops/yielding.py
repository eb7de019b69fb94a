"""Provides YieldsToIntake: what ops' background passes (retention, the search index) need of the
queue's pacing.

ops observes the message path and never imports it (an import contract); these passes only ask the
process's pacing to step back while webhooks wait, so they name that one method here and the
runtime hands them its ``sidecar.queue.pacing.Pacing``.
"""

from __future__ import annotations

from typing import Protocol


class YieldsToIntake(Protocol):
    async def yield_to_intake(self) -> None:
        """Returns once a background batch may run (at once while intake keeps up)."""
        ...
