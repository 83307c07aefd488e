"""Read what a video file is — container, codecs, size, rate, rotation — and refuse bombs.

Limits are checked on the container's headers before any frame is decoded, so a file that
claims 100,000 x 100,000 pixels or ten days of video costs nothing to refuse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.stream import VideoStream

from .errors import MediaRejected, NotAVideo
from .orientation import display_size, read_rotation
from .sniff import DEMUXERS, sniff

__all__ = ["DEFAULT_LIMITS", "MediaLimits", "ProbeResult", "probe"]


@dataclass(frozen=True)
class MediaLimits:
    """The largest video accepted. Frames are estimated as duration x frame rate."""

    max_width: int = 4096
    max_height: int = 4096
    max_pixels: int = 3840 * 2160
    max_duration_s: float = 2 * 3600.0
    max_frames: int = 2 * 3600 * 60


DEFAULT_LIMITS = MediaLimits()


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe` found. ``width``/``height`` are as stored; see ``display_*``."""

    container: str
    duration_s: float
    video_codec: str
    width: int
    height: int
    fps: float
    bit_rate: int | None
    rotation: int
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None
    size_bytes: int
    frame_count: int

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def display_width(self) -> int:
        return display_size(self.width, self.height, self.rotation)[0]

    @property
    def display_height(self) -> int:
        return display_size(self.width, self.height, self.rotation)[1]


def stream_fps(stream: VideoStream) -> Fraction | None:
    """The stream's frame rate: average, else guessed, else None."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def main_video_stream(container: av.container.InputContainer) -> VideoStream:
    """The first video stream that is not cover art; NotAVideo if there is none."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise NotAVideo("a container without a video stream")


def _duration_s(container: av.container.InputContainer, stream: VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _check(limits: MediaLimits, width: int, height: int, duration: float, frames: int) -> None:
    if width > limits.max_width:
        raise MediaRejected("width", width, limits.max_width)
    if height > limits.max_height:
        raise MediaRejected("height", height, limits.max_height)
    if width * height > limits.max_pixels:
        raise MediaRejected("pixels per frame", width * height, limits.max_pixels)
    if duration > limits.max_duration_s:
        raise MediaRejected("duration (s)", duration, limits.max_duration_s)
    if frames > limits.max_frames:
        raise MediaRejected("frame count", frames, limits.max_frames)


def probe(path: str | os.PathLike[str], limits: MediaLimits = DEFAULT_LIMITS) -> ProbeResult:
    """Describe the video at ``path``.

    Raises NotAVideo if it is not a video container, MediaRejected (naming the value and
    the limit) if it is over ``limits``.
    """
    path = Path(path)
    name = sniff(path)
    try:
        with av.open(str(path), format=DEMUXERS[name]) as container:
            video = main_video_stream(container)
            width, height = video.codec_context.width, video.codec_context.height
            if width <= 0 or height <= 0:
                raise MediaRejected("frame size", None, None, "the frame size is unknown")
            duration = _duration_s(container, video)
            if duration is None or duration <= 0:
                raise MediaRejected("duration", None, None, "the duration is unknown")
            fps = stream_fps(video)
            if fps is None:
                raise MediaRejected("frame rate", None, None, "the frame rate is unknown")
            frames = video.frames or round(duration * fps)
            _check(limits, width, height, duration, max(frames, round(duration * fps)))
            audio = container.streams.audio[0] if container.streams.audio else None
            result = ProbeResult(
                container=name,
                duration_s=duration,
                video_codec=video.codec_context.name,
                width=width,
                height=height,
                fps=float(fps),
                bit_rate=container.bit_rate or None,
                rotation=read_rotation(container, video),
                audio_codec=audio.codec_context.name if audio else None,
                audio_channels=audio.codec_context.channels if audio else None,
                audio_sample_rate=audio.codec_context.sample_rate if audio else None,
                size_bytes=path.stat().st_size,
                frame_count=frames,
            )
    except av.FFmpegError as exc:
        raise NotAVideo(f"not a readable video ({exc.__class__.__name__})") from exc
    return result
