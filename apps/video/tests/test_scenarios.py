"""Three operations scenarios of the video site, each run for real on a temporary platform.

1. A new version of the thumbnail service runs as a shadow beside production on the same
   uploads; ``diff_outputs`` says exactly how its records differ, and production is untouched.
2. An up-to-date copy of the catalog is made at will (``millstream tables rebuild --into``)
   and equals the live ``videos`` table document for document.
3. The transcoder, a child process (``millstream run``), is killed at half of a video by a
   named fault point; restarted, it finishes the work; every video has exactly one final
   record and the transcoder's file prefix holds no orphan object.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from millstream import open_streams
from millstream.cli.main import cli
from millstream.faults import FAULT_EXIT_CODE
from millstream.files._gc import collect_garbage, references_in_streams
from millstream.operations._shadow import diff_outputs
from millstream.runtime import ServiceRunner
from millstream.service import App, Context
from millstream.testing import TestPlatform
from videosite.app import HALFWAY_FAULT, app
from videosite.config import media_limits
from videosite.join import in_flight
from videosite.media import poster, probe, thumbnails
from videosite.models import Progress, Thumbnails, Upload, Video
from videosite.pipeline import submit
from videosite_testing import Idle

STAGES = ("probe", "thumbnail", "transcode", "join")
SHADOW = "v2"
#: the v2 thumbnailer: five smaller stills instead of three
V2_POINTS = (0.1, 0.3, 0.5, 0.7, 0.9)
V2_WIDTH = 160


def run_until_idle(platform: TestPlatform, service: str, *, version: App | None = None,
                   shadow: str | None = None, timeout: float = 30.0) -> None:
    """Run ``service`` (of ``version``, default the platform's app) in-process, with the
    platform's files and tables, until its group has no lag left."""
    deadline = time.monotonic() + timeout
    while True:
        with open_streams(platform.url) as streams:
            runner = ServiceRunner(version or platform.app, service, streams, shadow=shadow,
                                   clock=platform.clock, poll_timeout_s=0.05,
                                   metrics_interval_s=60.0, files=platform.files,
                                   tables=platform.tables)
            runner.run(until=Idle(deadline))
        if platform.lag(service, shadow=shadow) == 0:
            return
        assert time.monotonic() < deadline, f"{service} left lag after {timeout} s"


# -- the v2 thumbnail service: same app and service name, other stills ------------------------

def _v2_app() -> App:
    v2 = App(app.name, partitions=app.partitions)
    for name, payload in (("uploads", Upload), ("thumbnails", Thumbnails),
                          ("status", Progress)):
        v2.stream(name, payload, partitions=app.streams[name].partitions)

    @v2.service(inputs={"uploads": Upload},
                outputs={"thumbnails": Thumbnails, "status": Progress}, uses=("files",))
    def thumbnail(upload: Upload, ctx: Context) -> None:
        """Five stills of 160 pixels and the poster."""
        started = time.time()
        source = ctx.files.local_path(upload.source)
        probe(source, media_limits())
        with tempfile.TemporaryDirectory(prefix="videosite-v2-") as work:
            stills = thumbnails(source, Path(work) / "thumbs", points=V2_POINTS,
                                width=V2_WIDTH)
            cover = poster(source, Path(work) / "poster.jpg")
            refs = [ctx.files.put(f"thumbs/{s.name}", s, content_type="image/jpeg")
                    for s in stills]
            poster_ref = ctx.files.put("poster.jpg", cover, content_type="image/jpeg")
        ctx.emit("thumbnails", Thumbnails(video_id=upload.video_id, ok=True, thumbnails=refs,
                                          poster=poster_ref, started_at=started,
                                          finished_at=time.time()))
        ctx.emit("status", Progress(video_id=upload.video_id, stage="thumbnail",
                                    fraction=1.0, message="done"))

    return v2


@dataclass
class Site:
    platform: TestPlatform
    ids: dict[str, str]


def _submit(platform: TestPlatform, clips: dict[str, Path], names: tuple[str, ...]
            ) -> dict[str, str]:
    return {name: submit(platform.streams, platform.files, clips[name], f"clip {name}")
            for name in names}


@pytest.fixture(scope="module")
def site(clips: dict[str, Path]) -> Iterator[Site]:
    """Three small clips through the whole production pipeline."""
    with TestPlatform(app) as platform:
        ids = _submit(platform, clips, ("landscape", "rotated", "tiny"))
        for service in STAGES:
            run_until_idle(platform, service)
        yield Site(platform, ids)


def _table(platform: TestPlatform, name: str) -> list[tuple[str, dict[str, Any]]]:
    return platform.tables.table(name).scan("", limit=1000)


def test_a_shadow_thumbnailer_differs_only_where_expected(site: Site) -> None:
    platform = site.platform
    before_thumbnails = platform.records("thumbnails")
    before_videos = _table(platform, "videos")
    before_files = [ref.url for ref in platform.files.list("videosite.thumbnail/")]
    assert len(before_thumbnails) == 3 and len(before_videos) == 3
    assert all(v["status"] == "ready" for _, v in before_videos)

    run_until_idle(platform, "thumbnail", version=_v2_app(), shadow=SHADOW)

    shadow_values = [Thumbnails.model_validate_json(r.value or b"")
                     for r in platform.records(f"thumbnails.shadow.{SHADOW}")]
    assert sorted(t.video_id for t in shadow_values) == sorted(site.ids.values())
    assert all(len(t.thumbnails) == 5 and t.poster is not None for t in shadow_values)

    with open_streams(platform.url) as streams:
        diffs = {d.stream: d for d in diff_outputs(streams, app, "thumbnail", SHADOW)}
    thumbs = diffs["thumbnails"]
    assert (thumbs.production_records, thumbs.shadow_records) == (3, 3)
    assert (thumbs.equal, thumbs.differing, thumbs.only_production, thumbs.only_shadow) == (
        0, 3, 0, 0)
    # the stills (count and size), the poster's name (the shadow's prefix) and the timings
    assert dict(thumbs.fields) == {"thumbnails": 3, "poster": 3, "started_at": 3,
                                   "finished_at": 3}
    for example in thumbs.examples:
        assert len(example.production["thumbnails"]) == 3
        assert len(example.shadow["thumbnails"]) == 5
    # status is written by three production services: only thumbnail's records (named by
    # their millstream-writer header) are compared, and its "done" notes are the same
    status = diffs["status"]
    assert (status.production_records, status.shadow_records) == (3, 3)
    assert (status.equal, status.differing, status.only_production, status.only_shadow) == (
        3, 0, 0, 0)
    assert status.other_writers == len(platform.records("status")) - 3 > 6

    # production is untouched: its records, its table, its objects
    assert platform.records("thumbnails") == before_thumbnails
    assert _table(platform, "videos") == before_videos
    assert [ref.url for ref in platform.files.list("videosite.thumbnail/")] == before_files
    shadow_prefix = f"videosite.thumbnail.shadow.{SHADOW}/"
    shadow_objects = {ref.url for ref in platform.files.list(shadow_prefix)}
    assert len(shadow_objects) == 3 * (5 + 1)
    assert shadow_objects == {ref.url for t in shadow_values
                              for ref in [*t.thumbnails, t.poster] if ref is not None}
    # the shadow's stills are the smaller ones
    with Image.open(platform.files.local_path(shadow_values[0].thumbnails[0])) as image:
        assert image.width == V2_WIDTH


def _cli_env(platform: TestPlatform) -> dict[str, str]:
    assert platform.directory is not None
    return {"MILLSTREAM_HOME": str(platform.directory),
            "MILLSTREAM_STREAMS": platform.url,
            "MILLSTREAM_FILES": (platform.directory / "files").as_uri(),
            "MILLSTREAM_TABLES": "sqlite:///" + str(platform.directory / "tables.db")}


def test_a_copy_of_the_catalog_made_at_will_equals_the_live_table(site: Site) -> None:
    platform = site.platform
    result = CliRunner().invoke(cli, ["tables", "rebuild", "videos", "--into", "videos-copy"],
                                env=_cli_env(platform), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "rebuilt 'videos-copy': 6 record(s) replayed" in result.output
    live, copy = _table(platform, "videos"), _table(platform, "videos-copy")
    assert len(live) == 3 and copy == live  # every document, key by key
    assert {key for key, _ in live} == set(site.ids.values())
    assert platform.tables.table("videos-copy").info().feed == "videos"


# -- 3. kill -9 of the transcoder at half of a video ----------------------------------------

def _transcoder(platform: TestPlatform, fault: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, **_cli_env(platform)}
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    return subprocess.Popen(
        [sys.executable, "-m", "millstream", "run", "videosite.app:app", "transcode",
         "--metrics-interval", "60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_transcoder_killed_halfway_leaves_one_final_record_and_no_orphan(
        clips: dict[str, Path]) -> None:
    with TestPlatform(app) as platform:
        ids = _submit(platform, clips, ("landscape", "rotated"))
        for service in ("probe", "thumbnail"):
            run_until_idle(platform, service)

        # dies half way through the second video: the first one's objects are written, and
        # its record may or may not have been sent or committed
        crashing = _transcoder(platform, f"{HALFWAY_FAULT}:2")
        _, err = crashing.communicate(timeout=60)
        assert crashing.returncode == FAULT_EXIT_CODE, err.decode()
        assert f"fault point '{HALFWAY_FAULT}' reached" in err.decode()
        assert platform.lag("transcode") > 0
        # the first video was transcoded and its objects stored; the second got to half
        encoding: dict[str, list[float]] = {}
        for p in platform.values("status"):
            if p.stage == "transcode":
                encoding.setdefault(p.video_id, []).append(p.fraction)
        assert sorted(max(f) for f in encoding.values())[-1] == 1.0
        [(halfway, fractions)] = [(v, f) for v, f in encoding.items() if max(f) < 1.0]
        # the fault came before 0.5; progress goes out with emit_now, which does not wait for
        # the records to be stored, so the crash may have lost the last ones (a loaded
        # machine's producer thread may not have written 0.4 yet)
        assert halfway in ids.values() and max(fractions) < 0.5
        first = {ref.url for ref in platform.files.list("videosite.transcode/")}
        assert len(first) == 3  # 240p.mp4, 240p.m3u8, master.m3u8 of the first video
        assert len(platform.records("renditions")) <= 1

        restarted = _transcoder(platform, None)
        try:
            platform.wait_until(lambda: platform.lag("transcode") == 0, timeout=60)
        finally:
            restarted.send_signal(signal.SIGTERM)
            _, err = restarted.communicate(timeout=30)
        assert restarted.returncode == 0, err.decode()

        for service in ("join",):
            run_until_idle(platform, service)

        videos: list[Video] = platform.values("videos")
        final = Counter(v.video_id for v in videos if v.status in ("ready", "failed"))
        assert final == dict.fromkeys(ids.values(), 1)
        assert all(v.status == "ready" for v in videos if v.status != "processing")
        table = dict(_table(platform, "videos"))
        assert sorted(table) == sorted(ids.values())
        assert all(doc["status"] == "ready" for doc in table.values())
        assert in_flight(platform.state("join")) == {}

        # no orphan: every object under the transcoder's prefix is referred to by a record,
        # and the final videos refer to all of them (a retry rewrote the same names)
        stored = {ref.url for ref in platform.files.list("videosite.transcode/")}
        with open_streams(platform.url) as streams:
            referenced = references_in_streams(streams)
        assert stored and stored <= referenced
        in_catalog = set()
        for doc in table.values():
            video = Video.model_validate(doc)
            assert video.hls_master is not None
            in_catalog.add(video.hls_master.url)
            for rendition in video.renditions:
                in_catalog |= {rendition.ref.url, rendition.playlist.url}
        assert stored == in_catalog and len(stored) == 6
        assert first <= stored  # the retry rewrote the first video's objects in place
        assert collect_garbage(platform.files, referenced, dry_run=True, older_than_s=0,
                               prefix="videosite.transcode/") == []
        result = CliRunner().invoke(cli, ["files", "gc", "--dry-run", "--older-than", "0s"],
                                    env=_cli_env(platform), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "would delete 0 object(s)" in result.output, result.output
