"""Benchmark of the video site: its pipeline against a plain PyAV script, in the same run.

Run with ``make bench`` or ``.venv/bin/python bench/video.py [--quick] [--rounds N]
[--batch N] [--batch-seconds S] [--batch-rounds N] [--no-two]``.

**Pipeline.** The real millstream pipeline on the embedded default (no servers) in a fresh
temporary ``MILLSTREAM_HOME`` per run: all six services of ``videosite.app.app`` (probe,
thumbnail, transcode, join, catalog, analytics), each a ``ServiceRunner`` in a thread of its
own with the default file store and tables. A run first processes one small warm-up clip per
partition and waits for them, so every service has joined its group and is idle when the
clock starts (the idle services' CPU use is measured then and printed). Clips go in with
``videosite.pipeline.submit`` (store the original, write the ``Upload`` record — what the
upload endpoint calls, without HTTP); a clip's time ends when its row in the ``videos``
table says ``ready`` (polled every 20 ms).

**Plain script.** What someone would write with PyAV alone, one step after another: open the
file and read its metadata; three thumbnails (10/50/90 %, 320 px) and a poster (the most
detailed of 20/35/50 %, 640 px) as JPEGs, each from the key frame at or before its point;
the same rendition ladder as the site (240p/360p/720p H.264 veryfast High, no B-frames, key
frames every 2 s, maxrate/bufsize, AAC at the rung's bitrate) written as the same fragmented
MP4 with a global ``sidx``. Same thread settings as the site: decoders
``thread_type = "AUTO"`` (thread_count 0: FFmpeg picks), the x264 encoders
``thread_type = "FRAME"`` (frame threads, as many as x264 picks; AAC at PyAV's defaults). It
does not call ``videosite.media``; ``videosite.media``'s own functions run one after another
as a third, diagnostic side ("media"), to tell the media layer's cost from the platform's.

Measured (each ratio = plain script time / pipeline time, so > 1 means the pipeline is
faster; target ≥ 0.9):

1. upload-to-ready of one 10-second 1280x720 clip, and the transcoder's frames/s (source
   frames / the transcode stage's seconds from the ``Video`` record); the sides run in
   rotating order, medians over 5 rounds;
2. 20 clips submitted at once against the plain script looping over them; also with two
   transcode instances (same group, instance 0 and 1). The clips' ids are chosen so that each
   of the 4 partitions holds 5 of them (each transcode instance then gets 10).

Every run also prints its process's CPU time and the CPU the machine's other processes used
meanwhile (from ``/proc/stat``): on a shared 2-CPU machine that says which runs were
disturbed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType, VideoFrame
from PIL import Image

import millstream
from millstream.files import FileStore
from millstream.streams._partitioner import partition_for_key
from millstream.tables import Tables
from videosite.app import app
from videosite.inprocess import InProcessSite
from videosite.media import DEFAULT_LADDER, poster, probe, thumbnails, transcode
from videosite.media.samples import make_clip
from videosite.models import Video
from videosite.pipeline import submit

TARGET = 0.9
BATCH_TARGET = 0.95  # issue 13: the 20-clip batch against the plain script
FPS = 25
KEYFRAME_S = 2.0  # the source's key frames (a camera's are 1-2 s apart)
POLL_S = 0.02
IDLE_S = 1.5  # how long the idle pipeline's CPU use is measured before each timed run

# -- the plain PyAV script ---------------------------------------------------------------------

#: (name, short side, video bit/s, audio bit/s): the site's ladder, checked in main()
LADDER = (("240p", 240, 400_000, 64_000), ("360p", 360, 800_000, 96_000),
          ("720p", 720, 2_500_000, 128_000))
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+global_sidx"
SEGMENT_S = 2
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Meta:
    width: int
    height: int
    fps: Fraction
    duration_s: float
    frames: int
    codec: str
    audio_rate: int | None
    audio_channels: int


def plain_probe(path: Path) -> Meta:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        assert video.duration is not None and video.time_base is not None
        return Meta(width=video.codec_context.width, height=video.codec_context.height,
                    fps=Fraction(video.average_rate or FPS),
                    duration_s=float(video.duration * video.time_base), frames=video.frames,
                    codec=video.codec_context.name,
                    audio_rate=audio.sample_rate if audio else None,
                    audio_channels=audio.codec_context.channels if audio else 0)


def plain_stills(path: Path, points: tuple[float, ...]) -> list[VideoFrame]:
    """The key frame at or before each point; decode on if it was taken already."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        assert stream.duration is not None and stream.time_base is not None
        duration = float(stream.duration * stream.time_base)
        frames: list[VideoFrame] = []
        taken: set[int | None] = set()
        for point in points:
            target = (stream.start_time or 0) + int(duration * point / stream.time_base)
            container.seek(target, stream=stream, backward=True)
            chosen = None
            for index, frame in enumerate(container.decode(stream)):
                chosen = frame
                if frame.pts not in taken and (index == 0 or (frame.pts or 0) >= target):
                    break
            assert chosen is not None
            taken.add(chosen.pts)
            frames.append(chosen)
        return frames


def plain_image(frame: VideoFrame, width: int) -> Image.Image:
    width = min(width, frame.width)
    height = max(round(frame.height * width / frame.width), 1)
    image: Image.Image = frame.reformat(width=width, height=height, format="rgb24").to_image()
    return image


def plain_thumbnails(path: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for number, frame in enumerate(plain_stills(path, (0.1, 0.5, 0.9)), start=1):
        plain_image(frame, 320).save(out / f"thumb-{number:02d}.jpg", "JPEG",
                                     quality=JPEG_QUALITY)
    images = [plain_image(frame, 640) for frame in plain_stills(path, (0.2, 0.35, 0.5))]
    max(images, key=lambda image: image.entropy()).save(out / "poster.jpg", "JPEG",
                                                        quality=JPEG_QUALITY)


def plain_transcode(path: Path, out: Path, meta: Meta) -> None:
    """Decode once, and per rung: scale (``reformat``), encode, mux."""
    out.mkdir(parents=True, exist_ok=True)
    with av.open(str(path)) as source:
        video_in = source.streams.video[0]
        video_in.thread_type = "AUTO"
        audio_in = source.streams.audio[0] if source.streams.audio else None
        gop = round(meta.fps * SEGMENT_S)
        short = min(meta.width, meta.height)
        rungs = []
        for name, height, video_rate, audio_rate in LADDER:
            if height > short:
                continue
            size = (max(2, int(meta.width * height / short) // 2 * 2),
                    max(2, int(meta.height * height / short) // 2 * 2))
            container = av.open(str(out / f"{name}.mp4"), "w", format="mp4",
                                options={"movflags": MOVFLAGS})
            video = container.add_stream("libx264", rate=meta.fps)
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
            video.bit_rate = video_rate
            video.gop_size = gop
            video.thread_type = "FRAME"  # as the site's encoder: x264 frame threads
            video.options = {"preset": "veryfast", "profile": "high",
                             "maxrate": str(video_rate * 3 // 2), "bufsize": str(video_rate * 2),
                             "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
            audio = resampler = None
            if audio_in is not None:
                layout = "stereo" if meta.audio_channels >= 2 else "mono"
                audio = container.add_stream("aac", rate=meta.audio_rate, layout=layout)
                audio.bit_rate = audio_rate
                resampler = av.AudioResampler(format="fltp", layout=layout,
                                              rate=meta.audio_rate, frame_size=1024)
            rungs.append((container, video, size, audio, resampler))
        streams = [video_in] if audio_in is None else [video_in, audio_in]
        for packet in source.demux(streams):
            for frame in packet.decode():
                if isinstance(frame, VideoFrame):
                    for container, video, (width, height), _, _ in rungs:
                        scaled = frame.reformat(width=width, height=height, format="yuv420p")
                        scaled.pict_type = PictureType.NONE
                        container.mux(video.encode(scaled))
                elif isinstance(frame, av.AudioFrame):
                    for container, _, _, audio, resampler in rungs:
                        if audio is not None and resampler is not None:
                            for chunk in resampler.resample(frame):
                                container.mux(audio.encode(chunk))
        for container, video, _, audio, resampler in rungs:
            container.mux(video.encode(None))
            if audio is not None and resampler is not None:
                for chunk in resampler.resample(None):
                    container.mux(audio.encode(chunk))
                container.mux(audio.encode(None))
            container.close()


def plain_script(path: Path, out: Path) -> dict[str, float]:
    """Probe, thumbnails, transcode one after another; seconds per step."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    meta = plain_probe(path)
    times["probe"] = (lap := time.perf_counter()) - start
    plain_thumbnails(path, out / "thumbs")
    times["thumbnail"] = (now := time.perf_counter()) - lap
    plain_transcode(path, out / "renditions", meta)
    times["transcode"] = time.perf_counter() - now
    return times


# -- the pipeline ------------------------------------------------------------------------------


class Pipeline:
    """Every service of ``videosite.app`` in a thread of its own (``InProcessSite``, no web
    server), on the embedded default under ``home``; ``transcoders`` instances of the
    transcode service (one group)."""

    def __init__(self, home: Path, transcoders: int = 1) -> None:
        for name in ("MILLSTREAM_STREAMS", "MILLSTREAM_FILES", "MILLSTREAM_TABLES",
                     "MILLSTREAM_CONFIG", "VIDEOSITE_ANALYTICS_DB"):
            os.environ.pop(name, None)
        os.environ["MILLSTREAM_HOME"] = str(home)
        self.site = InProcessSite(token="bench", serve=False, metrics_interval_s=5.0,
                                  instances={"transcode": transcoders}).start()
        self.files: FileStore = self.site.files
        self.tables: Tables = self.site.tables
        self.runners = self.site.runners
        self.errors = self.site.errors
        self.streams = millstream.open_streams()
        self.writer = app.open_writer(self.streams, files=self.files)

    def submit(self, path: Path, video_id: str) -> None:
        submit(self.streams, self.files, path, video_id, writer=self.writer,
               video_id=video_id)

    def wait(self, ids: list[str], timeout: float = 1800.0) -> dict[str, tuple[float, Video]]:
        """Poll the videos table until every id is ready; (monotonic time seen, row) each."""
        table = self.tables.table("videos")
        seen: dict[str, tuple[float, Video]] = {}
        deadline = time.monotonic() + timeout
        while len(seen) < len(ids):
            if self.errors:
                raise RuntimeError(f"a service failed: {self.errors}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids) - len(seen)} videos not ready in {timeout} s")
            for video_id in ids:
                if video_id in seen:
                    continue
                try:
                    video = table.get(video_id, Video)
                except millstream.MillstreamError:  # the table is not made yet
                    video = None
                if video is None or video.status == "processing":
                    continue
                if video.status != "ready":
                    raise RuntimeError(f"video {video_id} failed: {video.reason}")
                seen[video_id] = (time.monotonic(), video)
            time.sleep(POLL_S)
        return seen

    def transcoders_assigned(self) -> list[tuple[str, ...]]:
        return [r.statistics().assigned for r in self.runners if r.spec.name == "transcode"]

    def close(self) -> None:
        self.writer.close()
        self.streams.close()
        self.site.stop()


def ids_per_partition(prefix: str, count: int, partitions: int) -> list[str]:
    """``count`` video ids spread evenly over the ``uploads`` partitions."""
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while sum(len(ids) for ids in found.values()) < count:
        candidate = f"{prefix}{n:06x}"
        n += 1
        part = partition_for_key(candidate.encode(), partitions)
        if len(found[part]) < -(-count // partitions):
            found[part].append(candidate)
    spread = [ids[i] for i in range(count) for ids in found.values() if i < len(ids)]
    return spread[:count]


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy since boot (Linux), else None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall time, this process's CPU time and the other processes' CPU time since start."""

    def __init__(self) -> None:
        self.t0, self.cpu0, self.busy0 = time.monotonic(), time.process_time(), _machine_busy_s()
        self.wall0 = time.time()

    def read(self) -> tuple[float, float, float]:
        cpu = time.process_time() - self.cpu0
        busy = _machine_busy_s()
        others = busy - self.busy0 - cpu if busy is not None and self.busy0 is not None else 0.0
        return time.monotonic() - self.t0, cpu, max(others, 0.0)


@dataclass
class Run:
    wall_s: float  # start → the last clip ready
    cpu_s: float  # this process
    others_s: float  # every other process on the machine
    ready_s: list[float]  # per clip, from the start
    stages: list[dict[str, tuple[float, float]]]  # per clip: stage -> (start, end) from start
    submit_s: float = 0.0  # storing the originals and writing the Upload records
    idle_cores: float = 0.0  # CPU the started, idle pipeline used, in cores (before the clock)
    threads: dict[str, float] = field(default_factory=dict)  # CPU s by thread name, the run's


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads by name (Linux; ``/proc/self/task``); threads
    Python did not start (x264's, FFmpeg's) under "(native threads)"."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = defaultdict(float)
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "(native threads)")
        if name.startswith("Thread-"):
            name = "(unnamed threads)"
        out[name] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return dict(out)


def pipeline_run(work: Path, warm: Path, clip: Path, count: int, tag: str,
                 transcoders: int = 1) -> Run:
    """Start the services in a fresh home, warm them up, then time ``count`` clips."""
    home = work / f"home-{tag}"
    pipe = Pipeline(home, transcoders)
    try:
        partitions = app.streams["uploads"].partitions
        for attempt in range(5):  # a small clip per partition: every instance works once
            warm_ids = ids_per_partition(f"warm{attempt}{tag}-", partitions, partitions)
            for video_id in warm_ids:
                pipe.submit(warm, video_id)
            pipe.wait(warm_ids)
            if all(pipe.transcoders_assigned()):
                break
        else:
            print(f"    warning: a transcode instance holds no partition: "
                  f"{pipe.transcoders_assigned()}")
        time.sleep(0.5)  # the warm-up's commits and checkpoints go: idle when the clock starts
        idle = Meter()
        time.sleep(IDLE_S)
        idle_wall, idle_cpu, _ = idle.read()
        ids = ids_per_partition(f"{tag}-", count, partitions)
        meter = Meter()
        threads0 = thread_cpu()
        for video_id in ids:
            pipe.submit(clip, video_id)
        submitted = time.monotonic() - meter.t0
        done = pipe.wait(ids)
        _, cpu, others = meter.read()
        threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu().items()}
        # threads that ended meanwhile (each encoder's x264 threads) left /proc/self/task
        threads["(threads that ended: x264's, FFmpeg's)"] = cpu - sum(threads.values())
        ready = [done[i][0] - meter.t0 for i in ids]
        return Run(max(ready), cpu, others, ready,
                   [{name: (s.started_at - meter.wall0, s.finished_at - meter.wall0)
                     for name, s in done[i][1].stages.items()} for i in ids], submitted,
                   idle_cpu / idle_wall, threads)
    finally:
        pipe.close()
        shutil.rmtree(home, ignore_errors=True)


def sequential_run(work: Path, clip: Path, count: int,
                   steps: Callable[[Path, Path], dict[str, float]]) -> Run:
    """``steps`` on ``count`` clips one after another."""
    out = work / "out"
    meter = Meter()
    ready, stages = [], []
    for n in range(count):
        at = time.monotonic() - meter.t0
        spans = {}
        for name, seconds in steps(clip, out / str(n)).items():
            spans[name] = (at, at + seconds)
            at += seconds
        stages.append(spans)
        ready.append(time.monotonic() - meter.t0)
    wall, cpu, others = meter.read()
    shutil.rmtree(out)
    return Run(wall, cpu, others, ready, stages)


def media_layer(path: Path, out: Path) -> dict[str, float]:
    """Diagnostic, not the baseline: the site's own media functions, one after another,
    without the platform (no streams, no file store)."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    probe(path)
    times["probe"] = (lap := time.perf_counter()) - start
    thumbnails(path, out / "thumbs")
    poster(path, out / "poster.jpg")
    times["thumbnail"] = (now := time.perf_counter()) - lap
    transcode(path, out / "renditions")
    times["transcode"] = time.perf_counter() - now
    return times


# -- reporting ---------------------------------------------------------------------------------


def verdict(ratio: float) -> str:
    return "PASS" if ratio >= TARGET else "MISS"


def stage_seconds(run: Run, name: str) -> list[float]:
    return [spans[name][1] - spans[name][0] for spans in run.stages]


def load(run: Run) -> str:
    ncpu = os.cpu_count() or 1
    return (f"CPU {run.cpu_s:5.1f} s = {run.cpu_s / run.wall_s:.2f} of {ncpu} cores; "
            f"other processes {run.others_s / run.wall_s:.2f} cores")


def one_clip_line(side: str, run: Run) -> str:
    spans = run.stages[0]
    if side == "pipeline":
        steps = "; ".join(f"{k} {b:.2f}–{e:.2f}" for k, (b, e) in spans.items())
        steps = f"submit {run.submit_s:.2f}; {steps}"
        return (f"{run.ready_s[0]:6.2f} s  ({steps} s) {load(run)}; idle services used "
                f"{run.idle_cores:.2f} cores before the clock")
    steps = ", ".join(f"{k} {e - b:.2f}" for k, (b, e) in spans.items())
    return f"{run.ready_s[0]:6.2f} s  ({steps} s) {load(run)}"


def batch_lines(label: str, run: Run) -> list[str]:
    sums = {name: sum(stage_seconds(run, name)) for name in ("probe", "thumbnail", "transcode")}
    ready = sorted(run.ready_s)
    per_clip = statistics.median(stage_seconds(run, "transcode"))
    lines = [f"    {label:<28} {run.wall_s:7.1f} s  {load(run)}",
             "      stage seconds summed: " + ", ".join(f"{k} {v:.1f}" for k, v in sums.items())
             + f"; transcode per clip (median) {per_clip:.2f} s",
             f"      clips ready at: first {ready[0]:.1f} s, median "
             f"{statistics.median(ready):.1f} s, last {ready[-1]:.1f} s"]
    if run.threads:
        top = sorted(run.threads.items(), key=lambda kv: -kv[1])
        lines.append("      CPU by thread: " + ", ".join(
            f"{name} {cpu:.1f} s" for name, cpu in top if cpu >= 0.05))
    if run.submit_s:
        spans = sorted(s["transcode"] for s in run.stages)
        tail = [r - s["transcode"][1] for r, s in zip(run.ready_s, run.stages, strict=True)]
        lines.append(f"      idle services used {run.idle_cores:.2f} cores before the clock; "
                     f"submits took {run.submit_s:.2f} s; first transcode began at "
                     f"{spans[0][0]:.2f} s; transcode finished → row ready: median "
                     f"{statistics.median(tail):.2f} s, max {max(tail):.2f} s")
    return lines


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: float
    batch: int
    batch_seconds: float
    batch_rounds: int
    two: bool


def per_clip(run: Run) -> float:
    """The median transcode step or stage of a run's clips, in seconds."""
    return statistics.median(stage_seconds(run, "transcode"))


def single_results(runs: dict[str, list[Run]], frames: int,
                   med: Callable[[list[Run], Callable[[Run], float]], float]) -> None:
    plain_s, pipe_s, media_s = (med(runs[k], lambda run: run.ready_s[0])
                                for k in ("plain", "pipeline", "media"))
    print(f"    one clip, upload → ready: plain script {plain_s:.2f} s, pipeline {pipe_s:.2f} s:"
          f" ratio {plain_s / pipe_s:.3f} {verdict(plain_s / pipe_s)}   "
          f"(videosite.media alone, one step after another: {media_s:.2f} s)")
    plain_tc, pipe_tc, media_tc = (med(runs[k], lambda run: stage_seconds(run, "transcode")[0])
                                   for k in ("plain", "pipeline", "media"))
    fps_plain, fps_pipe = frames / plain_tc, frames / pipe_tc
    print(f"    transcoder: plain script {fps_plain:.1f} source frames/s, pipeline transcode "
          f"stage {fps_pipe:.1f} frames/s: ratio {fps_pipe / fps_plain:.3f} "
          f"{verdict(fps_pipe / fps_plain)}   (videosite.media.transcode alone: "
          f"{frames / media_tc:.1f} frames/s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2-second clips, 4 in the batch, one round")
    parser.add_argument("--rounds", type=int,
                        help="rounds of the single clip (default 5; 0: the batch only)")
    parser.add_argument("--seconds", type=float, help="single clip length (default 10)")
    parser.add_argument("--batch", type=int, help="clips in the batch (default 20; 0: none)")
    parser.add_argument("--batch-seconds", type=float, help="batch clip length (default 10)")
    parser.add_argument("--batch-rounds", type=int, help="rounds of the batch (default 1)")
    parser.add_argument("--no-two", action="store_true",
                        help="skip the batch with two transcode instances")
    args = parser.parse_args(argv)
    quick = args.quick
    def given(value: float | None, full: float, smoke: float) -> float:
        return value if value is not None else smoke if quick else full

    s = Settings(rounds=int(given(args.rounds, 5, 1)), seconds=given(args.seconds, 10.0, 2.0),
                 batch=int(given(args.batch, 20, 4)),
                 batch_seconds=given(args.batch_seconds, 10.0, 2.0),
                 batch_rounds=int(given(args.batch_rounds, 1, 1)), two=not args.no_two)
    site = tuple((r.name, r.height, r.video_bitrate, r.audio_bitrate) for r in DEFAULT_LADDER)
    if site != LADDER:
        raise SystemExit(f"videosite's ladder changed ({site}); update LADDER to compare fairly")
    print(f"video benchmark: {platform.machine()} {os.cpu_count()} CPUs, load "
          + " ".join(f"{x:.2f}" for x in os.getloadavg())
          + f"; Python {platform.python_version()}, PyAV {av.__version__}, "
          f"FFmpeg {av.ffmpeg_version_info}")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="millstream-bench-video-") as tmp:
        work = Path(tmp)
        warm, clip, batch_clip = work / "warm.mp4", work / "clip.mp4", work / "batch.mp4"
        make_clip(warm, 320, 240, 1.0, keyframe_interval_s=KEYFRAME_S)
        make_clip(clip, 1280, 720, s.seconds, keyframe_interval_s=KEYFRAME_S)
        if s.batch_seconds != s.seconds:
            make_clip(batch_clip, 1280, 720, s.batch_seconds, keyframe_interval_s=KEYFRAME_S)
        else:
            batch_clip = clip
        frames = plain_probe(clip).frames
        print(f"  clip: 1280x720 {FPS} fps {s.seconds:g} s ({frames} frames, key frames every "
              f"{KEYFRAME_S:g} s, {clip.stat().st_size / 1e6:.1f} MB) + mono AAC; ladder "
              + ", ".join(name for name, *_ in LADDER) + "; x264 veryfast")
        plain_script(warm, work / "warm-out")  # imports, codecs, page cache
        media_layer(warm, work / "warm-out")

        if s.rounds:
            print(f"\n  1. one clip, upload to ready ({s.rounds} round(s), order rotating; "
                  "pipeline times from the start of submit, stage spans from the Video record)")
        runs: dict[str, list[Run]] = {"plain": [], "media": [], "pipeline": []}
        orders = (("plain", "pipeline", "media"), ("pipeline", "media", "plain"),
                  ("media", "plain", "pipeline"))
        for r in range(s.rounds):
            for side in orders[r % 3]:
                if side == "pipeline":
                    run = pipeline_run(work, warm, clip, 1, f"one{r}")
                else:
                    run = sequential_run(work, clip, 1,
                                         plain_script if side == "plain" else media_layer)
                runs[side].append(run)
                print(f"    round {r + 1} {side:<9}{one_clip_line(side, run)}", flush=True)

        batch: dict[str, list[Run]] = {"plain script": [], "pipeline": [],
                                       "pipeline, 2 transcoders": []}
        if s.batch:
            print(f"\n  2. {s.batch} clips of {s.batch_seconds:g} s: the pipeline (all "
                  "submitted at once) vs the plain script looping over them "
                  f"({s.batch_rounds} round(s))")
        labels = list(batch)
        for r in range(s.batch_rounds if s.batch else 0):
            for label in labels[r % 3:] + labels[:r % 3]:  # order rotating over rounds
                if label == "plain script":
                    run = sequential_run(work, batch_clip, s.batch, plain_script)
                elif label == "pipeline":
                    run = pipeline_run(work, warm, batch_clip, s.batch, f"batch{r}")
                elif s.two:
                    run = pipeline_run(work, warm, batch_clip, s.batch, f"two{r}",
                                       transcoders=2)
                else:
                    continue
                batch[label].append(run)
                shown = f"{label} ({r + 1})" if s.batch_rounds > 1 else label
                print("\n".join(batch_lines(shown, run)), flush=True)

    def med(side: list[Run], key: Callable[[Run], float]) -> float:
        return statistics.median(key(run) for run in side)

    print(f"\n  results (ratio = plain script time / pipeline time, > 1 = the pipeline is "
          f"faster; target ≥ {TARGET}; medians over rounds):")
    if s.rounds:
        single_results(runs, frames, med)
    for label in ("pipeline", "pipeline, 2 transcoders"):
        if batch[label]:
            base = med(batch["plain script"], lambda run: run.wall_s)
            wall = med(batch[label], lambda run: run.wall_s)
            print(f"    {s.batch} clips, {label}: plain script {base:.1f} s, pipeline "
                  f"{wall:.1f} s: ratio {base / wall:.3f} "
                  f"{'PASS' if base / wall >= BATCH_TARGET else 'MISS'} (≥ {BATCH_TARGET}); "
                  f"transcode per clip (median) {med(batch['plain script'], per_clip):.2f} s "
                  f"plain, {med(batch[label], per_clip):.2f} s pipeline; CPU: plain script "
                  f"{med(batch['plain script'], lambda run: run.cpu_s):.1f} s, pipeline "
                  f"{med(batch[label], lambda run: run.cpu_s):.1f} s (CPU seconds depend "
                  "far less than wall time on the load of other processes)")
    print(f"  (the benchmark ran {time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
