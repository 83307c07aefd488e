"""A video's container opened with every decoder barred (headers and packets only), a
stream's decoder bounded, and the container's main video stream and its frame rate."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer
from av.video.stream import VideoStream

from ._magic import DEMUXERS
from .errors import NotAVideo, from_av
from .limits import MediaLimits

__all__ = ["bound", "main_video_stream", "open_barred", "stream_fps"]

# no decoder may open while FFmpeg probes the streams (a name no decoder has)
_NO_DECODERS = {"codec_whitelist": "none"}


def main_video_stream(container: InputContainer, container_name: str) -> VideoStream:
    """The first video stream that is not cover art; NotAVideo if there is none."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise NotAVideo(f"a {DEMUXERS[container_name]} container without a video stream")


def stream_fps(stream: VideoStream) -> Fraction | None:
    """The stream's frame rate: average, else guessed, else None."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def open_barred(path: Path, name: str) -> InputContainer:
    """The container opened with every decoder barred: headers and packets only."""
    try:
        return av.open(str(path), format=DEMUXERS[name], container_options=_NO_DECODERS)
    except av.FFmpegError as exc:
        raise from_av(exc, "not a readable video") from exc


def bound(video: VideoStream, limits: MediaLimits, threads: int) -> None:
    """Bound the stream's decoder: no picture over ``max_pixels``, at most ``threads``."""
    context = video.codec_context
    context.options = {"max_pixels": str(limits.max_pixels)}
    context.thread_count = threads
    if threads > 1:
        context.thread_type = "AUTO"
