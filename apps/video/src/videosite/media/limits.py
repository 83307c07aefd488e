"""The largest video accepted, and how much a decoder may hold: :class:`MediaLimits`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "MediaLimits"]


@dataclass(frozen=True)
class MediaLimits:
    """The largest video accepted, checked on the headers before a frame is decoded.

    ``max_frame_bytes`` bounds one decoded frame in memory (width x height x the pixel
    format's bytes); ``decoder_threads`` bounds how many frames a decoder works on at once.
    Frames are counted as the headers declare them, and as duration x frame rate.
    """

    max_width: int = 4096
    max_height: int = 4096
    max_pixels: int = 3840 * 2160
    max_frame_bytes: int = 64 << 20
    max_duration_s: float = 2 * 3600.0
    max_frames: int = 2 * 3600 * 60
    max_fps: float = 300.0
    max_streams: int = 32
    decoder_threads: int = 2


DEFAULT_LIMITS = MediaLimits()
