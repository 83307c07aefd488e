"""Where a video is in its processing, stage by stage, as the pages show it.

The probe, thumbnail and transcode stages report their progress on the status stream
(``Site.progress``); the join has no progress of its own: it waits for the three, then
writes the video's final record (``ready`` or ``failed``). ``site.js`` computes the same
from ``GET /api/videos/{id}`` to keep the pages live.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from videosite.models import Progress

__all__ = ["STAGES", "WORKERS", "StageState", "percent", "stage_states"]

#: the stages that report progress, in the order the pages list them
WORKERS = ("probe", "thumbnail", "transcode")
#: every stage a video goes through
STAGES = (*WORKERS, "join")


class StageState(NamedTuple):
    """One stage of one video: ``state`` is waiting, running, done or failed; ``text`` says
    it in words (the percentage while running)."""

    stage: str
    state: str
    text: str


def _worker(progress: Progress | None) -> tuple[str, str]:
    if progress is None:
        return "waiting", "waiting"
    if progress.fraction < 1.0:
        return "running", f"{round(progress.fraction * 100)}%"
    if progress.message.startswith("failed"):
        return "failed", "failed"
    return "done", "done"


def stage_states(status: str, progress: Mapping[str, Progress]) -> list[StageState]:
    """Each stage's state for a video with this ``status`` and these latest progress
    records (by stage)."""
    found = [StageState(stage, *_worker(progress.get(stage))) for stage in WORKERS]
    if status == "ready":
        join = ("done", "done")
    elif status == "failed":
        join = ("failed", "failed")
    elif all(s.state in ("done", "failed") for s in found):
        join = ("running", "joining")
    else:
        join = ("waiting", "waiting")
    return [*found, StageState("join", *join)]


def percent(progress: Mapping[str, Progress]) -> int:
    """How far the three working stages are, together, in percent (what the status badge
    of a processing video says)."""
    done = sum(min(1.0, p.fraction) for stage, p in progress.items() if stage in WORKERS)
    return round(done / len(WORKERS) * 100)
