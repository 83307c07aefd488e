"""Still images from a video: thumbnails at fractions of its length, and a poster.

Each image comes from the key frame at or before its point (a fast seek). When two points
land on the same key frame, the later one decodes on to its exact time, so a clip with
several frames gives distinct images. Orientation is applied; images are never upscaled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import av
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from .errors import ProcessingError
from .orientation import display_size, read_rotation, rotate_image
from .probe import main_video_stream
from .sniff import DEMUXERS, sniff

__all__ = ["poster", "thumbnails"]

_JPEG_QUALITY = 85
_POSTER_CANDIDATES = (0.2, 0.35, 0.5)


def _frame_near(
    container: av.container.InputContainer,
    stream: VideoStream,
    target_s: float,
    taken: set[int],
) -> VideoFrame | None:
    """The key frame at or before ``target_s``; if its pts is in ``taken``, decode on.

    Decoding on stops at the first frame not taken at or after ``target_s``; at the end of
    the stream the last frame is returned even if taken.
    """
    assert stream.time_base is not None
    target = (stream.start_time or 0) + int(target_s / stream.time_base)
    container.seek(target, stream=stream, backward=True)
    first, last = True, None
    for frame in container.decode(stream):
        pts = frame.pts
        if pts is None or (pts not in taken and (first or pts >= target)):
            return frame
        first, last = False, frame
    return last


def _stills(path: Path, points: Sequence[float]) -> tuple[list[VideoFrame], int]:
    """One frame per point (fractions of the duration) and the clockwise rotation."""
    name = sniff(path)
    try:
        with av.open(str(path), format=DEMUXERS[name]) as container:
            stream = main_video_stream(container)
            stream.thread_type = "AUTO"
            rotation = read_rotation(container, stream)
            duration = (
                float(stream.duration * stream.time_base)
                if stream.duration is not None and stream.time_base is not None
                else (container.duration or 0) / av.time_base
            )
            frames: list[VideoFrame] = []
            taken: set[int] = set()
            for point in points:
                frame = _frame_near(container, stream, duration * min(max(point, 0.0), 1.0), taken)
                if frame is None:
                    raise ProcessingError(f"no frame found at {point:.0%} of {path.name}")
                if frame.pts is not None:
                    taken.add(frame.pts)
                frames.append(frame)
    except av.FFmpegError as exc:
        raise ProcessingError(f"could not read frames from {path.name}: {exc}") from exc
    return frames, rotation


def _image(frame: VideoFrame, rotation: int, width: int) -> Image.Image:
    """``frame`` upright and ``width`` pixels wide at most, aspect ratio kept."""
    shown_w, shown_h = display_size(frame.width, frame.height, rotation)
    width = min(width, shown_w)
    height = max(round(shown_h * width / shown_w), 1)
    stored_w, stored_h = display_size(width, height, rotation)
    small = frame.reformat(width=stored_w, height=stored_h, format="rgb24")
    image: Image.Image = small.to_image()  # type: ignore[no-untyped-call]  # PyAV stub lacks types
    return rotate_image(image, rotation)


def thumbnails(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    points: Sequence[float] = (0.1, 0.5, 0.9),
    width: int = 320,
) -> list[Path]:
    """JPEG thumbnails ``thumb-01.jpg``… at ``points`` (fractions of the duration)."""
    frames, rotation = _stills(Path(path), points)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, frame in enumerate(frames, start=1):
        target = out / f"thumb-{number:02d}.jpg"
        _image(frame, rotation, width).save(target, "JPEG", quality=_JPEG_QUALITY)
        written.append(target)
    return written


def poster(
    path: str | os.PathLike[str], out_path: str | os.PathLike[str], width: int = 640
) -> Path:
    """A JPEG poster: the most detailed (by image entropy) of a few key frames.

    Choosing by entropy keeps a black fade-in or a title card from becoming the poster.
    """
    frames, rotation = _stills(Path(path), _POSTER_CANDIDATES)
    images = [_image(frame, rotation, width) for frame in frames]
    best = max(images, key=lambda image: image.entropy())
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    best.save(target, "JPEG", quality=_JPEG_QUALITY)
    return target
