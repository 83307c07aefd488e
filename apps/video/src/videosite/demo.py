"""The main job: the video site processing sample videos it generates, end to end.

``python -m videosite.demo`` (what ``make demo`` runs) on the embedded default, no servers:

1. generates a few sample clips with PyAV (different sizes, one portrait, one without audio),
   plus one file that is not a video, to show a refusal;
2. starts every service of ``videosite.app`` (probe, thumbnail, transcode, join, catalog,
   analytics) in this process, each in its own thread with its own consumer group;
3. serves the web site and uploads the clips through its HTTP API (``POST /api/videos``), or
   — without the web extra — submits them directly;
4. shows a progress bar per video until each is ready or failed, then a summary, and the URL
   of the gallery; it keeps serving until Ctrl-C (``--no-serve`` stops at once).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import millstream
from millstream.files import FileStore, open_files
from millstream.service import ServiceRunner
from millstream.tables import Tables, open_tables

from .app import app
from .media.samples import make_clip
from .models import Video
from .pipeline import ensure_streams, submit

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


def _free_port(preferred: int = 8000) -> int:
    """``preferred`` if it is free, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


class _Services:
    """Every service of the app, each in a thread of its own."""

    def __init__(self, streams_url: str, files: FileStore, tables: Tables) -> None:
        self.runners: list[ServiceRunner] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        for name in app.services:
            streams = millstream.open_streams(streams_url)
            runner = ServiceRunner(app, name, streams, files=files, tables=tables,
                                   metrics_interval_s=2.0)
            self.runners.append(runner)
            thread = threading.Thread(target=self._run, args=(runner, streams),
                                      name=f"service-{name}", daemon=True)
            self.threads.append(thread)

    def _run(self, runner: ServiceRunner, streams: millstream.Streams) -> None:
        try:
            runner.run()
        except Exception as exc:  # shown in the summary; the others keep running
            self.errors.append(f"{runner.spec.name}: {type(exc).__name__}: {exc}")
        finally:
            streams.close()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        for thread in self.threads:
            thread.join(30)


def _serve(files: FileStore, tables: Tables, token: str) -> tuple[str, Any] | None:
    """Start the web site in a thread; its base URL and server, or None without the web
    extra."""
    try:
        import uvicorn

        from .web import create_app
    except ImportError:
        return None
    port = int(os.environ.get("VIDEOSITE_PORT", "0")) or _free_port()
    web = create_app(files=files, tables=tables, token=token)
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, name="web", daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def _upload_http(base: str, token: str, path: Path, title: str) -> str:
    """POST one file as multipart/form-data with the standard library; the id, or
    ``refused:CODE:REASON``."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n{title}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n')
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{base}/api/videos", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}",
                 "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return str(json.loads(answer.read())["id"])
    except urllib.error.HTTPError as refused:
        try:
            detail = json.loads(refused.read()).get("detail", refused.reason)
        except ValueError:
            detail = refused.reason
        return f"refused:{refused.code}:{detail}"


def _status(tables: Tables, video_id: str) -> Video | None:
    try:
        doc = tables.table("videos").get(video_id, Video)
    except millstream.MillstreamError:
        return None
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-serve", action="store_true",
                        help="stop once every video is processed instead of serving the site")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the videos")
    args = parser.parse_args(argv)
    console = Console()
    config = millstream.load_config()
    token = os.environ.get("VIDEOSITE_API_TOKEN") or "demo-token"
    console.print(f"[bold]millstream video site demo[/] — data under {config.home}")
    with console.status("generating sample clips with PyAV..."):
        samples = make_samples(config.home / "demo-clips")
    files, tables = open_files(), open_tables()
    with millstream.open_streams() as streams:
        ensure_streams(streams)
    services = _Services(config.streams, files, tables)
    services.start()
    served = _serve(files, tables, token)
    started = time.monotonic()
    ids: list[tuple[str, str]] = []
    with millstream.open_streams() as streams:
        for path, title in samples:
            if served is not None:
                ids.append((_upload_http(served[0], token, path, title), title))
            else:
                ids.append((submit(streams, files, path, title), title))
    via = f"the HTTP API at {served[0]}" if served else "pipeline.submit (no web extra)"
    console.print(f"uploaded {len(ids)} files through {via}")

    finished: dict[str, Video] = {}
    with Progress(TextColumn("{task.description:<44}"), BarColumn(),
                  TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
                  console=console) as bars:
        tasks = {vid: bars.add_task(title[:44], total=3, state="queued")
                 for vid, title in ids if not vid.startswith("refused:")}
        for vid, title in ids:
            if vid.startswith("refused:"):
                _, code, reason = vid.split(":", 2)
                console.print(f"  refused at upload ({code}): {title} — {reason}")
        deadline = time.monotonic() + args.timeout
        while len(finished) < len(tasks) and time.monotonic() < deadline:
            for vid, task in tasks.items():
                if vid in finished:
                    continue
                video = _status(tables, vid)
                if video is None:
                    continue
                done = len(video.stages)
                bars.update(task, completed=min(done, 3), state=video.status)
                if video.status in ("ready", "failed"):
                    finished[vid] = video
                    bars.update(task, completed=3)
            time.sleep(0.3)
    elapsed = time.monotonic() - started

    summary = Table(title=f"processed in {elapsed:.1f} s")
    for column in ("video", "status", "duration", "size", "renditions", "thumbnails",
                   "reason"):
        summary.add_column(column)
    for vid, title in ids:
        video = finished.get(vid)
        if video is None:
            summary.add_row(title, "refused" if vid.startswith("refused:") else "timed out",
                            "", "", "", "", vid.split(":", 2)[-1] if ":" in vid else "")
            continue
        meta = video.metadata
        summary.add_row(
            title, video.status, f"{meta.duration_s:.1f} s" if meta else "",
            f"{meta.width}x{meta.height}" if meta else "",
            ", ".join(r.name for r in video.renditions), str(len(video.thumbnails)),
            video.reason or "")
    console.print(summary)
    for error in services.errors:
        console.print(f"[red]service error:[/] {error}")
    for runner in services.runners:
        stats = runner.statistics()
        console.print(f"  {runner.spec.name:<10} {stats.records_in:>4} in  "
                      f"{stats.records_out:>4} out  p50 {stats.processing['p50_ms']:.1f} ms  "
                      f"{stats.exceptions} exceptions")
    if served is not None:
        console.print(f"\n[bold]Look at:[/] {served[0]}/   (API token: {token})")
    ok = len(finished) == len(tasks) and not services.errors
    if served is not None and not args.no_serve:
        console.print("serving the site; Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")
    if served is not None:
        served[1].should_exit = True
    services.stop()
    files.close()
    tables.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
