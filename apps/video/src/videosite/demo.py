"""The main job: the video site processing sample videos it generates, end to end.

``millstream-video demo`` (``python -m videosite.demo``, what ``make demo`` runs) on the
configured platform — the embedded default when nothing is configured, no servers:

1. generates a few sample clips with PyAV (different sizes, one portrait, one without audio),
   plus one file that is not a video, to show a refusal;
2. starts every service of ``videosite.app`` (probe, thumbnail, transcode, join, analytics,
   view-titles, views-hourly) in this process, each in its own thread with its own consumer
   group, and the web site (``InProcessSite``);
3. uploads the clips through the HTTP API (``POST /api/videos``);
4. shows a progress bar per video until each is ready or failed, then a summary (title, id,
   status, length, size, renditions, time to ready; the reasons of failures below it) that
   fits an 80-column terminal;
5. plays the ready videos through the HTTP API as the player does (``POST /api/views``:
   4 views of the first, 3 of the next ...), waits until the view windows count them and
   shows "Trending now" as the gallery has it; then the URL of the gallery and, beside it,
   that of the millstream console, which it serves in this process too (on 8765 if free:
   the services' topology, rates, lag and exceptions, live). It keeps serving both until
   Ctrl-C (``--no-serve`` stops at once), and meanwhile an audience goes on playing the
   ready videos, one every few seconds, so that the console shows the services at work
   (``--no-audience``: none).
"""

from __future__ import annotations

import argparse
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import millstream

from ._console import CONSOLE_PORT, open_console
from ._viewers import AUDIENCE_EVERY_S, keep_watching, wait_counted, watch
from .client import UploadFailed, UploadRefused
from .inprocess import FINISHED, InProcessSite, free_port
from .media.samples import make_clip
from .models import Video
from .trending import Trending

__all__ = ["SAMPLES", "SUMMARY_COLUMNS", "TRENDING_TIMEOUT_S", "main", "make_samples",
           "summary", "trending_table"]

#: how long the demo waits for the view windows to count the views it sent
TRENDING_TIMEOUT_S = 60.0


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


#: the summary's columns: (header, right-aligned). Units are in the headers and the id goes
#: under the title, so an 80-column terminal shows every header and value in full and
#: titles of up to 28 characters
SUMMARY_COLUMNS = (("video / id", False), ("status", False), ("length s", True),
                   ("size", False), ("renditions", False), ("ready in s", True))
_MIN_TITLE = 12


def _row(title: str, video: Video | None, refused: str | None) -> tuple[list[str], str]:
    """One summary row (the cells of ``SUMMARY_COLUMNS``) and the reason it failed, if so."""
    if video is None:
        return ([title, "refused" if refused else "timed out", "", "", "", ""], refused or "")
    meta = video.metadata
    took = (f"{video.finished_at - video.uploaded_at:.1f}"
            if video.finished_at is not None else "")
    return ([f"{title}\n{video.video_id}", video.status,
             f"{meta.duration_s:.1f}" if meta else "",
             f"{meta.width}x{meta.height}" if meta else "",
             " ".join(r.name for r in video.renditions), took], video.reason or "")


def summary(rows: list[tuple[list[str], str]], elapsed: float, processed: int,
            width: int) -> Group:
    """The table shown when the videos are done, for a terminal ``width`` columns wide: one
    row per upload, the titles cut to fit (never a header or a value), each failure's reason
    in full on a line of its own below the table."""
    table = Table(title=f"{processed} videos processed in {elapsed:.1f} s", box=box.SIMPLE_HEAD,
                  title_justify="left", pad_edge=False, show_edge=False, collapse_padding=True)
    widths = [max([len(header), *(len(line) for cells, _ in rows
                                  for line in cells[i].splitlines())])
              for i, (header, _) in enumerate(SUMMARY_COLUMNS)]
    gaps = 2 * (len(widths) - 1)
    widths[0] = max(min(widths[0], width - gaps - sum(widths[1:])), _MIN_TITLE)
    for (header, right), size in zip(SUMMARY_COLUMNS, widths, strict=True):
        table.add_column(header, justify="right" if right else "left", width=size,
                         no_wrap=True, overflow="ellipsis")
    reasons: list[Text] = []
    for cells, reason in rows:
        title, _, video_id = cells[0].partition("\n")
        video = Text(title)  # Text, not markup: a title is shown as it is
        if video_id:
            video.append("\n" + video_id, style="dim")
        table.add_row(video, *map(Text, cells[1:]))
        if reason:
            reasons.append(Text(f"{title}: {reason}", overflow="fold"))
    return Group(table, *reasons)


def trending_table(found: list[Trending], titles: dict[str, str]) -> Table:
    """The "Trending now" table: rank, title (the window row's, else ``titles``), views."""
    table = Table(title="Trending now (views in the last hour)", box=box.SIMPLE_HEAD,
                  title_justify="left", pad_edge=False, show_edge=False)
    table.add_column("#", justify="right")
    table.add_column("video")
    table.add_column("views", justify="right")
    for rank, t in enumerate(found, 1):
        table.add_row(str(rank), Text(t.title or titles.get(t.video_id, t.video_id)),
                      str(t.views))
    return table


def _trending(console: Console, site: InProcessSite, ready: list[Video]) -> bool:
    """Play the ready videos through the site, wait for the windows to count them, show
    "Trending now"; whether it counts exactly the views sent."""
    assert site.url is not None
    with console.status("playing the videos through the HTTP API (POST /api/views)..."):
        sent = watch(site.url, ready)
        found = wait_counted(site.tables, sent, TRENDING_TIMEOUT_S)
    console.print(f"\nplayed the ready videos {sum(sent.values())} times through the HTTP API "
                  "(view events to POST /api/views)")
    console.print(trending_table(found, {v.video_id: v.title for v in ready}))
    counted = {t.video_id: t.views for t in found} == sent
    if not counted:
        console.print(f"[red]the view windows did not count the views sent within "
                      f"{TRENDING_TIMEOUT_S:.0f} s[/]")
    return counted


def main(argv: list[str] | None = None, *, stop: threading.Event | None = None) -> int:
    """The demo; its exit status (0: every video processed and every view counted).
    Serving ends at Ctrl-C, or when ``stop`` is set."""
    parser = argparse.ArgumentParser(prog="millstream-video demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-serve", action="store_true",
                        help="stop once every video is processed instead of serving the site")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the videos")
    parser.add_argument("--no-audience", action="store_true",
                        help="while serving, play no videos (by default one every "
                             f"{AUDIENCE_EVERY_S:g} s, so the console shows the services "
                             "at work)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("VIDEOSITE_PORT", "0")),
                        help="port of the web site (default: 8000 if free, else any)")
    parser.add_argument("--console-port", type=int,
                        default=int(os.environ.get("MILLSTREAM_CONSOLE_PORT", "0")),
                        help=f"port of the millstream console (default: {CONSOLE_PORT} if "
                             "free, else any)")
    args = parser.parse_args(argv)
    console = Console()
    config = millstream.load_config()
    token = os.environ.get("VIDEOSITE_API_TOKEN") or "demo-token"
    console.print(f"[bold]millstream video site demo[/] — streams {config.streams}, "
                  f"data under {config.home}")
    with console.status("generating sample clips with PyAV..."):
        samples = make_samples(config.home / "demo-clips")
    console_port = args.console_port or free_port(CONSOLE_PORT)
    console_url = f"http://127.0.0.1:{console_port}/"
    # the console's actions (reset, replay, restore, promote) need a token of its own: one
    # made for this run (or MILLSTREAM_CONSOLE_TOKEN), printed with the console's URL — never
    # a well-known one
    console_token = os.environ.get("MILLSTREAM_CONSOLE_TOKEN") or secrets.token_hex(12)
    with InProcessSite(token=token, port=args.port, console_url=console_url) as site, \
            open_console(config.streams, port=console_port, token=console_token) as served:
        return _run(console, site, samples, args.timeout, console_url=served.url,
                    console_token=console_token,
                    serve=None if args.no_serve else (stop or threading.Event()),
                    audience=not args.no_audience)


def _run(console: Console, site: InProcessSite, samples: list[tuple[Path, str]],
         timeout: float, *, console_url: str, console_token: str,
         serve: threading.Event | None,
         audience: bool = True) -> int:
    """Upload, follow, summarise and play; then, with ``serve``, serve until Ctrl-C or
    until ``serve`` is set, an ``audience`` playing the ready videos meanwhile."""
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

    rows = [_row(title, finished.get(vid), None) for vid, title in uploaded]
    rows += [_row(title, None, why) for title, why in refused.items()]
    console.print(summary(rows, elapsed, len(finished), console.width))
    ready = [finished[vid] for vid, _ in uploaded
             if vid in finished and finished[vid].status == "ready"]
    counted = _trending(console, site, ready)
    for error in site.errors:
        console.print(f"[red]service error:[/] {error}")
    for name, stats in site.statistics().items():
        console.print(f"  {name:<12} {stats.records_in:>4} in  {stats.records_out:>4} out  "
                      f"p50 {stats.processing['p50_ms']:8.1f} ms  {stats.exceptions} exceptions")
    console.print(f"\n[bold]The site:[/]    {site.url}/   (API token: {site.token})")
    console.print(f"[bold]The console:[/] {console_url}/   (the services, live)")
    console.print(f"             its token (to act): {console_token}")
    ok = len(finished) == len(uploaded) and not site.errors and counted
    if serve is not None:
        _serve(console, site, ready if audience else [], serve)
    return 0 if ok else 1


def _serve(console: Console, site: InProcessSite, ready: list[Video],
           stop: threading.Event) -> None:
    """Serve until Ctrl-C or ``stop``; an audience plays ``ready`` meanwhile."""
    assert site.url is not None
    quiet = threading.Event()
    audience = keep_watching(site.url, ready, quiet) if ready else None
    console.print("serving the site and the console; Ctrl-C to stop")
    if ready:
        console.print(f"meanwhile an audience plays a ready video every {AUDIENCE_EVERY_S:g} s "
                      "(--no-audience: none)")
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    console.print("stopping")
    quiet.set()
    if audience is not None:
        audience.join(30)


if __name__ == "__main__":
    raise SystemExit(main())
