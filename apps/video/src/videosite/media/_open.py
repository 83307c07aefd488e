"""The one way into a video: its headers checked against the limits before a frame is decoded.

:func:`open_video` reads the magic bytes, opens the container with every decoder barred
(FFmpeg's stream probing, run by ``av.open``, otherwise decodes frames to complete what
the headers leave out: a 798 KB MOV holding one 16000 x 16000 PNG frame cost 740 MB in
``av.open`` alone), and checks what the container and stream headers declare:

- the number of streams, and the video codec against :data:`VIDEO_CODECS`;
- width, height, pixels per frame and raw frame size;
- frame rate, duration and frame count;
- how far apart the video's and the first audio stream's first timestamps are (no more than
  the video's duration).

Only then does it hand out the container, with the video decoder bounded. FFmpeg's
``max_pixels`` refuses a larger picture before its buffer is allocated, also when a
stream changes size midway. The decoder runs at most ``decoder_threads`` threads.

When the headers do not give the frame size (FLV's Sorenson video, for one), the first
frame alone is decoded to learn it, on a decoder bounded the same way and with one thread.

Timestamps need not start at zero (MPEG-TS clocks, MKV and MOV start offsets and edit
lists): the duration is the video stream's end minus its start, the end being read from the
last packets' timestamps (demuxed, not decoded); when the file is cut short there, a header
that declares more (an index) wins, so truncation stays visible. :func:`check_frame` applies
the same limits to a decoded frame, for stages that must not trust the headers.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
from av.audio.frame import AudioFrame
from av.container import InputContainer
from av.stream import Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from .errors import MediaError, MediaRejected, NotAVideo, from_av
from .limits import MediaLimits
from .sniff import DEMUXERS, HEAD_BYTES, sniff_bytes

__all__ = [
    "VIDEO_CODECS",
    "Headers",
    "OpenVideo",
    "check_audio_gap",
    "check_frame",
    "first_frame",
    "main_video_stream",
    "open_video",
    "stream_fps",
]

#: video codecs accepted (FFmpeg decoder names); still-image codecs (PNG, GIF, ...) are not
VIDEO_CODECS = frozenset({
    "av1", "cinepak", "dnxhd", "dvvideo", "ffv1", "flv1", "h263", "h264", "hevc", "mjpeg",
    "mpeg1video", "mpeg2video", "mpeg4", "msmpeg4v2", "msmpeg4v3", "prores", "svq1", "svq3",
    "theora", "vc1", "vp6", "vp6a", "vp6f", "vp8", "vp9", "wmv1", "wmv2", "wmv3",
})  # fmt: skip

# no decoder may open while FFmpeg probes the streams (a name no decoder has)
_NO_DECODERS = {"codec_whitelist": "none"}
_MAX_EXTRADATA = 1 << 20
#: packets decoded at most to learn a frame size the headers do not give
_SIZING_PACKETS = 32
#: a pixel's size in memory when the headers do not name the format: 4 components of 16 bits
#: (FFmpeg's video decoders give at most this; 3840 x 2160 of it fits the default 64 MiB)
_WORST_BYTES_PER_PIXEL = 8
#: video packets kept to name a picture the decoder refused (threads report it late)
_IN_FLIGHT = 8
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


class OpenVideo:
    """An open, checked video: ``container``, its main ``video`` stream and ``headers``.

    Use it with ``with``; the container is closed on leaving.
    """

    def __init__(self, container: InputContainer, video: VideoStream, headers: Headers,
                 size_bytes: int, max_pixels: int | None = None) -> None:
        self.container = container
        #: the video decoder's ``max_pixels`` bound, if set
        self.max_pixels = max_pixels
        self.video = video
        self.headers = headers
        self.size_bytes = size_bytes

    def frames(self, *streams: Stream, until: int | None = None
               ) -> Iterator[VideoFrame | AudioFrame]:
        """The decoded frames of ``streams`` (the video stream if none), in file order.

        With ``until`` (a timestamp of the video stream), demuxing stops at the first video
        packet whose decoding timestamp is later: no frame shown at or before ``until`` comes
        after it, save those a decoder still holds (the caller leaves room for its delay).

        A file cut short ends there: when the packet that runs into the end of the file, or
        the decoder's flush after it, does not decode, its stream simply ends (and the
        caller sees fewer frames than declared). A packet that does not decode anywhere
        else raises; a picture over ``max_pixels`` raises MediaRejected naming its size (from
        the packet's own header where it is plain: MJPEG, VP8) and the limit.
        """
        ended: set[int] = set()
        in_flight: deque[av.Packet[Stream]] = deque(maxlen=_IN_FLIGHT)  # the video's last packets
        for packet in self.container.demux(*(streams or (self.video,))):
            if packet.stream.index in ended:
                continue
            video = packet.stream.index == self.video.index
            if video:
                if until is not None and packet.dts is not None and packet.dts > until:
                    return
                in_flight.append(packet)
            try:
                decoded = packet.decode()
            except av.ArgumentError as exc:
                if not video:
                    raise
                # FFmpeg refuses a picture over ``max_pixels`` with EINVAL, before allocating it
                shown = f"{self.headers.width}x{self.headers.height}"
                raise _over_max_pixels(in_flight, self.max_pixels, shown, exc) from exc
            except av.InvalidDataError:
                reaches_end = packet.pos is not None and packet.pos + packet.size >= self.size_bytes
                if packet.size and not reaches_end:
                    raise
                ended.add(packet.stream.index)
                continue
            for frame in decoded:
                if isinstance(frame, VideoFrame | AudioFrame):
                    yield frame

    def __enter__(self) -> OpenVideo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.container.close()


def _over_max_pixels(recent: Sequence[av.Packet[Stream]], limit: int | None, declared: str,
                     exc: av.FFmpegError) -> MediaError:
    """The error for a video packet its decoder refused with EINVAL (the last of ``recent``,
    the packets in flight: a threaded decoder reports a frame's refusal a packet or two
    late). When the decoder is bounded by ``max_pixels`` that is the bound refusing a
    picture: MediaRejected naming the picture's size if a packet's own header gives it
    (MJPEG, a VP8 key frame), else the limit alone."""
    if limit is None:
        return from_av(exc, "a packet that does not decode")
    for packet in reversed(recent):
        size = _picture_size(packet.stream.codec_context.name, bytes(packet))
        if size is not None and size[0] * size[1] > limit:
            width, height = size
            return MediaRejected(
                "pixels per frame", width * height, limit,
                f"pixels per frame {width * height} ({width}x{height} at "
                f"{_packet_time(packet)}; the headers said {declared}) exceeds the limit of "
                f"{limit}",
            )
    return MediaRejected(
        "pixels per frame", None, limit,
        f"pixels per frame over the limit of {limit}: the decoder refused a frame larger than "
        f"that (by {_packet_time(recent[-1])}; the headers said {declared})",
    )


def _packet_time(packet: av.Packet[Stream]) -> str:
    stamp = packet.pts if packet.pts is not None else packet.dts
    if stamp is None or packet.time_base is None:
        return "an unknown time"
    return f"{float(stamp * packet.time_base):.3f} s"


def _picture_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) from a packet's own picture header, where it is plain to read: a
    JPEG's start-of-frame marker (MJPEG), a VP8 key frame's header. None otherwise."""
    if codec == "mjpeg":
        at = 2
        while at + 9 <= len(data) and data[at] == 0xFF:
            marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(data[at + 5:at + 7], "big")
                return int.from_bytes(data[at + 7:at + 9], "big"), height
            at += 2 + length
        return None
    if codec == "vp8" and len(data) >= 10 and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a":
        width = int.from_bytes(data[6:8], "little") & 0x3FFF
        return width, int.from_bytes(data[8:10], "little") & 0x3FFF
    return None


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


def _sniff_file(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        raise NotAVideo("an empty file, not a video")
    return sniff_bytes(head)


def _open_barred(path: Path, name: str) -> InputContainer:
    """The container opened with every decoder barred: headers and packets only."""
    try:
        return av.open(str(path), format=DEMUXERS[name], container_options=_NO_DECODERS)
    except av.FFmpegError as exc:
        raise from_av(exc, "not a readable video") from exc


def _bound(video: VideoStream, limits: MediaLimits, threads: int) -> None:
    """Bound the stream's decoder: no picture over ``max_pixels``, at most ``threads``."""
    context = video.codec_context
    context.options = {"max_pixels": str(limits.max_pixels)}
    context.thread_count = threads
    if threads > 1:
        context.thread_type = "AUTO"


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


def _check_size(limits: MediaLimits, width: int, height: int, pix_fmt: str | None) -> None:
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
    _check_size(limits, frame.width, frame.height, frame.format.name)


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


def _check_duration(limits: MediaLimits, duration: float) -> None:
    if duration > limits.max_duration_s:
        raise MediaRejected("duration (s)", duration, limits.max_duration_s)


def _check_frames(limits: MediaLimits, frames: int) -> None:
    if frames > limits.max_frames:
        raise MediaRejected("frame count", frames, limits.max_frames)


def first_frame(opened: OpenVideo, limits: MediaLimits) -> VideoFrame:
    """The first decoded frame, checked; NotAVideo if the stream has none.

    Leaves the container positioned after it.
    """
    try:
        for frame in opened.frames():
            assert isinstance(frame, VideoFrame)
            check_frame(frame, limits)
            return frame
    except av.FFmpegError as exc:
        raise from_av(exc, "a video stream that does not decode") from exc
    raise NotAVideo("a video stream without a decodable frame")


def _size_from_first_frame(
    container: InputContainer, video: VideoStream, limits: MediaLimits
) -> tuple[int, int]:
    """Decode at most ``_SIZING_PACKETS`` packets, one thread, ``max_pixels`` bound, each
    packet no larger than ``max_frame_bytes``: the first frame's size. ``container`` must
    be fresh (at its first packet)."""
    _bound(video, limits, threads=1)
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


def open_video(path: str | os.PathLike[str], limits: MediaLimits, *, threads: int | None = None
               ) -> OpenVideo:
    """The video at ``path``, open and checked against ``limits``; use it with ``with``.

    The decoder runs ``threads`` threads (``limits.decoder_threads`` if None; one is enough
    for a caller that decodes a frame or two, and holds a 4K frame less per thread).

    Raises NotAVideo if it is not a video container (or has no video stream), and
    MediaRejected naming the value and the limit if its headers are over ``limits``.
    """
    path = Path(path)
    name = _sniff_file(path)
    with _open_barred(path, name) as scan:
        headers = _read_headers(name, path, scan, limits)
    container = _open_barred(path, name)
    try:
        video = main_video_stream(container, name)
        _bound(video, limits, threads or limits.decoder_threads)
    except BaseException:
        container.close()
        raise
    return OpenVideo(container, video, headers, path.stat().st_size, limits.max_pixels)


def _read_headers(name: str, path: Path, container: InputContainer, limits: MediaLimits
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
        with _open_barred(path, name) as fresh:
            sized = main_video_stream(fresh, name)
            width, height = _size_from_first_frame(fresh, sized, limits)
    _check_size(limits, width, height, context.pix_fmt)
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
    _check_frames(limits, video.frames)
    audio = container.streams.audio[0] if container.streams.audio else None
    heard: list[Stream] = [video] if audio is None else [video, audio]
    firsts = _first_stamps(container, heard)
    start = _start(container, video, firsts)
    start_s = float(start * video.time_base)
    origin_s = min(float(_start(container, s, firsts) * s.time_base) for s in heard
                   if s.time_base is not None)
    declared_s = _declared_duration_s(container, video, start_s)
    if declared_s is not None:
        _check_duration(limits, declared_s)
        _check_frames(limits, round(declared_s * fps))
    end, cut = _end(container, video, start, declared_s, 1 / fps)
    # what the packets span; a file cut short keeps its declared length if that is longer
    # (the transcode then finds it truncated). A container's duration can cover the other
    # streams too (Matroska's counts the audio), so it is not taken over the packets' span.
    spans = [float((end - start) * video.time_base)] if end is not None else []
    declared = [declared_s] if declared_s is not None and (cut or not spans) else []
    duration_s = max([*spans, *declared], default=None)
    if duration_s is None or duration_s <= 0:
        raise MediaRejected("duration", None, None, "the duration is unknown")
    _check_duration(limits, duration_s)
    _check_frames(limits, max(video.frames, round(duration_s * fps)))
    if audio is not None and audio.time_base is not None:
        check_audio_gap(float(_start(container, audio, firsts) * audio.time_base) - start_s,
                        duration_s)
    estimate = round(max(spans, default=duration_s) * fps)  # what the packets hold
    return Headers(
        container=name, codec=codec, width=width, height=height, fps=fps, start_s=start_s,
        origin_s=origin_s,
        duration_s=duration_s, frame_count=video.frames or estimate, streams=streams,
    )
