"""Benchmark of what the video site costs when nothing happens: its CPU use, started and idle.

Run with ``.venv/bin/python bench/idle.py [--seconds 60] [--warmup 15] [--mode serve|up|both]``
or ``bench/idle.py --mode latency [--rounds 6]``.

Both modes start the site on the embedded default (no servers) in a fresh temporary
``MILLSTREAM_HOME``, wait ``--warmup`` seconds (every service joins its group and its first
metrics go out), then read CPU time from ``/proc`` at the start and the end of ``--seconds``
(at least 60 s for the figures in the docs):

* **serve** — what ``make demo`` and ``millstream-video serve`` run: the services of
  ``videosite.app`` in threads of one process, with the web server (``InProcessSite``), run
  here in this process so that each thread's CPU (``/proc/self/task/<id>/stat``) and its
  voluntary context switches (each one a sleep that ended: a wake-up) are attributed to the
  thread's name: ``millstream-<service>-<instance>`` (the runner), ``millstream-heartbeat``
  (one per group member), ``web``, the producers' writer threads, the allocator's trimmer;
* **up** — production's shape: ``millstream up videosite.app:app`` (a supervisor and one
  process per service) and ``millstream-video web`` (the web server alone), each process's
  CPU and wake-ups summed over its threads.

**latency** (``--mode latency``) — workload 5 of ``bench/streams.py`` (end-to-end latency
between a producer process and a consumer process at a paced 10,000 records/s), on the
embedded log woken by its writers (``wakeup=auto``, the default) and polling as before
(``wakeup=poll``), beside its raw-file baseline, in rotating order over ``--rounds``; the
medians of each round's p50 and p99 and of their ratios to the same round's baseline.

The line to compare with the target is the total in cores (CPU seconds / wall seconds) of the
services the app declares (seven since issue 14: probe, thumbnail, transcode, join,
analytics, view-titles, views-hourly; issue 13's target, for the five before the view
services: ≤ 0.02 of a core together), printed with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
ENV_DROP = ("MILLSTREAM_STREAMS", "MILLSTREAM_FILES", "MILLSTREAM_TABLES", "MILLSTREAM_CONFIG",
            "VIDEOSITE_ANALYTICS_DB")


def task_usage(pid: int | str, tid: int | str) -> tuple[float, int]:
    """(CPU seconds, voluntary context switches) of one thread; (0, 0) once it is gone."""
    base = Path(f"/proc/{pid}/task/{tid}")
    try:
        stat = (base / "stat").read_text()
        status = (base / "status").read_text()
    except OSError:
        return 0.0, 0
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    switches = next(int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("voluntary_ctxt_switches"))
    return cpu, switches


def process_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, voluntary context switches) summed over a process's live threads."""
    cpu, switches = 0.0, 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0, 0
    for tid in tids:
        c, s = task_usage(pid, tid)
        cpu, switches = cpu + c, switches + s
    return cpu, switches


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(title: str, before: dict[str, tuple[float, int]],
           after: dict[str, tuple[float, int]], wall: float, services: set[str]) -> float:
    """Print one line per name and the services' total; that total in cores."""
    print(f"\n  {title}: {wall:.1f} s idle, {load()}")
    print(f"    {'':<34} {'CPU s':>7} {'cores':>7} {'wake-ups/s':>11}")
    total = {"services": [0.0, 0.0], "everything": [0.0, 0.0]}
    for name in sorted(after):
        cpu = after[name][0] - before.get(name, (0.0, 0))[0]
        wakes = (after[name][1] - before.get(name, (0.0, 0))[1]) / wall
        print(f"    {name:<34} {cpu:7.2f} {cpu / wall:7.4f} {wakes:11.1f}")
        for key in ("everything", *(("services",) if name in services else ())):
            total[key][0] += cpu
            total[key][1] += wakes
    for key, (cpu, wakes) in total.items():
        print(f"    {'total: ' + key:<34} {cpu:7.2f} {cpu / wall:7.4f} {wakes:11.1f}")
    return total["services"][0] / wall


def measure_serve(home: Path, warmup: float, seconds: float) -> float:
    """The site in this process (``InProcessSite``, as ``millstream-video serve``)."""
    os.environ["MILLSTREAM_HOME"] = str(home)
    from videosite.app import app
    from videosite.inprocess import InProcessSite

    site = InProcessSite(token="bench", port=0).start()
    try:
        time.sleep(warmup)

        def sample() -> dict[str, tuple[float, int]]:
            usage: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
            for thread in threading.enumerate():
                if thread.native_id is None:
                    continue
                cpu, switches = task_usage("self", thread.native_id)
                name = thread.name
                if name.startswith("Thread-") or name.startswith("asyncio_"):
                    name = "(unnamed threads)"
                usage[name][0] += cpu
                usage[name][1] += switches
            known = {t.native_id for t in threading.enumerate()}
            rest = [0.0, 0]
            for tid in os.listdir("/proc/self/task"):
                if int(tid) not in known:  # threads Python did not start (C libraries')
                    c, s = task_usage("self", tid)
                    rest[0] += c
                    rest[1] += s
            usage["(native threads)"] = rest
            return {k: (v[0], int(v[1])) for k, v in usage.items()}

        before, t0 = sample(), time.monotonic()
        time.sleep(seconds)
        after, wall = sample(), time.monotonic() - t0
        services = {f"millstream-{name}-0" for name in app.services} | {"millstream-heartbeat"}
        return report("serve (InProcessSite: the app's services in threads + web server)",
                      before, after, wall, services)
    finally:
        site.stop()


def measure_up(home: Path, warmup: float, seconds: float) -> float:
    """``millstream up videosite.app:app`` and ``millstream-video web`` as processes."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    env.update(MILLSTREAM_HOME=str(home), VIDEOSITE_API_TOKEN="bench")
    up = subprocess.Popen([sys.executable, "-m", "millstream", "up", "videosite.app:app"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
    web = subprocess.Popen([sys.executable, "-m", "videosite.cli", "web", "--port", "0"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        time.sleep(warmup)
        names = {up.pid: "supervisor (millstream up)", web.pid: "web (millstream-video web)"}
        for child in children_of(up.pid):
            try:
                args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            service = args[args.index(b"videosite.app:app") + 1].decode()
            names[child] = f"service {service}"

        def sample() -> dict[str, tuple[float, int]]:
            return {name: process_usage(pid) for pid, name in names.items()}

        before, t0 = sample(), time.monotonic()
        time.sleep(seconds)
        after, wall = sample(), time.monotonic() - t0
        services = {n for n in names.values() if n.startswith("service ")}
        from videosite.app import app

        if len(services) != len(app.services):
            print(f"    warning: {len(services)} service processes found, not "
                  f"{len(app.services)}")
        return report("up (millstream up: one process per service; web server alone)",
                      before, after, wall, services)
    finally:
        for proc in (up, web):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in (up, web):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def measure_latency(rounds: int, seconds: float) -> None:
    """Workload 5 with ``wakeup=auto`` and ``wakeup=poll`` beside its baseline."""
    import dataclasses
    import statistics

    import millstream

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import streams as streams_bench  # bench/streams.py, next to this file

    params = dataclasses.replace(streams_bench.FULL, latency_seconds=seconds)
    sides = ("raw", "auto", "poll")
    got: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    print(f"\n  latency: workload 5 of bench/streams.py, {params.latency_rate:,} records/s, "
          f"{params.latency_warmup_s:g} s warm-up + {seconds:g} s, {rounds} rounds, {load()}")
    for r in range(rounds):
        for side in sides[r % 3:] + sides[:r % 3]:
            with tempfile.TemporaryDirectory(prefix="millstream-bench-latency-") as tmp:
                if side == "raw":
                    lat = streams_bench.run_pair("raw", str(Path(tmp) / "latency"), "", params)
                else:
                    url = f"local:{tmp}/log?wakeup={side}"
                    with millstream.open_streams(url) as handle:
                        handle.admin().create_stream("latency")
                    lat = streams_bench.run_pair("millstream", url, "latency", params)
            got[side].append(lat)
            print(f"    round {r + 1} {side:<5} p50 {lat['p50']:7.2f} ms  p99 {lat['p99']:8.2f} ms"
                  f"  ({load()})", flush=True)
    for side in ("auto", "poll"):
        parts = []
        for key in ("p50", "p99"):
            value = statistics.median(x[key] for x in got[side])
            ratio = statistics.median(x[key] / b[key]
                                      for x, b in zip(got[side], got["raw"], strict=True))
            parts.append(f"{key} {value:.2f} ms (median ratio to the round's baseline "
                         f"{ratio:.2f}x)")
        print(f"  wakeup={side}: " + ", ".join(parts))
    base = {key: statistics.median(x[key] for x in got["raw"]) for key in ("p50", "p99")}
    print(f"  baseline (raw file): p50 {base['p50']:.2f} ms, p99 {base['p99']:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle time measured")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--mode", choices=("serve", "up", "both", "latency"), default="both")
    parser.add_argument("--rounds", type=int, default=6, help="latency rounds (--mode latency)")
    args = parser.parse_args(argv)
    if args.mode == "latency":
        measure_latency(args.rounds, 3.0)
        return 0
    for name in ENV_DROP:
        os.environ.pop(name, None)
    print(f"idle benchmark: {os.cpu_count()} CPUs, {load()}; Python "
          f"{sys.version.split()[0]}; target: the app's services together ≤ 0.02 of a core")
    results = {}
    for mode in ("serve", "up") if args.mode == "both" else (args.mode,):
        with tempfile.TemporaryDirectory(prefix=f"millstream-bench-idle-{mode}-") as tmp:
            run = measure_serve if mode == "serve" else measure_up
            results[mode] = run(Path(tmp), args.warmup, args.seconds)
    for mode, cores in results.items():
        print(f"  {mode}: the app's services use {cores:.4f} of a core "
              f"({'PASS' if cores <= 0.02 else 'MISS'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
