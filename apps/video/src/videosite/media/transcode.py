"""Encode a video into a ladder of H.264 + AAC MP4 renditions, decoding the source once.

Output layout: each rendition is a *fragmented* MP4 — ``ftyp``, ``moov``, a global ``sidx``
(the index, at the front like ``faststart``), then one ``moof`` + ``mdat`` per 2-second
group of pictures. Browsers play it progressively like any MP4, and the same file serves
HLS through byte ranges (see :mod:`.hls`), so nothing is stored twice. Key frames fall at
the same times in every rung, so players can switch rungs at any fragment boundary.

Fragmented output has no edit list, so B-frames are off (they would delay video by two
frames against audio). AAC's 1024-sample priming (~23 ms) makes FFmpeg shift both tracks
by that much to keep them in sync, so the first video frame lasts ~23 ms longer.

Rotation: output is upright. Frames are turned by FFmpeg's ``transpose`` filter and no
display matrix is written, because adaptive players honour display matrices unevenly.
Rungs never upscale; a rung's ``height`` is the short side of the displayed picture, so a
portrait 360x640 source gets a 240p rendition of 240x426.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.filter import Graph
from av.video.frame import PictureType, VideoFrame

from ._checks import check_audio_gap, check_frame
from ._container import stream_fps
from ._decoding import OpenVideo
from ._open import open_video
from .errors import MediaError, MediaRejected, ProcessingError
from .limits import DEFAULT_LIMITS, MediaLimits
from .mp4 import Fragment, read_layout
from .orientation import display_size, transpose_filters
from .probe import probe

__all__ = ["DEFAULT_LADDER", "SEGMENT_S", "Rendition", "Rung", "plan_ladder", "transcode"]

logger = logging.getLogger(__name__)

SEGMENT_S = 2.0
"""Seconds between key frames, hence the length of each fragment / HLS segment."""

_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+global_sidx"
_AAC_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: the displayed picture's short side and target bitrates."""

    name: str
    height: int
    video_bitrate: int
    audio_bitrate: int = 96_000


DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("240p", 240, 400_000, 64_000),
    Rung("360p", 360, 800_000, 96_000),
    Rung("720p", 720, 2_500_000, 128_000),
)


@dataclass(frozen=True)
class Rendition:
    """One encoded rung: the file, what it holds and where its fragments are."""

    name: str
    path: Path
    width: int
    height: int
    fps: float
    duration_s: float
    size_bytes: int
    video_bitrate: int
    audio_bitrate: int | None
    codecs: str
    init_length: int
    fragments: tuple[Fragment, ...]

    @property
    def has_audio(self) -> bool:
        return self.audio_bitrate is not None

    @property
    def average_bandwidth(self) -> int:
        """Bits per second over the whole file."""
        return round(self.size_bytes * 8 / self.duration_s) if self.duration_s > 0 else 0

    @property
    def peak_bandwidth(self) -> int:
        """The highest bits per second of any fragment (ignoring a short last one)."""
        rates = [f.length * 8 / f.duration_s for f in self.fragments if f.duration_s >= 0.5]
        return max(round(max(rates, default=0)), self.average_bandwidth)


def _even_floor(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def plan_ladder(
    width: int, height: int, ladder: Sequence[Rung] = DEFAULT_LADDER
) -> list[tuple[Rung, int, int]]:
    """The rungs to encode for a picture displayed at ``width`` x ``height``, with sizes.

    Rungs taller (on the short side) than the source are skipped; if every rung is, the
    smallest is made at the source's size. Sizes are even and keep the aspect ratio.
    """
    short = min(width, height)
    plan = []
    for rung in sorted(ladder, key=lambda r: r.height):
        if rung.height <= short:
            scale = rung.height / short
            plan.append((rung, _even_floor(width * scale), _even_floor(height * scale)))
    if not plan and ladder:
        smallest = min(ladder, key=lambda r: r.height)
        plan.append((smallest, _even_floor(width), _even_floor(height)))
    return plan


class _Output:
    """One rendition being written: its container, encoders, scaler and resampler."""

    def __init__(
        self,
        path: Path,
        rung: Rung,
        size: tuple[int, int],
        fps: Fraction,
        rotation: int,
        audio: tuple[int | None, int | None] | None,
    ) -> None:
        """``audio`` is the source's (channels, sample rate) as probed, None without audio."""
        self.path, self.rung, self.size, self.rotation = path, rung, size, rotation
        self.container: OutputContainer = av.open(
            str(path), "w", format="mp4", options={"movflags": _MOVFLAGS}
        )
        gop = max(1, round(fps * Fraction(SEGMENT_S)))
        self.video = self.container.add_stream("libx264", rate=fps)
        self.video.width, self.video.height = size
        self.video.pix_fmt = "yuv420p"
        self.video.bit_rate = rung.video_bitrate
        self.video.gop_size = gop
        # x264 frame threads: several frames in flight keep both cores busy, where PyAV's
        # default (slices of one frame) left one mostly idle — a 10 s 720p ladder took
        # ~5 s instead of ~7.5 s here, and compresses a little better (docs/internals/benchmarks.md)
        self.video.thread_type = "FRAME"
        self.video.options = {
            "preset": "veryfast",
            "profile": "high",
            "maxrate": str(rung.video_bitrate * 3 // 2),
            "bufsize": str(rung.video_bitrate * 2),
            "keyint_min": str(gop),
            "sc_threshold": "0",  # key frames only on the fixed grid: rungs stay aligned
            # No B-frames: a fragmented MP4 has no edit list to hide their start delay, so
            # video would begin 2 frames after audio.
            "bf": "0",
        }
        self.audio: AudioStream | None = None
        self.resampler: AudioResampler | None = None
        if audio is not None:
            channels, rate = audio
            rate = rate if rate in _AAC_RATES else 48000
            layout = "stereo" if (channels or 2) >= 2 else "mono"
            self.audio = self.container.add_stream("aac", rate=rate, layout=layout)
            self.audio.bit_rate = rung.audio_bitrate
            self.resampler = AudioResampler(
                format="fltp", layout=layout, rate=rate, frame_size=1024
            )
        self.graph: Graph | None = None
        self.graph_input: tuple[int, int, str] | None = None

    def _build_graph(self, frame: VideoFrame) -> Graph:
        graph = Graph()
        nodes = [
            graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format,
                time_base=frame.time_base,
            )
        ]
        for name, args in transpose_filters(self.rotation):
            nodes.append(graph.add(name, args))
        width, height = self.size
        nodes.append(graph.add("scale", f"{width}:{height}"))
        nodes.append(graph.add("setsar", "1"))
        nodes.append(graph.add("format", "yuv420p"))
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes)
        graph.configure()
        return graph

    def add_video(self, frame: VideoFrame | None) -> None:
        if frame is not None:
            shape = (frame.width, frame.height, frame.format.name)
            if self.graph is None or shape != self.graph_input:
                self.graph, self.graph_input = self._build_graph(frame), shape
        if self.graph is None:
            return
        self.graph.vpush(frame)
        while True:
            try:
                scaled = self.graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                break
            scaled.pict_type = PictureType.NONE  # the source's key frames must not leak
            self.container.mux(self.video.encode(scaled))

    def add_audio(self, frame: AudioFrame | None) -> None:
        if self.audio is None or self.resampler is None:
            return
        for chunk in self.resampler.resample(frame):
            self.container.mux(self.audio.encode(chunk))

    def finish(self) -> None:
        self.add_video(None)
        self.container.mux(self.video.encode(None))
        if self.audio is not None:
            self.add_audio(None)
            self.container.mux(self.audio.encode(None))
        self.container.close()

    def abandon(self) -> None:
        try:
            self.container.close()
        except av.FFmpegError:
            logger.debug("closing %s after a failure failed too", self.path)
        self.path.unlink(missing_ok=True)


def _avc_codec(extradata: bytes | None) -> str:
    """The RFC 6381 ``avc1.PPCCLL`` string from avcC or Annex B extradata."""
    if extradata and extradata[0] == 1 and len(extradata) >= 4:
        return "avc1." + extradata[1:4].hex()
    if extradata:
        for start in (b"\x00\x00\x01\x67", b"\x00\x00\x01\x27"):
            at = extradata.find(start)
            if at >= 0 and len(extradata) >= at + 7:
                return "avc1." + extradata[at + 4 : at + 7].hex()
    return "avc1.640028"  # High@4.0: what a player should assume if the SPS is hidden


def _rendition(output: _Output, fps: Fraction) -> Rendition:
    with av.open(str(output.path)) as written:
        video = written.streams.video[0]
        codecs = _avc_codec(video.codec_context.extradata)
        has_audio = bool(written.streams.audio)
        if video.duration is not None and video.time_base is not None:
            duration = float(video.duration * video.time_base)
        else:
            duration = (written.duration or 0) / av.time_base
    if has_audio:
        codecs += ",mp4a.40.2"  # AAC-LC, the only profile FFmpeg's encoder writes
    layout = read_layout(output.path, track_id=1)
    width, height = output.size
    return Rendition(
        name=output.rung.name,
        path=output.path,
        width=width,
        height=height,
        fps=float(fps),
        duration_s=duration,
        size_bytes=output.path.stat().st_size,
        video_bitrate=output.rung.video_bitrate,
        audio_bitrate=output.rung.audio_bitrate if has_audio else None,
        codecs=codecs,
        init_length=layout.init_length,
        fragments=layout.fragments,
    )


def transcode(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    ladder: Sequence[Rung] = DEFAULT_LADDER,
    progress: Callable[[float], None] | None = None,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> list[Rendition]:
    """Encode ``path`` into ``out_dir/<rung name>.mp4`` for each rung of the plan.

    ``progress`` is called with the fraction done (0..1, non-decreasing, at most about a
    hundred times, 1.0 last). Raises NotAVideo / MediaRejected like :func:`probe` — also
    when decoded frames turn out larger or more numerous than the headers claimed — and
    ProcessingError if FFmpeg fails; partial files are removed.
    """
    source = probe(path, limits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs: list[_Output] = []
    try:
        with open_video(path, limits) as opened:  # checked again: the file is read afresh
            container, video = opened.container, opened.video
            audio = container.streams.audio[0] if container.streams.audio else None
            fps = stream_fps(video) or Fraction(25)
            shown_w, shown_h = display_size(source.width, source.height, source.rotation)
            sar = video.sample_aspect_ratio
            if sar and sar != 1:  # anamorphic: plan on the displayed shape, square pixels out
                if source.rotation in (90, 270):
                    shown_h = round(shown_h * sar)
                else:
                    shown_w = round(shown_w * sar)
            for rung, width, height in plan_ladder(shown_w, shown_h, ladder):
                outputs.append(
                    _Output(
                        out / f"{rung.name}.mp4", rung, (width, height), fps, source.rotation,
                        None if audio is None else (source.audio_channels,
                                                    source.audio_sample_rate),
                    )
                )
            _pump(opened, audio, outputs, source.duration_s, limits, progress)
            for output in outputs:
                output.finish()
        renditions = [_rendition(output, fps) for output in outputs]
    except BaseException as exc:
        for output in outputs:
            output.abandon()
        if isinstance(exc, av.FFmpegError | ValueError) and not isinstance(exc, MediaError):
            raise ProcessingError(f"transcoding {Path(path).name} failed: {exc}") from exc
        raise
    if progress is not None:
        progress(1.0)
    return renditions


def _pump(
    opened: OpenVideo,
    audio: AudioStream | None,
    outputs: list[_Output],
    duration_s: float,
    limits: MediaLimits,
    progress: Callable[[float], None] | None,
) -> None:
    """Decode the source once, feeding every output; check frames against ``limits``."""
    # a late start (MPEG-TS clocks, start offsets) moves to zero: the earliest first
    # timestamp of the video and the audio, so they keep their distance; a negative one is
    # AAC priming, which the decoder already drops, so it moves nothing
    origin_s = max(opened.headers.origin_s, 0.0)
    streams = [opened.video] if audio is None else [opened.video, audio]
    video_start_s = opened.headers.start_s - origin_s
    frames, reported, heard = 0, 0.0, False
    for frame in opened.frames(*streams):
        if frame.pts is not None and frame.time_base is not None:
            frame.pts -= round(origin_s / frame.time_base)
        if isinstance(frame, VideoFrame):
            frames += 1
            if frames > limits.max_frames:
                raise MediaRejected("frame count", frames, limits.max_frames)
            check_frame(frame, limits)
            for output in outputs:
                output.add_video(frame)
            done = min(max(float(frame.time or 0.0) / duration_s, 0.0), 0.99)
            if progress is not None and done - reported >= 0.01:
                reported = done
                progress(done)
        else:
            if not heard:  # audio that starts after the video starts after silence
                heard = True
                if frame.time is not None:  # checked on the headers; again on the frames
                    check_audio_gap(frame.time - video_start_s, duration_s)
                for silence in _silence_before(frame):
                    for output in outputs:
                        output.add_audio(silence)
            if frame.time is not None and frame.time > video_start_s + 2 * duration_s:
                # the same bound at the other end: the video's duration past its end
                raise MediaRejected(
                    "audio end gap (s)", None, duration_s,
                    f"audio end gap (s) over the limit of {duration_s:g} (the video's "
                    f"duration): the audio still plays "
                    f"{frame.time - video_start_s - duration_s:.2f} s after the video's end",
                )
            for output in outputs:
                output.add_audio(frame)


def _silence_before(frame: AudioFrame) -> Iterator[AudioFrame]:
    """Silent frames from 0 to ``frame``'s start, of at most a second each, made one at a
    time (the gap is bounded by :func:`check_audio_gap`, its memory by one frame).

    A fragmented MP4 has no edit list, so an audio track whose first sample comes late
    would have that sample stretched over the gap and play early: out of step with the
    video by the gap (half a second in a broadcast stream whose audio starts later).
    """
    if frame.pts is None or frame.time_base is None or frame.pts <= 0:
        return
    rate = frame.sample_rate
    missing = round(frame.pts * frame.time_base * rate)
    for start in range(0, missing, rate):
        silence = AudioFrame(format=frame.format.name, layout=frame.layout.name,
                             samples=min(rate, missing - start))
        for plane in silence.planes:
            plane.update(bytes(plane.buffer_size))
        # in the frame's own time base: the resampler reads every pts in its first frame's
        silence.sample_rate, silence.time_base = rate, frame.time_base
        silence.pts = round(Fraction(start, rate) / frame.time_base)
        yield silence
