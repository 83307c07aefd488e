"""A video is in the catalog soon after its last stage ends, not at the join's next
periodic checkpoint: the join (stateful) commits — and so writes its table rows — with its
checkpoints, so the site sets its ``checkpoint_interval`` to ``app.JOIN_CHECKPOINT_S``
(0.5 s) instead of the default 5 s, which kept each video waiting 2.5 s on average (up to
5 s) after its transcode and the last clip of a batch with it. And the transcoder takes one
upload per poll, so a queue of uploads cannot hold its next poll past
``max_poll_interval_ms``."""

from __future__ import annotations

import time
from pathlib import Path

import millstream
from millstream import MillstreamError
from videosite.app import JOIN_CHECKPOINT_S, TRANSCODE_BATCH, app
from videosite.inprocess import InProcessSite
from videosite.models import Video
from videosite.pipeline import submit

CLIPS = 4
#: the checkpoint interval, plus the join's own work and a loaded machine's delays
BOUND_S = JOIN_CHECKPOINT_S + 1.0


def test_each_video_is_ready_within_a_join_checkpoint_of_its_transcode(
        clips: dict[str, Path]) -> None:
    assert app.get("join").checkpoint_interval == JOIN_CHECKPOINT_S
    late: list[float] = []
    with InProcessSite(token="t", serve=False, poll_timeout_s=0.05) as site:
        table = site.tables.table("videos")
        for n in range(CLIPS):  # one after another, so each waits for its own commit
            video_id = f"{n:016x}"
            with millstream.open_streams(site.config.streams) as streams:
                submit(streams, site.files, clips["tiny"], f"clip {n}", video_id=video_id)
            deadline = time.monotonic() + 120
            video = None
            while time.monotonic() < deadline:
                try:
                    video = table.get(video_id, Video)
                except MillstreamError:  # the table is not made yet
                    video = None
                if video is not None and video.status != "processing":
                    break
                time.sleep(0.01)
            seen = time.time()
            assert video is not None and video.status == "ready", video
            late.append(seen - max(s.finished_at for s in video.stages.values()))
        assert site.errors == []
    assert max(late) < BOUND_S, late


def test_the_transcoder_takes_one_upload_per_poll() -> None:
    """A poll of N uploads is followed by the next only after N transcodes: with the
    default 500, twenty queued 10-second clips on a loaded machine took over
    ``max_poll_interval_ms`` (300 s) and the transcoder was dropped from its group."""
    assert TRANSCODE_BATCH == 1
    assert app.get("transcode").max_batch == TRANSCODE_BATCH
