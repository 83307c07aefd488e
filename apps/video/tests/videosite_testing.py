"""What several video-site tests share."""

from __future__ import annotations

import time

from millstream.service import ServiceRunner

__all__ = ["Idle"]


class Idle:
    """``until`` for ``ServiceRunner.run``: true once a poll read nothing."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.seen = -1

    def __call__(self, runner: ServiceRunner) -> bool:
        assert time.monotonic() < self.deadline, f"{runner.spec.name} still busy"
        count = runner.statistics().records_in
        quiet, self.seen = count == self.seen, count
        return quiet
