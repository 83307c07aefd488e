"""Sources whose timestamps do not start at zero: MPEG-TS clocks, MKV start offsets, MOV
edit lists. Probe measures end minus start, thumbnails come from their moments, and the
renditions start at zero with the right length and audio in step.

Every clip is generated with PyAV: 2 s at 25 fps, 160 x 120, key frames every second,
a tone. Every frame differs (a shifting colour, a moving bar), so a still is traced back
to the source frame it shows by the nearest decoded frame.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageStat

from videosite.inprocess import InProcessSite
from videosite.media import probe, thumbnails, thumbnails_and_poster, transcode
from videosite.media.samples import make_clip

SECONDS, FPS = 2.0, 25

OFFSETS = {  # name -> (suffix, first timestamp (s), B-frames)
    "ts from 1.4 s": (".ts", 1.4, 0),
    "ts from 10 h": (".ts", 36000.0, 0),
    "ts from 1.4 s with B-frames": (".ts", 1.4, 2),
    "mkv from 10 s": (".mkv", 10.0, 0),
    "mkv from 10 s with B-frames": (".mkv", 10.0, 2),
    "mov from 10 s (an empty edit)": (".mov", 10.0, 0),
    "mov with B-frames (an edit list)": (".mov", 0.0, 2),
    "mp4 from 10 s (an empty edit)": (".mp4", 10.0, 0),
}


@pytest.fixture(scope="module")
def offset_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("offsets")
    made = {}
    for n, (name, (suffix, start_s, b_frames)) in enumerate(OFFSETS.items()):
        path = folder / f"clip-{n}{suffix}"
        make_clip(path, 160, 120, SECONDS, fps=FPS, start_s=start_s, b_frames=b_frames)
        made[name] = path
    return made


def _first_pts_s(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.start_time is not None and stream.time_base is not None
        return float(stream.start_time * stream.time_base)


def _frames(path: Path) -> list[Image.Image]:
    """Every frame of the file's video, in order, as 160 x 120 RGB images."""
    with av.open(str(path)) as container:
        return [
            frame.to_image().convert("RGB").resize((160, 120))  # type: ignore[no-untyped-call]
            for frame in container.decode(video=0)
        ]


def _nearest(image: Image.Image, frames: list[Image.Image]) -> int:
    """The index of the frame ``image`` shows (the least mean difference)."""
    distances = [sum(ImageStat.Stat(ImageChops.difference(image, f)).mean) for f in frames]
    return distances.index(min(distances))


@pytest.mark.parametrize("name", OFFSETS)
def test_the_clips_really_start_late(name: str, offset_clips: dict[str, Path]) -> None:
    suffix, start_s, _ = OFFSETS[name]
    path = offset_clips[name]
    if suffix in (".mov", ".mp4"):
        assert b"elst" in path.read_bytes()  # the start is an edit list
    if start_s:
        assert _first_pts_s(path) == pytest.approx(start_s, abs=0.05)


@pytest.mark.parametrize("name", OFFSETS)
def test_probe_measures_from_the_first_timestamp_to_the_last(
    name: str, offset_clips: dict[str, Path]
) -> None:
    found = probe(offset_clips[name])
    assert found.duration_s == pytest.approx(SECONDS, abs=0.1)
    assert found.frame_count == SECONDS * FPS
    assert (found.width, found.height, found.fps) == (160, 120, FPS)


@pytest.mark.parametrize("name", OFFSETS)
def test_thumbnails_show_the_frames_at_their_moments(
    name: str, offset_clips: dict[str, Path], tmp_path: Path
) -> None:
    path = offset_clips[name]
    stills = thumbnails(path, tmp_path, points=(0.1, 0.5, 0.9), width=160)
    source = _frames(path)
    assert len(source) == SECONDS * FPS
    shown = []
    for still in stills:
        with Image.open(still) as image:
            shown.append(_nearest(image.convert("RGB"), source))
    # 10 %, 50 % and 90 % of 2 s at 25 fps: frames 5, 25 and 45 from the first one
    assert shown == [5, 25, 45]


@pytest.mark.parametrize("name", OFFSETS)
def test_renditions_start_at_zero_with_the_right_length_and_audio_in_step(
    name: str, offset_clips: dict[str, Path], tmp_path: Path
) -> None:
    path = offset_clips[name]
    (rendition,) = transcode(path, tmp_path)  # 160 x 120: the smallest rung only
    assert rendition.duration_s == pytest.approx(SECONDS, abs=0.1)
    with av.open(str(rendition.path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.time_base is not None and audio.time_base is not None
        assert video.start_time == 0
        audio_start = float((audio.start_time or 0) * audio.time_base)
        assert audio_start == pytest.approx(0.0, abs=0.03)  # AAC priming at most
        frames = list(container.decode(video))
        assert audio.duration is not None
        audio_s = float(audio.duration * audio.time_base)
        assert audio_s == pytest.approx(SECONDS, abs=0.1)
    assert len(frames) == SECONDS * FPS
    assert frames[0].pts == 0
    first = frames[0].to_image().convert("RGB").resize((160, 120))  # type: ignore[no-untyped-call]
    assert _nearest(first, _frames(path)) == 0


LATE_AUDIO_S = 0.5


def _tone_onset_s(path: Path) -> float:
    """When the audio of ``path`` first sounds (a sample over a tenth of full scale), in
    seconds from the rendition's time zero."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            assert frame.time is not None and frame.format.name == "fltp"  # AAC's float planes
            values = memoryview(bytes(frame.planes[0])).cast("f")[: frame.samples]
            for n, value in enumerate(values):
                if abs(value) > 0.1:
                    return frame.time + n / frame.sample_rate
    raise AssertionError(f"no tone in {path}")


@pytest.mark.parametrize("suffix", [".ts", ".mkv", ".mov"])
def test_audio_that_starts_after_the_video_moves_nothing_and_stays_in_step(
    suffix: str, tmp_path: Path
) -> None:
    # a broadcast-style clock (from 10 s) whose tone starts half a second after the picture
    source = tmp_path / f"late-audio{suffix}"
    make_clip(source, 160, 120, SECONDS, fps=FPS, start_s=10.0, audio_delay_s=LATE_AUDIO_S)
    # the video's own start and length, not the audio's
    assert probe(source).duration_s == pytest.approx(SECONDS, abs=0.1)
    stills = thumbnails(source, tmp_path / "stills", points=(0.1, 0.5, 0.9), width=160)
    frames = _frames(source)
    shown = []
    for still in stills:
        with Image.open(still) as image:
            shown.append(_nearest(image.convert("RGB"), frames))
    assert shown == [5, 25, 45]
    (rendition,) = transcode(source, tmp_path / "out")
    with av.open(str(rendition.path)) as container:
        assert next(container.decode(video=0)).pts == 0
    with av.open(str(rendition.path)) as container:
        packets = [p for p in container.demux(audio=0) if p.size]
    # silence from zero, then the tone: no packet stretched over the gap, so a player that
    # plays the samples back to back hears the tone when one that follows timestamps does
    # (a Matroska source's millisecond timestamps make them 1024 samples give or take 5 %)
    assert packets[0].pts == 0
    assert max(p.duration for p in packets) < 2 * 1024
    assert _tone_onset_s(rendition.path) == pytest.approx(LATE_AUDIO_S, abs=0.03)


def test_a_broadcast_ts_uploaded_to_the_site_ends_ready_with_the_right_stills(
    offset_clips: dict[str, Path],
) -> None:
    """The whole path on the embedded log: the web upload (sniffed and checked as MPEG-TS,
    stored as ``.ts``), probe, thumbnail, transcode, join and catalog."""
    path = offset_clips["ts from 10 h"]
    with InProcessSite(token="offsets", poll_timeout_s=0.05) as site:
        video_id = site.upload(path, "a broadcast from 10 h")
        finished = site.wait([video_id], timeout=120)
        assert site.errors == []
        video = finished[video_id]
        assert video.status == "ready", video.reason
        meta = video.metadata
        assert meta is not None
        assert (meta.container, meta.frame_count) == ("mpegts", SECONDS * FPS)
        assert meta.duration_s == pytest.approx(SECONDS, abs=0.1)
        assert [(r.name, r.width, r.height) for r in video.renditions] == [("240p", 160, 120)]
        source = _frames(path)
        shown = []
        for ref in video.thumbnails:
            with Image.open(io.BytesIO(site.files.read_bytes(ref))) as image:
                shown.append(_nearest(image.convert("RGB"), source))
        assert shown == [5, 25, 45]
        rendition = site.files.read_bytes(video.renditions[0].ref)
    with av.open(io.BytesIO(rendition)) as container:
        stream = container.streams.video[0]
        assert stream.start_time == 0
        assert stream.duration is not None and stream.time_base is not None
        assert float(stream.duration * stream.time_base) == pytest.approx(SECONDS, abs=0.1)


@pytest.mark.parametrize(
    "name", ["ts from 1.4 s", "mkv from 10 s", "mp4 from 10 s (an empty edit)"])
def test_probe_reads_the_audio_format_from_the_first_audio_frame(
    name: str, offset_clips: dict[str, Path], tmp_path: Path
) -> None:
    # MPEG-TS headers leave channels and rate at 0 while the decoders are barred (probe said
    # 0 channels at 0 Hz, and the rendition was made at 48 kHz); the clips' tone is mono
    # 44.1 kHz AAC
    found = probe(offset_clips[name])
    assert (found.audio_codec, found.audio_channels, found.audio_sample_rate) == (
        "aac", 1, 44100)
    (rendition,) = transcode(offset_clips[name], tmp_path / "out")
    with av.open(str(rendition.path)) as container:
        audio = container.streams.audio[0]
        assert (audio.codec_context.channels, audio.sample_rate) == (1, 44100)


def test_stills_from_a_ts_with_one_key_frame_demux_no_further_than_each_target(
    tmp_path: Path,
) -> None:
    # MPEG-TS seeks by timestamp alone: with one key frame, every landing after it decoded
    # on to the end of the file before stepping back (1, 2, 4 ... s); 60 s of 320 x 240 cost
    # 26 full decodes of the file. Now a landing stops past its target, and the thumbnails
    # and the poster share one pass: 6 here (CPU time, so the machine's load counts little).
    path = tmp_path / "one-key-frame.ts"
    make_clip(path, 320, 240, 60.0, keyframe_interval_s=60.0, audio=False)
    began = time.process_time()
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60 * FPS
    full_decode = time.process_time() - began
    began = time.process_time()
    stills, cover = thumbnails_and_poster(path, tmp_path / "stills", tmp_path / "poster.jpg")
    took = time.process_time() - began
    assert [still.name for still in stills] == ["thumb-01.jpg", "thumb-02.jpg", "thumb-03.jpg"]
    assert cover.stat().st_size > 0
    assert took < 12 * full_decode, f"{took:.2f} s against a full decode of {full_decode:.2f} s"


def test_a_ts_that_begins_mid_gop_gives_its_first_key_frame_for_points_before_it(
    tmp_path: Path,
) -> None:
    # a capture cut from a broadcast: it begins 3 s into a 10 s group of pictures, so nothing
    # decodes before the key frame at 10 s; a still before that is the first frame shown
    whole = tmp_path / "whole.ts"
    make_clip(whole, 160, 120, 20.0, keyframe_interval_s=10.0, audio=False)
    cut = tmp_path / "cut.ts"
    with av.open(str(whole)) as source, av.open(str(cut), "w", format="mpegts") as out:
        stream = source.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.pts is None or packet.pts * stream.time_base < 3:
                continue
            packet.stream = copy
            out.mux(packet)
    (still,) = thumbnails(cut, tmp_path / "stills", points=(0.1,), width=160)
    frames = _frames(cut)  # what a player shows: from the key frame at 10 s
    with Image.open(still) as image:
        assert _nearest(image.convert("RGB"), frames) == 0
