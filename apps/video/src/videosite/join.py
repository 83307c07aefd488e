"""Putting a video's parts together: the upload and the three stage results.

The join keeps, per video, the parts seen so far (JSON, in its checkpointed state). Once the
upload and all three results are there it builds the ``Video`` — ``ready`` if every stage
succeeded, else ``failed`` with the first failing stage's reason (probe, transcode, thumbnail
in that order) — and replaces the video's parts by a tombstone, ``{"finished_ms": t}`` (the
time of the record that finished it).

The tombstone is what drops late duplicates: delivery is at least once, so a stage that
crashed after sending its result sends it again when it retries, possibly after the video
finished. Without the tombstone that duplicate would start a new entry which no other part
ever completes, and which would stay in the state for good. With it the duplicate is dropped
(and so is a repeated upload, which would otherwise announce the video as processing again).

Tombstones are pruned by age and count, so the state stays bounded: a tombstone older than
``REMEMBER_FINISHED_S`` seconds (record time) goes, and a partition keeps at most
``REMEMBER_AT_MOST``, the newest. Pruning scans the partition's state, so it is done by about
one finishing video in ``PRUNE_EVERY``, chosen by its id (the same on a replay). A duplicate
arriving after its video's tombstone went is not recognised: it starts an entry in flight.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, MutableMapping
from typing import Any

from .models import Probed, StageResult, StageTiming, Thumbnails, Transcoded, Upload, Video
from .titles import storable

__all__ = [
    "FINISHED",
    "PARTS",
    "PRUNE_EVERY",
    "REMEMBER_AT_MOST",
    "REMEMBER_FINISHED_S",
    "VideoFailed",
    "combine",
    "forget_finished",
    "in_flight",
    "processing",
    "receive",
]

log = logging.getLogger(__name__)


class VideoFailed(Exception):
    """What the join reports to the exceptions stream for a video that ends ``failed``."""

    @classmethod
    def of(cls, video: Video) -> VideoFailed:
        return cls(f"video {video.video_id} failed in {video.failed_stage} "
                   f"({video.error_kind}): {video.reason}")

#: state field -> the model of the part stored there
PARTS: dict[str, type[Upload] | type[StageResult]] = {
    "upload": Upload, "probe": Probed, "thumbnail": Thumbnails, "transcode": Transcoded,
}
#: which stage's failure is reported first when several fail
_BLAME_ORDER = ("probe", "transcode", "thumbnail")

#: the field of a finished video's tombstone: when (record time, ms) it finished
FINISHED = "finished_ms"
#: how long a finished video is remembered, in record time: a day of at-least-once retries
REMEMBER_FINISHED_S = 24 * 3600.0
#: how many finished videos a partition remembers at most (the newest); ~50 bytes each
REMEMBER_AT_MOST = 10_000
#: about one finishing video in this many prunes its partition's tombstones
PRUNE_EVERY = 64

Part = Upload | Probed | Thumbnails | Transcoded


def processing(upload: Upload) -> Video:
    """What is known while the stages run."""
    return Video(video_id=upload.video_id, title=storable(upload.title), status="processing",
                 source=upload.source, uploaded_at=upload.uploaded_at)


def combine(parts: dict[str, Any]) -> Video | None:
    """The finished video, or None while a part is missing. ``parts`` maps names of
    ``PARTS`` to their JSON."""
    if any(name not in parts for name in PARTS):
        return None
    upload = Upload.model_validate(parts["upload"])
    probed = Probed.model_validate(parts["probe"])
    thumbs = Thumbnails.model_validate(parts["thumbnail"])
    made = Transcoded.model_validate(parts["transcode"])
    results: dict[str, StageResult] = {"probe": probed, "thumbnail": thumbs, "transcode": made}
    stages = {name: StageTiming(started_at=r.started_at, finished_at=r.finished_at, ok=r.ok)
              for name, r in results.items()}
    finished = max(r.finished_at for r in results.values())
    video = processing(upload).model_copy(update={"stages": stages, "finished_at": finished,
                                                  "metadata": probed.metadata})
    failed = [name for name in _BLAME_ORDER if not results[name].ok]
    if failed:
        first = results[failed[0]]
        return video.model_copy(update={"status": "failed", "reason": first.error,
                                        "failed_stage": failed[0],
                                        "error_kind": first.error_kind})
    return video.model_copy(update={
        "status": "ready", "thumbnails": thumbs.thumbnails, "poster": thumbs.poster,
        "renditions": made.renditions, "hls_master": made.hls_master})


def _name(part: Part) -> str:
    for name, model in PARTS.items():
        if isinstance(part, model):
            return name
    raise TypeError(f"a {type(part).__name__} is not a part of a video")


def receive(state: MutableMapping[str, Any], part: Part, now_ms: int) -> Video | None:
    """Add ``part`` to its video in ``state`` (one partition's); return the finished video
    once every part is there, the video as processing for its upload, else None. A part of
    a video that already finished is dropped. ``now_ms``: the record's time."""
    video_id = part.video_id
    held = state.get(video_id)
    if held is not None and FINISHED in held:
        log.info("join: dropping a late %s of video %s, which finished at %d ms",
                 _name(part), video_id, held[FINISHED])
        return None
    parts = dict(held or {})
    parts[_name(part)] = part.model_dump(mode="json")
    finished = combine(parts)
    if finished is not None:
        state[video_id] = {FINISHED: now_ms}
        if zlib.crc32(video_id.encode()) % PRUNE_EVERY == 0:
            forget_finished(state, now_ms)
        return finished
    state[video_id] = parts
    return processing(part) if isinstance(part, Upload) else None


def forget_finished(state: MutableMapping[str, Any], now_ms: int, *,
                    keep: float = REMEMBER_FINISHED_S,
                    at_most: int = REMEMBER_AT_MOST) -> int:
    """Remove tombstones older than ``keep`` seconds before ``now_ms`` (a record timestamp,
    milliseconds since the epoch, as tombstones hold), then the oldest beyond ``at_most``;
    return how many went. Videos in flight are left alone."""
    finished = sorted((entry[FINISHED], video_id) for video_id, entry in state.items()
                      if FINISHED in entry)
    cutoff = now_ms - round(keep * 1000)
    old = sum(1 for at, _ in finished if at < cutoff)
    old = max(old, len(finished) - at_most)
    for _, video_id in finished[:old]:
        del state[video_id]
    return old


def in_flight(state: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of videos still waiting for parts (without the tombstones)."""
    return {video_id: entry for video_id, entry in state.items() if FINISHED not in entry}
