"""Read what a video file is — container, codecs, size, rate, rotation — and refuse bombs.

The limits are checked on the container's headers before any frame is decoded (see
:mod:`._open`), so a file that claims 100,000 x 100,000 pixels or ten days of video costs
nothing to refuse. Then the first frame alone is decoded, on a bounded decoder: it proves
the stream decodes and carries the rotation.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import av
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer

from ._decoding import first_frame
from ._open import open_video
from .errors import from_av
from .limits import DEFAULT_LIMITS, MediaLimits
from .orientation import display_size, read_rotation

__all__ = ["DEFAULT_LIMITS", "MediaLimits", "ProbeResult", "probe"]

logger = logging.getLogger(__name__)

#: audio packets decoded at most to learn the channels and the sample rate
_AUDIO_PACKETS = 64


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


def _audio_format(container: InputContainer, audio: AudioStream, limits: MediaLimits
                  ) -> tuple[int | None, int | None]:
    """(channels, sample rate) of the first audio frame decoded from at most
    ``_AUDIO_PACKETS`` packets (each no larger than ``max_frame_bytes``), else None for each.

    Not the headers': with the decoders barred while the container opens, MPEG-TS leaves
    them at 0, and FLV's always say stereo for AAC (the codec's own header has the truth).
    """
    try:
        for count, packet in enumerate(container.demux(audio)):
            if count >= _AUDIO_PACKETS:
                break
            if packet.size > limits.max_frame_bytes:
                break
            for frame in packet.decode():
                if isinstance(frame, AudioFrame) and frame.sample_rate > 0:
                    return frame.layout.nb_channels, frame.sample_rate
    except av.FFmpegError:
        logger.info("the first audio frames of %s do not decode", container.name)
    return None, None


def probe(path: str | os.PathLike[str], limits: MediaLimits = DEFAULT_LIMITS) -> ProbeResult:
    """Describe the video at ``path``.

    Raises NotAVideo if it is not a video container, MediaRejected (naming the value and
    the limit) if it is over ``limits``, MediaUnavailable (retriable) if it could not be
    read for a reason outside the file (memory, I/O, permissions). The duration is the
    video stream's end minus its start, so a stream whose timestamps start late (an
    MPEG-TS clock) is measured right.
    """
    with open_video(path, limits, threads=1) as opened:
        container, video, found = opened.container, opened.video, opened.headers
        try:
            rotation = read_rotation(video, first_frame(opened, limits))
            audio = container.streams.audio[0] if container.streams.audio else None
            channels, rate = _audio_format(container, audio, limits) if audio else (None, None)
            return ProbeResult(
                container=found.container,
                duration_s=found.duration_s,
                video_codec=found.codec,
                width=found.width,
                height=found.height,
                fps=float(found.fps),
                bit_rate=container.bit_rate or None,
                rotation=rotation,
                audio_codec=audio.codec_context.name if audio else None,
                audio_channels=channels,
                audio_sample_rate=rate,
                size_bytes=os.stat(path).st_size,
                frame_count=found.frame_count,
            )
        except av.FFmpegError as exc:
            raise from_av(exc, "not a readable video") from exc
