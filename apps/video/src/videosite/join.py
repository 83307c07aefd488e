"""Putting a video's parts together: the upload and the three stage results.

The join keeps, per video, the parts seen so far (JSON, in its checkpointed state). Once the
upload and all three results are there it builds the ``Video`` — ``ready`` if every stage
succeeded, else ``failed`` with the first failing stage's reason (probe, transcode, thumbnail
in that order) — and forgets the video, so the state holds only videos in flight.
"""

from __future__ import annotations

from typing import Any

from .models import Probed, StageResult, StageTiming, Thumbnails, Transcoded, Upload, Video

__all__ = ["PARTS", "combine", "processing"]

#: state field -> the model of the part stored there
PARTS: dict[str, type[Upload] | type[StageResult]] = {
    "upload": Upload, "probe": Probed, "thumbnail": Thumbnails, "transcode": Transcoded,
}
#: which stage's failure is reported first when several fail
_BLAME_ORDER = ("probe", "transcode", "thumbnail")


def processing(upload: Upload) -> Video:
    """What is known while the stages run."""
    return Video(video_id=upload.video_id, title=upload.title, status="processing",
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
