"""A video's sizes, durations and frame counts checked against the limits: MediaRejected
naming the value and the limit."""

from __future__ import annotations

import math

import av
from av.video.frame import VideoFrame

from .errors import MediaRejected
from .limits import MediaLimits

__all__ = ["check_audio_gap", "check_duration", "check_frame", "check_frames", "check_size"]

#: a pixel's size in memory when the headers do not name the format: 4 components of 16 bits
#: (FFmpeg's video decoders give at most this; 3840 x 2160 of it fits the default 64 MiB)
_WORST_BYTES_PER_PIXEL = 8


def _raw_bytes(width: int, height: int, pix_fmt: str | None) -> int:
    """A frame's size in memory (unpadded rows); at the most a video decoder gives
    (``_WORST_BYTES_PER_PIXEL``) when the pixel format is not in the headers."""
    bits = 8 * _WORST_BYTES_PER_PIXEL
    if pix_fmt:
        try:
            bits = av.VideoFormat(pix_fmt).padded_bits_per_pixel
        except (ValueError, av.FFmpegError):
            pass  # a format PyAV does not know: the worst case
    return math.ceil(width * height * bits / 8)


def check_size(limits: MediaLimits, width: int, height: int, pix_fmt: str | None) -> None:
    if width > limits.max_width:
        raise MediaRejected("width", width, limits.max_width)
    if height > limits.max_height:
        raise MediaRejected("height", height, limits.max_height)
    if width * height > limits.max_pixels:
        raise MediaRejected("pixels per frame", width * height, limits.max_pixels)
    raw = _raw_bytes(width, height, pix_fmt)
    if raw > limits.max_frame_bytes:
        shown = pix_fmt or f"format not in the headers, {_WORST_BYTES_PER_PIXEL} bytes a pixel"
        raise MediaRejected(
            "raw frame size (bytes)",
            raw,
            limits.max_frame_bytes,
            f"raw frame size {raw} bytes ({width}x{height} {shown}) exceeds the limit of "
            f"{limits.max_frame_bytes}",
        )


def check_frame(frame: VideoFrame, limits: MediaLimits) -> None:
    """Raise MediaRejected if a decoded frame is over ``limits`` (size, pixels, raw bytes)."""
    check_size(limits, frame.width, frame.height, frame.format.name)


def check_audio_gap(gap_s: float, duration_s: float) -> None:
    """Raise MediaRejected if the audio starts ``gap_s`` seconds after the video (before it
    if negative) by more than the video's ``duration_s``, the limit: a rendition runs from
    the earlier start to the later end, so a gap is silence (or a frozen picture) encoded,
    and a few bytes of header could otherwise ask for hours of it."""
    if abs(gap_s) > duration_s:
        side = "after" if gap_s > 0 else "before"
        raise MediaRejected(
            "audio start gap (s)", abs(gap_s), duration_s,
            f"audio start gap (s) {abs(gap_s):g} (the audio starts {side} the video) exceeds "
            f"the limit of {duration_s:g} (the video's duration)",
        )


def check_duration(limits: MediaLimits, duration: float) -> None:
    if duration > limits.max_duration_s:
        raise MediaRejected("duration (s)", duration, limits.max_duration_s)


def check_frames(limits: MediaLimits, frames: int) -> None:
    if frames > limits.max_frames:
        raise MediaRejected("frame count", frames, limits.max_frames)
