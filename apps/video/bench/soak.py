"""Memory soak of the video site: uploads, page views and ranged media reads against the site
running in a process of its own, with the server's resident memory (VmRSS) sampled.

The site runs as ``millstream-video serve`` does (``InProcessSite``: every service in a
thread, and the web server built by ``build_server``) in a fresh temporary
``MILLSTREAM_HOME``; ``--web-only`` runs the web server without the services. The load comes
in rounds, each the same: ``--uploads`` generated clips (PyAV, 1 s, 160x120 to 320x240 times
``--scale``; ``--padding-mb`` makes each file bigger with an MP4 ``free`` box), sent
``--clients`` at a time, then ``--views`` requests spread over ``--clients`` keep-alive
connections (the gallery, video pages, the status API, and a ranged read of a rendition);
with the services, a round waits until every upload of it is ready or failed. The server's
RSS is read from ``/proc/<pid>/status`` every 0.2 s, its CPU time from ``/proc/<pid>/stat``.

Printed: the machine and its load (``/proc/loadavg``), the server's CPU seconds for the
load, RSS after start, after each round, the peak, after ``--settle`` idle seconds (and the
anonymous part of it), and then after the server ran ``malloc_trim(0)`` (SIGUSR2: the
difference is what malloc held free); growth from the start and from the first round's end
(a leak grows with every round; bounded memory levels off). ``--json`` prints one JSON line
instead. ``--tracemalloc`` makes the server trace Python allocations and print the 15 biggest
growths between the end of round 1 and the end (it is slow). ``--env NAME=VALUE`` sets a
variable for the server only (e.g. ``MALLOC_ARENA_MAX=2``, to compare). To compare with
other code, put its ``apps/video/src`` first on ``PYTHONPATH``.

Usage: .venv/bin/python apps/video/bench/soak.py [--rounds 4] [--uploads 8] [--views 200]
    [--clients 4] [--settle 7] [--scale 1] [--padding-mb 0] [--web-only] [--tracemalloc]
    [--json] [--env NAME=VALUE]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import http.client
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
TOKEN = "soak-token"
#: (width, height) of the clips uploaded, in turn
SIZES = [(160, 120), (320, 240), (240, 160), (320, 180)]


# -- the server process ---------------------------------------------------------------------


def serve(port: int, web_only: bool, trace: bool, report: Path) -> None:
    """Run the site until SIGTERM; with ``trace``, SIGUSR1 takes a tracemalloc snapshot and
    the end prints the growth from the first snapshot to the last."""
    import tracemalloc

    from videosite.inprocess import InProcessSite

    if trace:
        tracemalloc.start(8)
    snapshots: list[tracemalloc.Snapshot] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if trace:
        signal.signal(signal.SIGUSR1, lambda *_: snapshots.append(tracemalloc.take_snapshot()))
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    signal.signal(signal.SIGUSR2, lambda *_: libc.malloc_trim(0))
    with InProcessSite(token=TOKEN, port=port, services=() if web_only else None,
                       poll_timeout_s=0.05):
        while not stop.wait(0.2):
            pass
    if trace and len(snapshots) >= 2:
        stats = snapshots[-1].compare_to(snapshots[0], "traceback")
        lines = []
        for stat in stats[:15]:
            lines.append(f"{stat.size_diff / 1e6:+8.2f} MB {stat.count_diff:+7d} blocks")
            lines.extend(f"      {frame}" for frame in stat.traceback.format()[-8:])
        report.write_text("\n".join(lines))


# -- the load --------------------------------------------------------------------------------


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident set size (or another ``field`` of /proc/<pid>/status, e.g.
    ``RssAnon``) in MB (psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Samples a process's RSS every ``interval`` seconds; ``peak`` and ``now()``."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()

    def now(self) -> float:
        value = rss_mb(self.pid)
        self.peak = max(self.peak, value)
        return value

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self.interval):
            try:
                self.samples.append((time.monotonic() - start, self.now()))
            except (OSError, RuntimeError):
                return

    def stop(self) -> None:
        self._stop.set()


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes]:
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def views(port: int, count: int, ids: list[str], media: dict[str, str], seed: int) -> int:
    """``count`` requests on one keep-alive connection; the number answered 2xx."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    ok = 0
    try:
        for n in range(count):
            video = rng.choice(ids) if ids else "0" * 16
            kind = n % 4
            if kind == 0:
                status, _ = _get(conn, "/")
            elif kind == 1:
                status, _ = _get(conn, f"/videos/{video}")
            elif kind == 2:
                status, _ = _get(conn, f"/api/videos/{video}")
            elif video in media:
                start = rng.randrange(0, 4096)
                status, _ = _get(conn, media[video], {"Range": f"bytes={start}-{start + 65535}"})
            else:
                status, _ = _get(conn, "/upload")
            ok += 200 <= status < 300
    finally:
        conn.close()
    return ok


def _renditions(port: int, ids: list[str]) -> dict[str, str]:
    """video id -> the URL of its first rendition, for the ready ones."""
    found: dict[str, str] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for video_id in ids:
            status, body = _get(conn, f"/api/videos/{video_id}")
            doc = json.loads(body) if status == 200 else {}
            if doc.get("renditions"):
                found[video_id] = doc["renditions"][0]["url"]
    finally:
        conn.close()
    return found


def _wait_finished(port: int, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = set(ids)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        while waiting and time.monotonic() < deadline:
            for video_id in sorted(waiting):
                status, body = _get(conn, f"/api/videos/{video_id}")
                if status == 200 and json.loads(body)["status"] in ("ready", "failed"):
                    waiting.discard(video_id)
            time.sleep(0.2)
    finally:
        conn.close()
    if waiting:
        raise RuntimeError(f"{len(waiting)} uploads not finished after {timeout:.0f} s")


def _in_threads(work: Callable[[T], R], items: list[T], at_once: int) -> list[R]:
    """``work`` on every item, ``at_once`` threads at a time; the results in order."""
    results: list[R | None] = [None] * len(items)

    def one(n: int) -> None:
        results[n] = work(items[n])

    for first in range(0, len(items), at_once):
        threads = [threading.Thread(target=one, args=(n,))
                   for n in range(first, min(first + at_once, len(items)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    done = [r for r in results if r is not None]
    if len(done) != len(items):
        raise RuntimeError(f"{len(items) - len(done)} of {len(items)} calls failed")
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the site exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the site did not start")


def soak(args: argparse.Namespace) -> dict[str, Any]:
    from videosite.client import upload
    from videosite.media.samples import make_clip

    work = Path(tempfile.mkdtemp(prefix="videosite-soak-"))
    clips = []
    scale = args.scale
    for n, (width, height) in enumerate(SIZES):
        path = work / f"clip{n}.mp4"
        make_clip(path, width * scale, height * scale, 1.0)
        if args.padding_mb:  # an MP4 "free" box: a bigger upload, the same video
            size = int(args.padding_mb * 1e6)
            with path.open("ab") as f:
                f.write((size + 8).to_bytes(4, "big") + b"free" + bytes(size))
        clips.append(path)
    port = _free_port()
    report = work / "tracemalloc.txt"
    env = {**os.environ, "MILLSTREAM_HOME": str(work / "home"), "VIDEOSITE_API_TOKEN": TOKEN,
           **dict(item.split("=", 1) for item in args.env)}
    for name in ("MILLSTREAM_STREAMS", "MILLSTREAM_FILES", "MILLSTREAM_TABLES"):
        env.pop(name, None)
    command = [sys.executable, __file__, "--serve", str(port), "--report", str(report)]
    command += ["--web-only"] * args.web_only + ["--tracemalloc"] * args.tracemalloc
    proc = subprocess.Popen(command, env=env, cwd=work)
    result: dict[str, Any] = {"rounds": [], "uploads": 0, "views_ok": 0, "views": 0}
    try:
        _wait_up(port, proc)
        time.sleep(1.0)
        sampler = Sampler(proc.pid)
        result["start_mb"] = sampler.now()
        sampler.start()
        ids: list[str] = []
        base = f"http://127.0.0.1:{port}"
        started, cpu_started = time.monotonic(), cpu_s(proc.pid)
        for round_ in range(args.rounds):
            names = [(clips[(round_ * args.uploads + n) % len(clips)], f"soak {round_}.{n}")
                     for n in range(args.uploads)]
            fresh = _in_threads(lambda item: upload(base, TOKEN, *item), names, args.clients)
            result["uploads"] += len(fresh)
            if not args.web_only:
                _wait_finished(port, fresh, timeout=600)
            ids += fresh
            media = _renditions(port, ids)
            share = args.views // args.clients
            counts = _in_threads(partial(views, port, share, ids, media),
                                 list(range(args.clients)), args.clients)
            result["views"] += share * args.clients
            result["views_ok"] += sum(counts)
            if args.tracemalloc and round_ == 0:
                os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(0.5)
            result["rounds"].append(round(sampler.now(), 1))
        result["load_s"] = round(time.monotonic() - started, 1)
        result["server_cpu_s"] = round(cpu_s(proc.pid) - cpu_started, 1)
        time.sleep(args.settle)
        result["settled_mb"] = round(sampler.now(), 1)
        result["settled_anon_mb"] = round(rss_mb(proc.pid, "RssAnon"), 1)
        os.kill(proc.pid, signal.SIGUSR2)  # how much of it malloc held, free
        time.sleep(1)
        result["trimmed_mb"] = round(sampler.now(), 1)
        if args.tracemalloc:
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(2)
        sampler.stop()
        result["peak_mb"] = round(sampler.peak, 1)
        result["start_mb"] = round(result["start_mb"], 1)
        result["growth_mb"] = round(result["settled_mb"] - result["start_mb"], 1)
        result["growth_after_round_1_mb"] = round(result["settled_mb"] - result["rounds"][0], 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if report.exists():
        result["tracemalloc"] = report.read_text()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--uploads", type=int, default=8, help="uploads per round")
    parser.add_argument("--views", type=int, default=200, help="requests per round")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--settle", type=float, default=7.0)
    parser.add_argument("--scale", type=int, default=1,
                        help="multiply the clips' width and height by this")
    parser.add_argument("--padding-mb", type=float, default=0.0,
                        help="make each upload this much bigger (an MP4 free box)")
    parser.add_argument("--web-only", action="store_true")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.web_only, args.tracemalloc, args.report)
        return 0
    result = soak(args)
    result["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load average {' '.join(result['loadavg'])}")
    print(f"{'web only' if args.web_only else 'site with services'}: {args.rounds} rounds of "
          f"{args.uploads} uploads and {args.views} requests on {args.clients} connections "
          f"({result['views_ok']}/{result['views']} answered 2xx) in {result['load_s']} s, "
          f"{result['server_cpu_s']} s of the server's CPU; "
          f"server env {' '.join(args.env) or '(default)'}")
    print(f"RSS: start {result['start_mb']} MB, after each round "
          f"{', '.join(str(r) for r in result['rounds'])} MB, peak {result['peak_mb']} MB, "
          f"after {args.settle:g} s idle {result['settled_mb']} MB (anonymous "
          f"{result['settled_anon_mb']} MB), then after malloc_trim(0) {result['trimmed_mb']} MB")
    print(f"growth: {result['growth_mb']:+} MB from the start, "
          f"{result['growth_after_round_1_mb']:+} MB after the first round")
    if "tracemalloc" in result:
        print("tracemalloc, the biggest growths from the end of round 1 to the end:")
        print(result["tracemalloc"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
