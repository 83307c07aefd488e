"""Decoding an open, checked video: its frames in file order on the bounded decoder (a file
cut short simply ends), a picture the ``max_pixels`` bound refused named with its size, and
the first frame."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from types import TracebackType

import av
from av.audio.frame import AudioFrame
from av.container import InputContainer
from av.stream import Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from ._checks import check_frame
from ._headers import Headers
from .errors import MediaError, MediaRejected, NotAVideo, from_av
from .limits import MediaLimits

__all__ = ["OpenVideo", "first_frame"]

#: video packets kept to name a picture the decoder refused (threads report it late)
_IN_FLIGHT = 8


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
