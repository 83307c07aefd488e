"""Rotation: read it from a video stream and undo it on frames, in one convention.

``rotation`` everywhere in this package is the clockwise angle, 0/90/180/270, by which the
stored picture must be turned to display upright — the meaning of the legacy ``rotate`` tag.
(FFmpeg's display matrix and PyAV's ``VideoFrame.rotation`` count counter-clockwise; a phone
portrait clip is stored landscape with ``rotation == 90`` here.)
"""

from __future__ import annotations

from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

__all__ = ["display_size", "read_rotation", "rotate_image", "transpose_filters"]


def _normalise(degrees: float) -> int:
    return round(degrees / 90.0) * 90 % 360


def read_rotation(stream: VideoStream, frame: VideoFrame) -> int:
    """The clockwise display rotation of ``stream``, given its first decoded ``frame``.

    The legacy ``rotate`` tag wins when present; otherwise the display matrix, which PyAV
    exposes on decoded frames.
    """
    tag = stream.metadata.get("rotate")
    if tag is not None:
        try:
            return _normalise(float(tag))
        except ValueError:
            pass  # a garbled tag: fall through to the display matrix
    return _normalise(-frame.rotation)


def display_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """The (width, height) a viewer sees once ``rotation`` is applied."""
    return (height, width) if rotation in (90, 270) else (width, height)


def rotate_image(image: Image.Image, rotation: int) -> Image.Image:
    """``image`` turned clockwise by ``rotation`` degrees."""
    if rotation == 90:
        return image.transpose(Image.Transpose.ROTATE_270)  # Pillow's ROTATE_* are CCW
    if rotation == 180:
        return image.transpose(Image.Transpose.ROTATE_180)
    if rotation == 270:
        return image.transpose(Image.Transpose.ROTATE_90)
    return image


def transpose_filters(rotation: int) -> list[tuple[str, str | None]]:
    """FFmpeg filters (name, args) that turn a frame clockwise by ``rotation`` degrees."""
    if rotation == 90:
        return [("transpose", "clock")]
    if rotation == 180:
        return [("hflip", None), ("vflip", None)]
    if rotation == 270:
        return [("transpose", "cclock")]
    return []
