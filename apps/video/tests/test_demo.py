"""The main job (``python -m videosite.demo``) on a fresh embedded platform."""

from __future__ import annotations

from millstream.tables import open_tables
from videosite.demo import SAMPLES, main
from videosite.models import Video


def test_the_demo_processes_every_sample_and_refuses_the_picture() -> None:
    # on the per-test home and working directory the shared fixtures give every test
    assert main(["--no-serve", "--timeout", "120"]) == 0
    tables = open_tables()
    videos = [Video.model_validate(doc) for _, doc in tables.table("videos").scan()]
    tables.close()
    assert sorted(v.title for v in videos if v.status == "ready") == sorted(
        s.title for s in SAMPLES)
    # the picture is refused: at upload (415) through the HTTP API, or by the probe stage
    failed = [v for v in videos if v.status == "failed"]
    assert len(videos) in (len(SAMPLES), len(SAMPLES) + 1)
    if failed:
        assert len(failed) == 1 and failed[0].reason is not None
        assert "not a video" in failed[0].reason
    silent = next(v for v in videos if v.title.startswith("Silent"))
    assert silent.metadata is not None and not silent.metadata.has_audio
    assert all(r.width <= 640 for v in videos for r in v.renditions)  # never upscaled
