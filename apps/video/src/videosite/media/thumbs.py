"""Still images from a video: thumbnails at fractions of its length, and a poster.

Each image is the frame shown at its point: a seek to the key frame before it, then decoding
on to it. Points count from the video stream's first timestamp, which need not be zero
(MPEG-TS clocks, start offsets). The headers are checked against the limits before any
frame is decoded, and every decoded frame again. Orientation is applied; images are never
upscaled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import av
from av.video.frame import VideoFrame
from PIL import Image

from ._checks import check_frame
from ._decoding import OpenVideo, first_frame
from ._open import open_video
from .errors import ProcessingError
from .limits import DEFAULT_LIMITS, MediaLimits
from .orientation import display_size, read_rotation, rotate_image

__all__ = ["poster", "thumbnails", "thumbnails_and_poster"]

_JPEG_QUALITY = 85
_POSTER_CANDIDATES = (0.2, 0.35, 0.5)
#: how far past a target a landing demuxes at most, for frames a decoder still holds
#: (B-frame reordering, frame threads): this many seconds, or frames if that is longer
_DELAY_S = 1.0
_DELAY_FRAMES = 32


def _frame_at(opened: OpenVideo, target: int, limits: MediaLimits) -> VideoFrame | None:
    """The frame shown at ``target`` (a pts): the last one whose pts is at or before it.

    The seek goes to a key frame before ``target`` and decoding runs on to it. A container
    that seeks by timestamp alone (MPEG-TS) can land after the target or past the last key
    frame, so a landing that decodes no frame at or before ``target`` seeks again from
    further back (1, 2, 4 ... s), down to the stream's start. Each landing demuxes no
    further than the target plus the decoders' delay (:data:`_DELAY_S`,
    :data:`_DELAY_FRAMES`): a landing after the last key frame before the target would
    otherwise decode on to the end of the file for nothing.
    """
    container, stream = opened.container, opened.video
    assert stream.time_base is not None
    start = round(opened.headers.start_s / stream.time_base)
    delay = max(_DELAY_S, _DELAY_FRAMES / float(opened.headers.fps))
    until = target + round(delay / stream.time_base)
    back = 0
    while True:
        seek_to = max(target - back, start)
        # at the start, aim a second before it: a seek by timestamp to the first pts itself
        # can land on the packet after it
        aim = seek_to if seek_to > start else start - round(1 / stream.time_base)
        container.seek(aim, stream=stream, backward=True)
        shown: VideoFrame | None = None
        # from the start, on to the first frame if need be: the stream's first key frame can
        # come after the target (a capture that begins mid-GOP)
        for frame in opened.frames(until=until if seek_to > start else None):
            assert isinstance(frame, VideoFrame)
            check_frame(frame, limits)
            if frame.pts is None:
                continue
            if frame.pts > target:
                if shown is None and seek_to == start:
                    shown = frame  # the stream's first frame comes after the target
                break
            shown = frame
        if shown is not None or seek_to == start:
            return shown
        back = max(2 * back, round(1 / stream.time_base))


def _stills(path: Path, points: Sequence[float], limits: MediaLimits
            ) -> tuple[list[VideoFrame], int]:
    """One frame per point (fractions of the duration) and the clockwise rotation."""
    with open_video(path, limits) as opened:
        stream = opened.video
        assert stream.time_base is not None
        try:
            rotation = read_rotation(stream, first_frame(opened, limits))
            start = round(opened.headers.start_s / stream.time_base)
            length = opened.headers.duration_s
            found: dict[float, VideoFrame] = {}
            for point in sorted(set(points)):  # forward through the file
                offset = length * min(max(point, 0.0), 1.0)
                frame = _frame_at(opened, start + int(offset / stream.time_base), limits)
                if frame is None:
                    raise ProcessingError(f"no frame found at {point:.0%} of {path.name}")
                found[point] = frame
        except av.FFmpegError as exc:
            raise ProcessingError(f"could not read frames from {path.name}: {exc}") from exc
    return [found[point] for point in points], rotation


def _image(frame: VideoFrame, rotation: int, width: int) -> Image.Image:
    """``frame`` upright and ``width`` pixels wide at most, aspect ratio kept."""
    shown_w, shown_h = display_size(frame.width, frame.height, rotation)
    width = min(width, shown_w)
    height = max(round(shown_h * width / shown_w), 1)
    stored_w, stored_h = display_size(width, height, rotation)
    small = frame.reformat(width=stored_w, height=stored_h, format="rgb24")
    image: Image.Image = small.to_image()  # type: ignore[no-untyped-call]  # PyAV stub lacks types
    return rotate_image(image, rotation)


def _write_thumbnails(frames: Sequence[VideoFrame], rotation: int, out_dir: str | os.PathLike[str],
                      width: int) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, frame in enumerate(frames, start=1):
        target = out / f"thumb-{number:02d}.jpg"
        _image(frame, rotation, width).save(target, "JPEG", quality=_JPEG_QUALITY)
        written.append(target)
    return written


def _write_poster(frames: Sequence[VideoFrame], rotation: int, out_path: str | os.PathLike[str],
                  width: int) -> Path:
    images = [_image(frame, rotation, width) for frame in frames]
    best = max(images, key=lambda image: image.entropy())
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    best.save(target, "JPEG", quality=_JPEG_QUALITY)
    return target


def thumbnails(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    points: Sequence[float] = (0.1, 0.5, 0.9),
    width: int = 320,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> list[Path]:
    """JPEG thumbnails ``thumb-01.jpg``… at ``points`` (fractions of the duration, counted
    from the video stream's first timestamp). Raises like :func:`~.probe.probe` first."""
    frames, rotation = _stills(Path(path), points, limits)
    return _write_thumbnails(frames, rotation, out_dir, width)


def poster(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    width: int = 640,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> Path:
    """A JPEG poster: the most detailed (by image entropy) of a few key frames.

    Choosing by entropy keeps a black fade-in or a title card from becoming the poster.
    """
    frames, rotation = _stills(Path(path), _POSTER_CANDIDATES, limits)
    return _write_poster(frames, rotation, out_path, width)


def thumbnails_and_poster(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    poster_path: str | os.PathLike[str],
    points: Sequence[float] = (0.1, 0.5, 0.9),
    width: int = 320,
    poster_width: int = 640,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> tuple[list[Path], Path]:
    """:func:`thumbnails` and :func:`poster` from one opening and one pass through the
    file (the points in order), as the thumbnail stage makes them."""
    wanted = [*points, *_POSTER_CANDIDATES]
    frames, rotation = _stills(Path(path), wanted, limits)
    stills = _write_thumbnails(frames[: len(points)], rotation, out_dir, width)
    return stills, _write_poster(frames[len(points):], rotation, poster_path, poster_width)
