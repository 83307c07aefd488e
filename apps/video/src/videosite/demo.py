"""The main job: the video site processing sample videos it generates, end to end.

``millstream-video demo`` (``python -m videosite.demo``, what ``make demo`` runs) on the
configured platform — the embedded default when nothing is configured, no servers:

1. generates a few sample clips with PyAV (different sizes, one portrait, one without audio),
   plus one file that is not a video, to show a refusal;
2. starts every service of ``videosite.app`` (probe, thumbnail, transcode, join, catalog,
   analytics) in this process, each in its own thread with its own consumer group, and the
   web site (``InProcessSite``);
3. uploads the clips through the HTTP API (``POST /api/videos``);
4. shows a progress bar per video until each is ready or failed, then a summary (id,
   duration, renditions, time to ready) and the URL of the gallery; it keeps serving until
   Ctrl-C (``--no-serve`` stops at once).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import millstream

from .client import UploadFailed, UploadRefused
from .inprocess import FINISHED, InProcessSite
from .media.samples import make_clip
from .models import Video

__all__ = ["SAMPLES", "main", "make_samples"]


@dataclass(frozen=True)
class Sample:
    name: str
    title: str
    width: int
    height: int
    seconds: float
    audio: bool = True
    rotate: int = 0


SAMPLES = (
    Sample("harbour.mp4", "Harbour at dawn (640x360)", 640, 360, 4.0),
    Sample("street.mp4", "Street corner (320x240)", 320, 240, 3.0),
    Sample("portrait.mp4", "Phone video, portrait (360x640)", 360, 640, 3.0),
    Sample("silent.mp4", "Silent clip, rotated 90°, no audio", 480, 270, 3.0, audio=False,
           rotate=90),
)
NOT_A_VIDEO = "not-a-video.png"


def make_samples(directory: Path) -> list[tuple[Path, str]]:
    """Write the sample clips (once) and a PNG that is not a video; (path, title) pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for s in SAMPLES:
        path = directory / s.name
        if not path.exists():
            make_clip(path, s.width, s.height, s.seconds, audio=s.audio, rotate=s.rotate)
        made.append((path, s.title))
    png = directory / NOT_A_VIDEO
    if not png.exists():
        from PIL import Image

        Image.new("RGB", (64, 48), (200, 40, 40)).save(png)
    made.append((png, "A picture, not a video"))
    return made


def _row(title: str, video: Video | None, refused: str | None) -> tuple[str, ...]:
    """One summary line: id, title, status, duration, size, renditions, time to ready,
    reason."""
    if video is None:
        return ("", title, "refused" if refused else "timed out", "", "", "", "",
                refused or "")
    meta = video.metadata
    took = (f"{video.finished_at - video.uploaded_at:.1f} s"
            if video.finished_at is not None else "")
    return (video.video_id, title, video.status,
            f"{meta.duration_s:.1f} s" if meta else "",
            f"{meta.width}x{meta.height}" if meta else "",
            ", ".join(r.name for r in video.renditions), took, video.reason or "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="millstream-video demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-serve", action="store_true",
                        help="stop once every video is processed instead of serving the site")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the videos")
    parser.add_argument("--port", type=int, default=int(os.environ.get("VIDEOSITE_PORT", "0")),
                        help="port of the web site (default: 8000 if free, else any)")
    args = parser.parse_args(argv)
    console = Console()
    config = millstream.load_config()
    token = os.environ.get("VIDEOSITE_API_TOKEN") or "demo-token"
    console.print(f"[bold]millstream video site demo[/] — streams {config.streams}, "
                  f"data under {config.home}")
    with console.status("generating sample clips with PyAV..."):
        samples = make_samples(config.home / "demo-clips")
    with InProcessSite(token=token, port=args.port) as site:
        return _run(console, site, samples, args.timeout, serve=not args.no_serve)


def _run(console: Console, site: InProcessSite, samples: list[tuple[Path, str]],
         timeout: float, *, serve: bool) -> int:
    started = time.monotonic()
    uploaded: list[tuple[str, str]] = []  # (id, title)
    refused: dict[str, str] = {}  # title -> why
    for path, title in samples:
        try:
            uploaded.append((site.upload(path, title), title))
        except UploadRefused as refusal:
            refused[title] = f"{refusal.status}: {refusal.reason}"
        except UploadFailed as failure:
            refused[title] = str(failure)
    console.print(f"uploaded {len(uploaded)} of {len(samples)} files through the HTTP API "
                  f"at {site.url}")
    for title, why in refused.items():
        console.print(f"  refused at upload ({why}): {title}")

    with Progress(TextColumn("{task.description:<44}"), BarColumn(),
                  TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
                  console=console) as bars:
        tasks = {vid: bars.add_task(title[:44], total=3, state="queued")
                 for vid, title in uploaded}

        def show(video: Video) -> None:
            done = 3 if video.status in FINISHED else min(len(video.stages), 3)
            bars.update(tasks[video.video_id], completed=done, state=video.status)

        finished = site.wait(tasks, timeout, on_change=show)
    elapsed = time.monotonic() - started

    summary = Table(title=f"{len(finished)} videos processed in {elapsed:.1f} s")
    summary.add_column("id", no_wrap=True)
    summary.add_column("video", max_width=30, overflow="ellipsis", no_wrap=True)
    for column in ("status", "duration", "size", "renditions", "time to ready"):
        summary.add_column(column, no_wrap=True)
    summary.add_column("reason", overflow="fold")
    for vid, title in uploaded:
        summary.add_row(*_row(title, finished.get(vid), None))
    for title, why in refused.items():
        summary.add_row(*_row(title, None, why))
    console.print(summary)
    for error in site.errors:
        console.print(f"[red]service error:[/] {error}")
    for name, stats in site.statistics().items():
        console.print(f"  {name:<10} {stats.records_in:>4} in  {stats.records_out:>4} out  "
                      f"p50 {stats.processing['p50_ms']:8.1f} ms  {stats.exceptions} exceptions")
    console.print(f"\n[bold]Look at:[/] {site.url}/   (API token: {site.token})")
    ok = len(finished) == len(uploaded) and not site.errors
    if serve:
        console.print("serving the site; Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
