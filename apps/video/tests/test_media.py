"""The media layer on clips generated with PyAV: sniff, probe, stills, renditions, HLS."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageStat

from videosite import media
from videosite.media import (
    MediaLimits,
    MediaRejected,
    NotAVideo,
    Rendition,
    hls_master,
    hls_media_playlist,
    plan_ladder,
    poster,
    probe,
    sniff,
    thumbnails,
    transcode,
)
from videosite.media.mp4 import read_boxes
from videosite.media.samples import make_clip

ClipSpec = tuple[int, int, float, bool, int, str]


def test_public_api_is_pinned() -> None:
    assert sorted(media.__all__) == [
        "DEFAULT_LADDER", "DEFAULT_LIMITS", "Fragment", "MediaError", "MediaLimits",
        "MediaRejected", "NotAVideo", "ProbeResult", "ProcessingError", "Rendition", "Rung",
        "hls_master", "hls_media_playlist", "plan_ladder", "poster", "probe", "sniff",
        "thumbnails", "thumbnails_and_poster", "transcode",
    ]  # fmt: skip


# -- sniff ------------------------------------------------------------------------------


def _image_bytes(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(out, kind)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "WEBP"])
def test_an_image_is_not_a_video_whatever_its_name(kind: str, tmp_path: Path) -> None:
    disguised = tmp_path / "holiday.mp4"
    disguised.write_bytes(_image_bytes(kind))
    with pytest.raises(NotAVideo, match="an image"):
        sniff(disguised)
    with pytest.raises(NotAVideo, match="an image"):
        probe(disguised)


@pytest.mark.parametrize(
    "data", [os.urandom(4096), b"", b"hello, world\n" * 50, b"\x00" * 2048],
    ids=["random", "empty", "text", "zeros"],  # fresh random bytes each run, a stable test id
)
def test_random_bytes_text_and_empty_files_are_refused(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "upload.mp4"
    path.write_bytes(data)
    with pytest.raises(NotAVideo):
        sniff(path)


def test_a_container_with_only_audio_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "song.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.planes[0].update(bytes(4096))
        frame.sample_rate, frame.pts = 44100, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(NotAVideo, match="without a video stream"):
        sniff(path)


def test_a_truncated_video_with_the_right_magic_is_refused(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "cut.mp4"
    path.write_bytes(clips["landscape"].read_bytes()[:600])
    with pytest.raises(NotAVideo):
        sniff(path)


@pytest.mark.parametrize(
    ("clip", "container"), [("landscape", "mp4"), ("matroska", "matroska"), ("mpegts", "mpegts")]
)
def test_real_videos_are_recognised_by_their_bytes(
    clip: str, container: str, clips: dict[str, Path], tmp_path: Path
) -> None:
    renamed = tmp_path / "picture.png"
    renamed.write_bytes(clips[clip].read_bytes())
    assert sniff(renamed) == container
    assert sniff(clips[clip].read_bytes()[:1024]) == container


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00", "mov"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "matroska"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "avi"),
        (b"FLV\x01\x05\x00\x00\x00\x09", "flv"),
        (b"OggS\x00\x02" + bytes(22), "ogg"),
        ((b"\x47" + bytes(187)) * 3, "mpegts"),
    ],
)
def test_magic_bytes_name_the_container(head: bytes, container: str) -> None:
    assert sniff(head) == container


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "an image"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "an image"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a video"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "audio"),
    ],
)
def test_look_alikes_are_refused_with_a_reason(head: bytes, reason: str) -> None:
    with pytest.raises(NotAVideo, match=reason):
        sniff(head)


# -- probe ------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", ["landscape", "wide", "rotated", "portrait", "tiny"])
def test_probe_reports_what_was_generated(
    clip: str, clips: dict[str, Path], clip_specs: dict[str, ClipSpec]
) -> None:
    width, height, seconds, audio, rotate, _ = clip_specs[clip]
    found = probe(clips[clip])
    assert found.container == "mp4"
    assert (found.width, found.height) == (width, height)
    assert found.duration_s == pytest.approx(seconds, abs=1e-6)
    assert found.fps == 25.0
    assert found.frame_count == round(seconds * 25)
    assert found.video_codec == "h264"
    assert found.rotation == rotate
    assert found.size_bytes == clips[clip].stat().st_size
    assert found.bit_rate is not None and found.bit_rate > 0
    if audio:
        assert (found.audio_codec, found.audio_channels, found.audio_sample_rate) == (
            "aac",
            1,
            44100,
        )
    else:
        assert found.audio_codec is None and not found.has_audio


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_rotation_is_read_from_the_display_matrix(rotate: int, tmp_path: Path) -> None:
    path = tmp_path / "turned.mp4"
    make_clip(path, 64, 48, 0.2, audio=False, rotate=rotate)
    found = probe(path)
    assert found.rotation == rotate
    expected = (48, 64) if rotate in (90, 270) else (64, 48)
    assert (found.display_width, found.display_height) == expected


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (MediaLimits(max_width=319), "width 320 exceeds the limit of 319"),
        (MediaLimits(max_height=200), "height 240 exceeds the limit of 200"),
        (MediaLimits(max_pixels=320 * 239), "pixels per frame 76800 exceeds the limit of 76480"),
        (MediaLimits(max_duration_s=1.5), r"duration \(s\) 2 exceeds the limit of 1.5"),
        (MediaLimits(max_frames=49), "frame count 50 exceeds the limit of 49"),
    ],
)
def test_media_bombs_are_refused_naming_value_and_limit(
    limits: MediaLimits, reason: str, clips: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(MediaRejected, match=reason) as caught:
        probe(clips["landscape"], limits)
    assert caught.value.limit is not None
    with pytest.raises(MediaRejected):
        transcode(clips["landscape"], tmp_path, limits=limits)
    assert list(tmp_path.iterdir()) == []


# -- thumbnails and poster ----------------------------------------------------------------


def _jpeg(path: Path, mode: str = "RGB") -> Image.Image:
    """The JPEG at ``path``, loaded and closed."""
    with Image.open(path) as image:
        assert image.format == "JPEG"
        return image.convert(mode)


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference, 0..255."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_thumbnails_are_distinct_jpegs_at_the_asked_width(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    paths = thumbnails(clips["wide"], tmp_path, points=(0.1, 0.5, 0.9), width=320)
    assert [p.name for p in paths] == ["thumb-01.jpg", "thumb-02.jpg", "thumb-03.jpg"]
    images = [_jpeg(p) for p in paths]
    assert [i.size for i in images] == [(320, 180)] * 3
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        assert _difference(images[a], images[b]) > 5


def test_thumbnails_inside_one_key_frame_interval_still_differ(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    # key frames every 1 s in a 2 s clip: 0.5 and 0.9 share the key frame at 1.0 s
    paths = thumbnails(clips["landscape"], tmp_path, points=(0.5, 0.9))
    first, second = (_jpeg(p) for p in paths)
    assert _difference(first, second) > 5


def test_thumbnails_are_upright_and_never_upscaled(clips: dict[str, Path], tmp_path: Path) -> None:
    (path,) = thumbnails(clips["rotated"], tmp_path, points=(0.5,), width=1000)
    image = _jpeg(path, "L")
    assert image.size == (240, 320)  # stored 320x240, shown turned 90° clockwise
    # the white marker drawn at the stored top-left is shown at the top-right
    assert image.getpixel((image.width - 5, 5)) > 200  # type: ignore[operator]
    assert image.getpixel((5, 5)) < 150  # type: ignore[operator]


def test_poster_is_a_jpeg_of_the_asked_width(clips: dict[str, Path], tmp_path: Path) -> None:
    path = poster(clips["portrait"], tmp_path / "poster.jpg", width=180)
    assert _jpeg(path).size == (180, 320)


# -- renditions ---------------------------------------------------------------------------


def test_plan_ladder_never_upscales_and_keeps_even_sizes() -> None:
    sizes = lambda w, h: [(r.name, x, y) for r, x, y in plan_ladder(w, h)]  # noqa: E731
    assert sizes(1920, 1080) == [("240p", 426, 240), ("360p", 640, 360), ("720p", 1280, 720)]
    assert sizes(1080, 1920) == [("240p", 240, 426), ("360p", 360, 640), ("720p", 720, 1280)]
    assert sizes(640, 480) == [("240p", 320, 240), ("360p", 480, 360)]
    assert sizes(321, 181) == [("240p", 320, 180)]  # smaller than every rung: source size


@pytest.fixture(scope="module")
def ladders(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Each clip transcoded once: name -> (renditions, progress reports)."""
    done: dict[str, object] = {}
    for name in ("wide", "rotated", "tiny"):
        reports: list[float] = []
        out = tmp_path_factory.mktemp(f"renditions-{name}")
        done[name] = (transcode(clips[name], out, progress=reports.append), reports)
    return done


def _renditions(ladders: dict[str, object], name: str) -> list[Rendition]:
    renditions, _ = ladders[name]  # type: ignore[misc]
    return renditions  # type: ignore[no-any-return]


def _streams(path: Path) -> tuple[str, int, int, str | None]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return video.codec_context.name, video.width, video.height, audio


def test_ladder_rungs_have_the_right_sizes_and_codecs(ladders: dict[str, object]) -> None:
    renditions = _renditions(ladders, "wide")  # 640x360: no 720p
    assert [(r.name, r.width, r.height) for r in renditions] == [
        ("240p", 426, 240),
        ("360p", 640, 360),
    ]
    for rendition in renditions:
        assert rendition.path.name == f"{rendition.name}.mp4"
        assert _streams(rendition.path) == ("h264", rendition.width, rendition.height, "aac")
        assert rendition.width % 2 == 0 and rendition.height % 2 == 0
        assert rendition.width / rendition.height == pytest.approx(640 / 360, rel=0.01)
        assert rendition.duration_s == pytest.approx(3.0, abs=0.1)
        assert probe(rendition.path).rotation == 0


def test_a_source_smaller_than_every_rung_keeps_its_size(ladders: dict[str, object]) -> None:
    (only,) = _renditions(ladders, "tiny")
    assert (only.name, only.width, only.height) == ("240p", 160, 120)
    assert _streams(only.path) == ("h264", 160, 120, "aac")


def test_rotated_source_becomes_upright_without_audio(ladders: dict[str, object]) -> None:
    (only,) = _renditions(ladders, "rotated")  # stored 320x240, shown 240x320
    assert (only.width, only.height, only.has_audio) == (240, 320, False)
    assert _streams(only.path) == ("h264", 240, 320, None)
    assert probe(only.path).rotation == 0
    with av.open(str(only.path)) as container:
        first = next(container.decode(video=0)).to_image().convert("L")  # type: ignore[no-untyped-call]
    assert first.getpixel((first.width - 5, 5)) > 200
    assert first.getpixel((5, 5)) < 150


def test_the_index_is_at_the_front(ladders: dict[str, object]) -> None:
    for rendition in _renditions(ladders, "wide"):
        kinds = [box.type for box in read_boxes(rendition.path)]
        assert kinds[:2] == ["ftyp", "moov"]
        assert "sidx" in kinds and kinds.index("sidx") < kinds.index("mdat")
        assert kinds.index("moov") < kinds.index("mdat")


def test_progress_rises_to_one(ladders: dict[str, object]) -> None:
    _, reports = ladders["wide"]  # type: ignore[misc]
    assert reports == sorted(reports)
    assert reports[-1] == 1.0
    assert 10 <= len(reports) <= 101
    assert all(0.0 < r <= 1.0 for r in reports)


def test_key_frames_cut_two_second_fragments(ladders: dict[str, object]) -> None:
    for rendition in _renditions(ladders, "wide"):
        # the first is longer by AAC's priming (1024 samples): FFmpeg shifts both tracks by
        # it to keep them in sync, and the first video frame is shown that much longer
        assert [f.duration_s for f in rendition.fragments] == pytest.approx(
            [2.0 + 1024 / 44100, 1.0], abs=1e-3
        )


# -- HLS ----------------------------------------------------------------------------------


def test_hls_master_lists_every_rendition(ladders: dict[str, object]) -> None:
    renditions = _renditions(ladders, "wide")
    text = hls_master(renditions, lambda r: f"{r.name}/index.m3u8")
    lines = text.splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    infs = [line for line in lines if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(infs) == 2
    assert [line for line in lines if not line.startswith("#")] == [
        "240p/index.m3u8",
        "360p/index.m3u8",
    ]
    pattern = re.compile(
        r"#EXT-X-STREAM-INF:BANDWIDTH=(\d+),AVERAGE-BANDWIDTH=(\d+),RESOLUTION=(\d+)x(\d+),"
        r'FRAME-RATE=25\.000,CODECS="avc1\.64[0-9a-f]{4},mp4a\.40\.2"'
    )
    for line, rendition in zip(infs, renditions, strict=True):
        match = pattern.fullmatch(line)
        assert match, line
        peak, average, width, height = map(int, match.groups())
        assert (width, height) == (rendition.width, rendition.height)
        assert peak >= average > 0


def test_hls_media_playlist_addresses_the_fragments(ladders: dict[str, object]) -> None:
    rendition = _renditions(ladders, "wide")[0]
    text = hls_media_playlist(rendition, "240p.mp4")
    data = rendition.path.read_bytes()
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"
    assert "#EXT-X-VERSION:7" in lines and "#EXT-X-TARGETDURATION:2" in lines
    assert f'#EXT-X-MAP:URI="240p.mp4",BYTERANGE="{rendition.init_length}@0"' in lines
    assert data[4:8] == b"ftyp"
    ranges = [tuple(map(int, line.split(":")[1].split("@"))) for line in lines
              if line.startswith("#EXT-X-BYTERANGE:")]  # fmt: skip
    assert len(ranges) == 2
    for length, offset in ranges:
        assert data[offset + 4 : offset + 8] == b"moof"
        assert data[offset + length + 4 : offset + length + 8] in (b"moof", b"mfra", b"")
    assert ranges[1][1] == ranges[0][1] + ranges[0][0]  # back to back
    durations = [float(line[8:-1]) for line in lines if line.startswith("#EXTINF:")]
    assert sum(durations) == pytest.approx(3.0, abs=0.05)
