"""Benchmark: videosite.media.transcode against a plain PyAV script, in the same run.

Both read the same generated 720p clip and write one 360p H.264 (veryfast) + AAC MP4 with
the same bitrate and x264 settings; the baseline is the shortest PyAV loop that does that
(``reformat`` for scaling, a plain MP4 without fragments or faststart). Times are best of 3.
Prints the machine, the parameters, both times and the ratio.

Usage: PYTHONPATH=apps/video/src .venv/bin/python apps/video/bench/bench_media.py [seconds]
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av

from videosite.media import Rung, thumbnails, transcode
from videosite.media.samples import make_clip

RUNG = Rung("360p", 360, 800_000, 96_000)


def baseline(source: Path, target: Path) -> None:
    """A plain PyAV transcode: decode, reformat to 640x360, encode, mux."""
    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        video_in, audio_in = src.streams.video[0], src.streams.audio[0]
        video_in.thread_type = "AUTO"
        video = out.add_stream("libx264", rate=video_in.average_rate)
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        video.bit_rate = RUNG.video_bitrate
        video.gop_size = 50  # the same x264 settings as the pipeline: this measures the rest
        video.options = {"preset": "veryfast", "bf": "0", "sc_threshold": "0"}
        audio = out.add_stream("aac", rate=44100, layout="mono")
        audio.bit_rate = RUNG.audio_bitrate
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=44100, frame_size=1024)
        for packet in src.demux(video_in, audio_in):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    small = frame.reformat(width=640, height=360, format="yuv420p")
                    small.pict_type = av.video.frame.PictureType.NONE
                    out.mux(video.encode(small))
                elif isinstance(frame, av.AudioFrame):
                    for chunk in resampler.resample(frame):
                        out.mux(audio.encode(chunk))
        out.mux(video.encode(None))
        for chunk in resampler.resample(None):
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))


def timed(label: str, action: object, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    print(f"  {label:<34} best of {runs}: {best:7.3f} s")
    return best


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info}"
    )
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        source = work / "source.mp4"
        make_clip(source, 1280, 720, seconds, keyframe_interval_s=2.0)
        frames = round(seconds * 25)
        print(
            f"source: 1280x720 25 fps {seconds:g} s ({frames} frames) + mono AAC;"
            f" output 640x360 {RUNG.video_bitrate // 1000} kb/s veryfast"
        )
        base = timed("plain PyAV script", lambda: baseline(source, work / "base.mp4"))
        ours = timed(
            "videosite transcode (1 rung)",
            lambda: transcode(source, work / "ours", ladder=[RUNG]),
        )
        ladder = timed("videosite transcode (240/360/720)", lambda: transcode(source, work / "all"))
        stills = timed("videosite thumbnails (3 points)", lambda: thumbnails(source, work / "t"))
        print(
            f"  1 rung: {frames / ours:6.1f} fps; ratio to baseline {base / ours:.2f}x"
            f" (>1 = faster)"
        )
        print(
            f"  full ladder: {frames / ladder:6.1f} source fps; per thumbnail"
            f" {stills / 3 * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
