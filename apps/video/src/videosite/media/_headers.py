"""What a video's headers declare, read without decoding a frame (but the first, when the
headers do not give the size) and checked against the limits: streams, codec, size, frame
rate, start, duration (from the last packets' timestamps), frame count and the audio's
distance from the video."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer
from av.stream import Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from ._checks import check_audio_gap, check_duration, check_frames, check_size
from ._container import bound, main_video_stream, open_barred, stream_fps
from .errors import MediaRejected, NotAVideo
from .limits import MediaLimits

__all__ = ["VIDEO_CODECS", "Headers", "read_headers"]

#: video codecs accepted (FFmpeg decoder names); still-image codecs (PNG, GIF, ...) are not
VIDEO_CODECS = frozenset({
    "av1", "cinepak", "dnxhd", "dvvideo", "ffv1", "flv1", "h263", "h264", "hevc", "mjpeg",
    "mpeg1video", "mpeg2video", "mpeg4", "msmpeg4v2", "msmpeg4v3", "prores", "svq1", "svq3",
    "theora", "vc1", "vp6", "vp6a", "vp6f", "vp8", "vp9", "wmv1", "wmv2", "wmv3",
})  # fmt: skip

_MAX_EXTRADATA = 1 << 20
#: packets decoded at most to learn a frame size the headers do not give
_SIZING_PACKETS = 32
#: packets per stream whose timestamps give its first one
_FIRST_PACKETS = 16
#: the packets of the last this-many seconds (declared) are read to find the end
_TAIL_S = 2.0


@dataclass(frozen=True)
class Headers:
    """What the headers declare, checked. Times are in seconds of the video stream."""

    container: str
    codec: str
    width: int
    height: int
    fps: Fraction
    start_s: float
    #: the earliest first timestamp of the video and the first audio stream (s): time zero of
    #: a rendition, so the two keep their distance
    origin_s: float
    duration_s: float
    frame_count: int  # as declared, else duration x frame rate
    streams: int


def read_headers(name: str, path: Path, container: InputContainer, limits: MediaLimits
                  ) -> Headers:
    streams = len(container.streams)
    if streams > limits.max_streams:
        raise MediaRejected("stream count", streams, limits.max_streams)
    video = main_video_stream(container, name)
    if video.time_base is None:
        raise NotAVideo("a video stream without a time base")
    context = video.codec_context
    extradata = context.extradata_size
    if extradata > _MAX_EXTRADATA:
        raise MediaRejected("codec header size (bytes)", extradata, _MAX_EXTRADATA)
    width, height = context.width, context.height
    if width <= 0 or height <= 0:
        with open_barred(path, name) as fresh:
            sized = main_video_stream(fresh, name)
            width, height = _size_from_first_frame(fresh, sized, limits)
    check_size(limits, width, height, context.pix_fmt)
    codec = context.codec.canonical_name
    if codec not in VIDEO_CODECS:
        raise MediaRejected(
            "video codec", None, None,
            f"the video codec {codec!r} is not accepted (accepted: "
            f"{', '.join(sorted(VIDEO_CODECS))})",
        )
    fps = stream_fps(video)
    if fps is None:
        raise MediaRejected("frame rate", None, None, "the frame rate is unknown")
    if fps > limits.max_fps:
        raise MediaRejected("frame rate", float(fps), limits.max_fps)
    check_frames(limits, video.frames)
    audio = container.streams.audio[0] if container.streams.audio else None
    heard: list[Stream] = [video] if audio is None else [video, audio]
    firsts = _first_stamps(container, heard)
    start = _start(container, video, firsts)
    start_s = float(start * video.time_base)
    origin_s = min(float(_start(container, s, firsts) * s.time_base) for s in heard
                   if s.time_base is not None)
    declared_s = _declared_duration_s(container, video, start_s)
    if declared_s is not None:
        check_duration(limits, declared_s)
        check_frames(limits, round(declared_s * fps))
    end, cut = _end(container, video, start, declared_s, 1 / fps)
    # what the packets span; a file cut short keeps its declared length if that is longer
    # (the transcode then finds it truncated). A container's duration can cover the other
    # streams too (Matroska's counts the audio), so it is not taken over the packets' span.
    spans = [float((end - start) * video.time_base)] if end is not None else []
    declared = [declared_s] if declared_s is not None and (cut or not spans) else []
    duration_s = max([*spans, *declared], default=None)
    if duration_s is None or duration_s <= 0:
        raise MediaRejected("duration", None, None, "the duration is unknown")
    check_duration(limits, duration_s)
    check_frames(limits, max(video.frames, round(duration_s * fps)))
    if audio is not None and audio.time_base is not None:
        check_audio_gap(float(_start(container, audio, firsts) * audio.time_base) - start_s,
                        duration_s)
    estimate = round(max(spans, default=duration_s) * fps)  # what the packets hold
    return Headers(
        container=name, codec=codec, width=width, height=height, fps=fps, start_s=start_s,
        origin_s=origin_s,
        duration_s=duration_s, frame_count=video.frames or estimate, streams=streams,
    )


def _size_from_first_frame(
    container: InputContainer, video: VideoStream, limits: MediaLimits
) -> tuple[int, int]:
    """Decode at most ``_SIZING_PACKETS`` packets, one thread, ``max_pixels`` bound, each
    packet no larger than ``max_frame_bytes``: the first frame's size. ``container`` must
    be fresh (at its first packet)."""
    bound(video, limits, threads=1)
    try:
        for count, packet in enumerate(container.demux(video)):
            if count >= _SIZING_PACKETS:
                break
            if packet.size > limits.max_frame_bytes:
                raise MediaRejected("packet size (bytes)", packet.size, limits.max_frame_bytes)
            for frame in packet.decode():
                if isinstance(frame, VideoFrame):
                    return frame.width, frame.height
    except av.FFmpegError as exc:
        raise MediaRejected(
            "frame size", None, limits.max_pixels,
            "the headers do not give the frame size and the first frame does not decode "
            f"within the limit of {limits.max_pixels} pixels ({exc.__class__.__name__})",
        ) from exc
    raise MediaRejected("frame size", None, None, "the frame size is unknown")


def _first_stamps(container: InputContainer, streams: list[Stream]) -> dict[int, int]:
    """Each stream's first timestamp (by stream index, in its time base), read from its first
    packets (demuxed, not decoded): the lowest pts of its first ``_FIRST_PACKETS``, as
    B-frames come before the frames they follow. FFmpeg's ``start_time`` is not used: with no
    decoder to probe with it can be another stream's (a Matroska video given its audio's)."""
    wanted = {stream.index: 0 for stream in streams}
    firsts: dict[int, int] = {}
    for read, packet in enumerate(container.demux(*streams)):
        if read >= _FIRST_PACKETS * 64:
            break  # a stream with (almost) no packets: not the whole file for it
        index = packet.stream.index
        if wanted[index] >= _FIRST_PACKETS:
            if all(n >= _FIRST_PACKETS for n in wanted.values()):
                break
            continue
        wanted[index] += 1
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is not None:
            firsts[index] = min(firsts.get(index, stamp), stamp)
    return firsts


def _start(container: InputContainer, stream: Stream, firsts: dict[int, int]) -> int:
    """The stream's first timestamp, in its time base: from its packets, else the headers."""
    if stream.index in firsts:
        return firsts[stream.index]
    if stream.start_time is not None:
        return stream.start_time
    if container.start_time is not None and stream.time_base:
        return round(container.start_time / av.time_base / stream.time_base)
    return 0


def _declared_duration_s(container: InputContainer, video: VideoStream, start_s: float
                         ) -> float | None:
    """The shortest reading of the durations the headers give.

    Some containers give the end (Matroska's Segment duration counts from zero), others the
    length; the shorter reading is what a file can be refused for without decoding.
    """
    readings = []
    if video.duration is not None and video.time_base:
        readings.append(float(video.duration * video.time_base))
    if container.duration is not None:
        total = container.duration / av.time_base
        readings.append(total)
        if total - start_s > 0:
            readings.append(total - start_s)
    return min(readings) if readings else None


def _end(container: InputContainer, video: VideoStream, start: int, declared_s: float | None,
         frame: Fraction) -> tuple[int | None, bool]:
    """The end of the video stream (last packet's pts + its duration), from the packets after
    the last key frame the headers point to: demuxed, not decoded. And whether the file is cut
    short there (the demuxer marks a packet the end of the file cut off as corrupt)."""
    assert video.time_base is not None
    # from 2 s before the declared end: where seeks go by timestamp alone (MPEG-TS), the last
    # packets in file order are B-frames that end before the last frame shown
    guess = start + (round((declared_s - _TAIL_S) / video.time_base) if declared_s else 0)
    try:
        container.seek(guess, stream=video, backward=True)
    except av.FFmpegError:
        return None, False  # not seekable: the headers' duration stands
    end, cut = None, False
    step = max(round(frame / video.time_base), 1)
    for packet in container.demux(video):
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            continue
        cut = cut or packet.is_corrupt
        stamp += packet.duration or step
        end = stamp if end is None else max(end, stamp)
    return end, cut
