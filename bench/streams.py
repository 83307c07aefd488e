"""Benchmark of the embedded stream log (``local:``) against raw file appends.

Run with ``make bench`` or ``.venv/bin/python bench/streams.py [--quick] [--json PATH]``.

Every workload runs on ``millstream.open_streams(f"local:{tmpdir}")`` with the default
durability (``synchronous=FULL``: every commit fsyncs the WAL) and is compared with a baseline
measured in the same run: plain Python appending records framed as ``length + CRC32 +
payload`` to a file, one ``write`` + ``os.fsync`` per 1,000-record batch; reading the file back
and verifying every record's CRC. The throughput workloads run ``--repeat`` rounds, each round
measuring the baseline and then millstream back to back so that both see the same machine
noise; the figures are medians over the rounds and the ratio is millstream / baseline.

Workloads:
  1. produce, one process: ``send_batch`` of 1,000 records then one ``flush()``; 100 B and 10 KB.
  2. produce, two processes at once (100 B, batches of 1,000): aggregate records/s.
  3. produce one record at a time with ``send()``, one ``flush()`` at the end.
  4. consume, one process, standalone consumer, ``poll(max_records=10_000)`` until every
     record has been returned; 100 B and 10 KB (the streams written by workload 1).
  5. end-to-end latency between two processes at a paced 10,000 records/s: a producer process
     ``send()``s one record at a time carrying ``time.time_ns()``; a consumer process (group)
     polls and records receive - send. The baseline does the same over a raw file: a writer
     thread appends and fsyncs whatever is pending (group commit), publishes the durable length
     in shared memory, and the reader tails the file with the same adaptive sleep as the
     consumer (0.2 ms growing x1.5 to 1 ms).

When a Kafka broker is reachable (``--kafka host:port`` or ``MILLSTREAM_KAFKA_BOOTSTRAP``),
workloads 6-8 run the Kafka backend (``kafka://``) against confluent-kafka used directly with
the same settings (``bench/kafka.py``): 6. produce with ``send_batch``, 7. produce with
``send()``, 8. consume; the ratio is millstream / direct and the target is ≥ 0.9. Without a
broker they are skipped, with the reason printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import millstream

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kafka as kafka_bench  # bench/kafka.py, next to this file

BATCH = 1_000  # records per send_batch / per baseline write + fsync
SMALL = 100  # bytes
LARGE = 10 * 1024  # bytes
FRAME = struct.Struct("<II")  # length, CRC32 of the payload
STAMP = struct.Struct("<qq")  # record index, send time (time.time_ns())
READ_CHUNK = 1 << 20
CTX = mp.get_context("spawn")

TARGETS = {
    "produce_100": 1_000_000,
    "send_one": 100_000,
    "consume_100": 1_500_000,
    "latency_p50_ms": 2.0,
    "latency_p99_ms": 10.0,
    "kafka_ratio_vs_direct": 0.9,
    "large_ratio_vs_raw": 0.8,  # 10 KB produce and consume vs the raw file (issue 13 point 4)
}


@dataclass
class Params:
    records_small: int  # 100 B records per round, workloads 1, 2 (total) and 4
    records_large: int  # 10 KB records per round, workloads 1 and 4
    records_send: int  # records sent one at a time, workload 3
    rounds: int
    latency_rate: int  # records/s, workload 5
    latency_warmup_s: float
    latency_seconds: float


FULL = Params(records_small=1_000_000, records_large=10_000, records_send=200_000, rounds=3,
              latency_rate=10_000, latency_warmup_s=1.0, latency_seconds=5.0)
QUICK = Params(records_small=200_000, records_large=2_000, records_send=50_000, rounds=1,
               latency_rate=10_000, latency_warmup_s=0.5, latency_seconds=1.5)


@dataclass
class Result:
    """One reported figure: millstream's, the baseline's, the target and the verdict."""

    workload: str
    name: str
    unit: str
    value: float
    baseline: float | None
    target: float | None = None
    higher_is_better: bool = True
    rounds: list[float] = field(default_factory=list)
    baseline_rounds: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ratio_target: float | None = None  # a target on value / baseline instead of on value
    baseline_name: str = "baseline"

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def verdict(self) -> str:
        if self.ratio_target is not None:
            ratio = self.ratio
            return "-" if ratio is None else "PASS" if ratio >= self.ratio_target else "MISS"
        if self.target is None:
            return "-"
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "PASS" if ok else "MISS"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        out["verdict"] = self.verdict
        return out


# -- machine -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    commit = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).resolve().parent, check=False,
        ).stdout.strip() or "unknown"
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": model,
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "millstream": millstream.__version__,
        "commit": commit,
    }


def cpu_steal_ms() -> float:
    """CPU time the hypervisor took from this VM so far (``steal`` in /proc/stat), in ms."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def filesystem_of(path: Path) -> str:
    """The mount (device, type) holding ``path``, from /proc/mounts."""
    best, found = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) >= len(best):
                best, found = mnt, f"{dev} ({fstype}) on {mnt}"
    except OSError:
        pass
    return found


# -- helpers -------------------------------------------------------------------------------


def make_values(size: int, count: int = BATCH) -> list[bytes]:
    """``count`` distinct random values of ``size`` bytes (reused across batches)."""
    return [os.urandom(size) for _ in range(count)]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_xs:
        return float("nan")
    rank = max(1, min(len(sorted_xs), round(q / 100 * len(sorted_xs) + 0.5)))
    return sorted_xs[rank - 1]


def cpu_timed(fn: Any, *args: Any) -> tuple[float, float]:
    """``fn(*args)`` (which returns the seconds it measured) and the process CPU seconds
    (all threads) the call took."""
    c0 = time.process_time()
    seconds = fn(*args)
    return seconds, time.process_time() - c0


# -- baseline: raw framed appends ------------------------------------------------------------


def raw_append(path: Path, values: list[bytes], batches: int, sync_every: int = 1) -> float:
    """Append ``batches`` x ``values``, framed, one write per batch and an fsync every
    ``sync_every`` batches (0: a single fsync at the end); seconds taken."""
    pack, crc32, join = FRAME.pack, zlib.crc32, b"".join
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        t0 = time.perf_counter()
        for i in range(1, batches + 1):
            parts = []
            append = parts.append
            for v in values:
                append(pack(len(v), crc32(v)))
                append(v)
            write_all(fd, join(parts))
            if sync_every and i % sync_every == 0:
                os.fsync(fd)
        if not sync_every or batches % sync_every:
            os.fsync(fd)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def raw_read(path: Path, expected: int) -> float:
    """Read the file back in 1 MiB chunks, slice out every payload and check its CRC."""
    unpack_from, crc32, size = FRAME.unpack_from, zlib.crc32, FRAME.size
    count = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        rest = b""
        while True:
            chunk = f.read(READ_CHUNK)
            if not chunk:
                break
            data = rest + chunk if rest else chunk
            pos, end = 0, len(data)
            while pos + size <= end:
                n, crc = unpack_from(data, pos)
                stop = pos + size + n
                if stop > end:
                    break
                value = data[pos + size:stop]
                if crc32(value) != crc:
                    raise RuntimeError(f"baseline CRC mismatch at byte {pos}")
                count += 1
                pos = stop
            rest = data[pos:]
        if rest:
            raise RuntimeError("baseline file ends with a partial record")
    elapsed = time.perf_counter() - t0
    if count != expected:
        raise RuntimeError(f"baseline read {count} records, expected {expected}")
    return elapsed


# -- millstream ----------------------------------------------------------------------------


def ms_produce(streams: millstream.Streams, stream: str, values: list[bytes],
               batches: int) -> float:
    with streams.open_producer() as producer:
        t0 = time.perf_counter()
        for _ in range(batches):
            producer.send_batch(stream, values)
        producer.flush()
        return time.perf_counter() - t0


def ms_send_one(streams: millstream.Streams, stream: str, values: list[bytes],
                batches: int) -> float:
    with streams.open_producer() as producer:
        send = producer.send
        t0 = time.perf_counter()
        for _ in range(batches):
            for v in values:
                send(stream, v)
        producer.flush()
        return time.perf_counter() - t0


def ms_consume(streams: millstream.Streams, stream: str, expected: int) -> float:
    with streams.open_consumer() as consumer:
        consumer.subscribe([stream])
        got = 0
        t0 = time.perf_counter()
        while got < expected:
            got += len(consumer.poll(max_records=10_000, timeout=1.0))
        elapsed = time.perf_counter() - t0
    if got != expected:
        raise RuntimeError(f"consumed {got} records from {stream}, expected {expected}")
    return elapsed


# -- child processes -----------------------------------------------------------------------


def _producer_child(kind: str, url_or_path: str, stream: str, partition: int, size: int,
                    batches: int, ready: Any, start: Any, out: Any) -> None:
    """One of the concurrent producers of workload 2 (millstream or raw file)."""
    values = make_values(size)
    if kind == "raw":
        ready.set()
        start.wait()
        t0 = time.monotonic()
        raw_append(Path(url_or_path), values, batches)
        out.put((t0, time.monotonic()))
        return
    with millstream.open_streams(url_or_path) as streams, streams.open_producer() as producer:
        producer.send_batch(stream, values[:1], partition=partition).wait()  # connect, warm
        ready.set()
        start.wait()
        t0 = time.monotonic()
        for _ in range(batches):
            producer.send_batch(stream, values, partition=partition)
        producer.flush()
        out.put((t0, time.monotonic()))


def _latency_producer(kind: str, target: str, stream: str, rate: int, total: int,
                      ready: Any, durable: Any, out: Any) -> None:
    """Paced sender of workload 5: record ``i`` is due at ``start + i / rate``."""
    pad = b"\0" * (SMALL - STAMP.size)
    pack, now_ns, clock = STAMP.pack, time.time_ns, time.perf_counter
    period = 1.0 / rate
    if kind == "raw":
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        cond = threading.Condition()
        pending: list[bytes] = []
        done = threading.Event()

        def writer() -> None:
            nonlocal pending
            written = 0
            while True:
                with cond:
                    while not pending and not done.is_set():
                        cond.wait()
                    if not pending:
                        return
                    taken, pending = pending, []
                data = b"".join(taken)
                write_all(fd, data)
                os.fsync(fd)
                written += len(data)
                durable.value = written

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        ready.wait()
        t0 = clock()
        for i in range(total):
            due = t0 + i * period
            lag = due - clock()
            if lag > 0:
                time.sleep(lag)
            v = pack(i, now_ns()) + pad
            with cond:
                pending.append(FRAME.pack(len(v), zlib.crc32(v)) + v)
                cond.notify()
        elapsed = clock() - t0
        with cond:
            done.set()
            cond.notify()
        thread.join()
        os.close(fd)
        out.put(("producer", total / elapsed))
        return
    with millstream.open_streams(target) as streams, streams.open_producer() as producer:
        ready.wait()
        send = producer.send
        t0 = clock()
        for i in range(total):
            due = t0 + i * period
            lag = due - clock()
            if lag > 0:
                time.sleep(lag)
            send(stream, pack(i, now_ns()) + pad)
        elapsed = clock() - t0
        producer.flush()
    out.put(("producer", total / elapsed))


def _latency_consumer(kind: str, target: str, stream: str, total: int, warmup: int,
                      ready: Any, durable: Any, out: Any, deadline_s: float) -> None:
    """Receiver of workload 5: latency (ns) of every record after the warm-up ones."""
    unpack_from, now_ns = STAMP.unpack_from, time.time_ns
    latencies: list[int] = []
    got = 0
    deadline = time.monotonic() + deadline_s
    if kind == "raw":
        fd = os.open(target, os.O_RDONLY | os.O_CREAT, 0o644)
        pos, rest = 0, b""
        ready.set()
        sleep = 0.0002
        while got < total and time.monotonic() < deadline:
            end = durable.value
            if end <= pos:
                time.sleep(sleep)
                sleep = min(sleep * 1.5, 0.001)  # as LocalConsumer.poll (since ca8707d)
                continue
            sleep = 0.0002
            data = rest + os.pread(fd, end - pos, pos)
            pos = end
            received = now_ns()
            at = 0
            while at + FRAME.size <= len(data):
                n, crc = FRAME.unpack_from(data, at)
                stop = at + FRAME.size + n
                if stop > len(data):
                    break
                value = data[at + FRAME.size:stop]
                if zlib.crc32(value) != crc:
                    raise RuntimeError("baseline CRC mismatch")
                index, sent = unpack_from(value)
                if index >= warmup:
                    latencies.append(received - sent)
                got += 1
                at = stop
            rest = data[at:]
        os.close(fd)
        out.put(("consumer", got, latencies))
        return
    with millstream.open_streams(target) as streams, \
            streams.open_consumer(group="latency") as consumer:
        consumer.subscribe([stream])
        while not consumer.assignment():
            consumer.poll(timeout=0.05)
        ready.set()
        while got < total and time.monotonic() < deadline:
            records = consumer.poll(max_records=10_000, timeout=0.5)
            if not records:
                continue
            received = now_ns()
            for r in records:
                index, sent = unpack_from(r.value)  # type: ignore[arg-type]
                if index >= warmup:
                    latencies.append(received - sent)
            got += len(records)
    out.put(("consumer", got, latencies))


def run_pair(kind: str, target: str, stream: str, params: Params) -> dict[str, Any]:
    """Workload 5 for ``kind`` ("millstream" or "raw"): latency percentiles in ms."""
    warmup = round(params.latency_rate * params.latency_warmup_s)
    total = warmup + round(params.latency_rate * params.latency_seconds)
    ready, out = CTX.Event(), CTX.Queue()
    durable = CTX.RawValue("q", 0)
    limit = params.latency_warmup_s + params.latency_seconds + 30
    consumer = CTX.Process(target=_latency_consumer, args=(
        kind, target, stream, total, warmup, ready, durable, out, limit))
    producer = CTX.Process(target=_latency_producer, args=(
        kind, target, stream, params.latency_rate, total, ready, durable, out))
    consumer.start()
    producer.start()
    got: dict[str, Any] = {}
    for _ in range(2):
        item = out.get(timeout=limit + 30)
        if item[0] == "producer":
            got["rate"] = item[1]
        else:
            got["received"], got["latencies"] = item[1], item[2]
    producer.join()
    consumer.join()
    if producer.exitcode or consumer.exitcode:
        raise RuntimeError(f"{kind} latency processes failed: exit codes "
                           f"{producer.exitcode}, {consumer.exitcode}")
    lat = sorted(x / 1e6 for x in got["latencies"])
    if got["received"] != total:
        raise RuntimeError(f"{kind}: the consumer received {got['received']} of {total} records")
    return {
        "p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99),
        "p999": percentile(lat, 99.9), "max": lat[-1] if lat else float("nan"),
        "mean": statistics.fmean(lat) if lat else float("nan"),
        "samples": len(lat), "send_rate": got["rate"],
    }


def run_concurrent(kind: str, targets: list[str], stream: str, per_process: int) -> float:
    """Workload 2: N producer processes at once; aggregate records/s."""
    start, out = CTX.Event(), CTX.Queue()
    procs, readies = [], []
    for i, target in enumerate(targets):
        ready = CTX.Event()
        readies.append(ready)
        procs.append(CTX.Process(target=_producer_child, args=(
            kind, target, stream, i, SMALL, per_process // BATCH, ready, start, out)))
    for p in procs:
        p.start()
    for ready in readies:
        if not ready.wait(60):
            raise RuntimeError(f"a {kind} producer process did not start")
    start.set()
    spans = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a {kind} producer process failed (exit code {p.exitcode})")
    elapsed = max(e for _, e in spans) - min(s for s, _ in spans)
    return per_process * len(procs) / elapsed


# -- the run -------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "n/a"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MB/s":
        return f"{value:,.0f} MB/s"
    return f"{value:,.0f} {unit}"


def print_result(r: Result) -> None:
    target = "-"
    if r.ratio_target is not None:
        target = f"ratio ≥ {r.ratio_target:.2f}"
    elif r.target is not None:
        target = ("≥ " if r.higher_is_better else "≤ ") + fmt(r.target, r.unit)
    base = fmt(r.baseline, r.unit) if r.baseline is not None else "-"
    ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
    print(f"  {r.name:<34} {fmt(r.value, r.unit):>17}  target {target:<17} {r.verdict:<4}"
          f"  {r.baseline_name} {base:>17}  ratio {ratio}", flush=True)
    if len(r.rounds) > 1:
        rounds = ", ".join(fmt(x, r.unit) for x in r.rounds)
        brounds = ", ".join(fmt(x, r.unit) for x in r.baseline_rounds)
        print(f"  {'':<34} rounds: {rounds}  |  {r.baseline_name} rounds: {brounds}",
              flush=True)
    cpu = r.extra.get("cpu_us_per_record")
    if cpu:
        mine = median([m for _, m in cpu])
        theirs = median([b for b, _ in cpu])
        line = (f"  {'':<34} client CPU per record (process_time, all threads): "
                f"{mine:.2f} µs, {r.baseline_name} {theirs:.2f} µs")
        gc_ms = r.extra.get("gc_ms")
        if gc_ms:
            line += (f"; in the garbage collector: {median([m for _, m in gc_ms]):,.0f} ms, "
                     f"{r.baseline_name} {median([b for b, _ in gc_ms]):,.0f} ms per run")
        print(line, flush=True)


def throughput(name: str, workload: str, unit: str, rounds: list[tuple[float, float]],
               target: float | None = None, *, ratio_target: float | None = None,
               baseline_name: str = "baseline", **extra: Any) -> Result:
    """Report (baseline, millstream) pairs, one per round, as their medians."""
    ms = [m for _, m in rounds]
    raw = [b for b, _ in rounds]
    r = Result(workload, name, unit, median(ms), median(raw), target, True, ms, raw, extra,
               ratio_target, baseline_name)
    print_result(r)
    return r


def fsync_probe(path: Path, count: int = 500) -> dict[str, float]:
    """The disk's durable-write latency: ``count`` x (append 4 KB + fsync), in ms."""
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    lat = []
    try:
        for _ in range(count):
            write_all(fd, block)
            t0 = time.perf_counter()
            os.fsync(fd)
            lat.append((time.perf_counter() - t0) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    lat.sort()
    return {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": lat[-1]}


def run(params: Params, base: Path, only: set[int]) -> tuple[list[Result], dict[str, Any]]:
    results: list[Result] = []
    small, large = make_values(SMALL), make_values(LARGE)
    n_small, n_large = params.records_small, params.records_large
    db_dir, raw_dir = base / "log", base / "raw"
    raw_dir.mkdir()
    url = f"local:{db_dir}"
    details: dict[str, Any] = {}

    with millstream.open_streams(url) as streams:
        admin = streams.admin()
        for r in range(params.rounds):
            admin.create_stream(f"p100-{r}")
            admin.create_stream(f"p10k-{r}")
            admin.create_stream(f"one-{r}")
        admin.create_stream("two", partitions=2)
        admin.create_stream("latency")

        # 1. produce, one process -----------------------------------------------------------
        if 1 in only:
            print(f"\n1. produce, one process, send_batch of {BATCH:,} then flush() "
                  f"({n_small:,} x {SMALL} B, {n_large:,} x {LARGE // 1024} KB per round)",
                  flush=True)
            p100: list[tuple[float, float]] = []
            p10k: list[tuple[float, float]] = []
            cpu100: list[tuple[float, float]] = []
            cpu10k: list[tuple[float, float]] = []
            unsynced: list[float] = []
            for r in range(params.rounds):
                (b, cb), (m, cm) = (
                    cpu_timed(raw_append, raw_dir / f"p100-{r}", small, n_small // BATCH),
                    cpu_timed(ms_produce, streams, f"p100-{r}", small, n_small // BATCH))
                p100.append((n_small / b, n_small / m))
                cpu100.append((cb / n_small * 1e6, cm / n_small * 1e6))
                u = raw_append(raw_dir / "unsynced", small, n_small // BATCH, sync_every=0)
                unsynced.append(n_small / u)
                (b, cb), (m, cm) = (
                    cpu_timed(raw_append, raw_dir / f"p10k-{r}", large, n_large // BATCH),
                    cpu_timed(ms_produce, streams, f"p10k-{r}", large, n_large // BATCH))
                p10k.append((n_large / b, n_large / m))
                cpu10k.append((cb / n_large * 1e6, cm / n_large * 1e6))
            (raw_dir / "unsynced").unlink()
            results.append(throughput("produce 100 B", "1", "rec/s", p100,
                                      TARGETS["produce_100"], cpu_us_per_record=cpu100))
            ref = median(unsynced)
            details["produce_100_unsynced_baseline"] = ref
            print(f"  {'':<34} reference: the same framed appends with a single fsync at the "
                  f"end: {fmt(ref, 'rec/s')} (millstream / that = {results[-1].value / ref:.2f}x)",
                  flush=True)
            results.append(throughput("produce 10 KB", "1", "rec/s", p10k,
                                      ratio_target=TARGETS["large_ratio_vs_raw"],
                                      cpu_us_per_record=cpu10k))
            mb = [(b * LARGE / 1e6, m * LARGE / 1e6) for b, m in p10k]
            results.append(throughput("produce 10 KB (payload MB/s)", "1", "MB/s", mb))

        # 2. produce, two processes ---------------------------------------------------------
        if 2 in only:
            per = n_small // 2
            print(f"\n2. produce, two processes at once, send_batch of {BATCH:,} "
                  f"({per:,} x {SMALL} B each, one partition each; baseline: one file each)",
                  flush=True)
            two: list[tuple[float, float]] = []
            for r in range(params.rounds):
                b = run_concurrent("raw", [str(raw_dir / f"two-{r}-{i}") for i in range(2)], "",
                                   per)
                m = run_concurrent("millstream", [url, url], "two", per)
                two.append((b, m))
            results.append(throughput("produce 100 B, 2 processes", "2", "rec/s", two))

        # 3. send() one at a time -----------------------------------------------------------
        if 3 in only:
            n_one = params.records_send
            print(f"\n3. produce one record at a time with send(), one flush() at the end "
                  f"({n_one:,} x {SMALL} B; baseline: framed appends, write + fsync per "
                  f"{BATCH:,})", flush=True)
            one: list[tuple[float, float]] = []
            for r in range(params.rounds):
                b = raw_append(raw_dir / f"one-{r}", small, n_one // BATCH)
                m = ms_send_one(streams, f"one-{r}", small, n_one // BATCH)
                one.append((n_one / b, n_one / m))
            results.append(throughput("send() one at a time", "3", "rec/s", one,
                                      TARGETS["send_one"]))

        # 4. consume -------------------------------------------------------------------------
        if 4 in only:
            if 1 not in only:  # the data workload 1 would have written, not timed
                for r in range(params.rounds):
                    raw_append(raw_dir / f"p100-{r}", small, n_small // BATCH)
                    ms_produce(streams, f"p100-{r}", small, n_small // BATCH)
                    raw_append(raw_dir / f"p10k-{r}", large, n_large // BATCH)
                    ms_produce(streams, f"p10k-{r}", large, n_large // BATCH)
            print("\n4. consume, one process, standalone consumer, poll(max_records=10_000) "
                  "(the streams of workload 1; baseline: read + CRC check per record)",
                  flush=True)
            c100: list[tuple[float, float]] = []
            c10k: list[tuple[float, float]] = []
            ccpu100: list[tuple[float, float]] = []
            ccpu10k: list[tuple[float, float]] = []
            for r in range(params.rounds):
                (b, cb), (m, cm) = (cpu_timed(raw_read, raw_dir / f"p100-{r}", n_small),
                                    cpu_timed(ms_consume, streams, f"p100-{r}", n_small))
                c100.append((n_small / b, n_small / m))
                ccpu100.append((cb / n_small * 1e6, cm / n_small * 1e6))
                (b, cb), (m, cm) = (cpu_timed(raw_read, raw_dir / f"p10k-{r}", n_large),
                                    cpu_timed(ms_consume, streams, f"p10k-{r}", n_large))
                c10k.append((n_large / b, n_large / m))
                ccpu10k.append((cb / n_large * 1e6, cm / n_large * 1e6))
            results.append(throughput("consume 100 B", "4", "rec/s", c100,
                                      TARGETS["consume_100"], cpu_us_per_record=ccpu100))
            results.append(throughput("consume 10 KB", "4", "rec/s", c10k,
                                      ratio_target=TARGETS["large_ratio_vs_raw"],
                                      cpu_us_per_record=ccpu10k))
            mb = [(b * LARGE / 1e6, m * LARGE / 1e6) for b, m in c10k]
            results.append(throughput("consume 10 KB (payload MB/s)", "4", "MB/s", mb))

    # 5. end-to-end latency -----------------------------------------------------------------
    if 5 in only:
        print(f"\n5. end-to-end latency, producer process -> consumer process (group), "
              f"{params.latency_rate:,} records/s paced send(), {params.latency_warmup_s:g} s "
              f"warm-up + {params.latency_seconds:g} s measured", flush=True)
        steal0 = cpu_steal_ms()
        raw_lat = run_pair("raw", str(raw_dir / "latency"), "", params)
        steal1 = cpu_steal_ms()
        ms_lat = run_pair("millstream", url, "latency", params)
        raw_lat["steal_ms"], ms_lat["steal_ms"] = steal1 - steal0, cpu_steal_ms() - steal1
        details["latency"] = {"millstream": ms_lat, "raw": raw_lat}
        for key, label, target in (("p50", "latency p50", TARGETS["latency_p50_ms"]),
                                   ("p99", "latency p99", TARGETS["latency_p99_ms"]),
                                   ("max", "latency max", None)):
            r = Result("5", label, "ms", ms_lat[key], raw_lat[key], target, False)
            print_result(r)
            results.append(r)
        for name, lat in (("millstream", ms_lat), ("baseline", raw_lat)):
            print(f"  {'':<34} {name + ':':<11} p90 {lat['p90']:.2f} ms, p99.9 "
                  f"{lat['p999']:.2f} ms, mean {lat['mean']:.2f} ms, {lat['samples']:,} "
                  f"samples, sent at {lat['send_rate']:,.0f} rec/s; CPU steal during the "
                  f"run {lat['steal_ms']:,.0f} ms", flush=True)
    return results, details


def run_kafka(args: argparse.Namespace, only: set[int], results: list[Result]) -> dict[str, Any]:
    """Workloads 6-8 (bench/kafka.py), or why they were skipped."""
    print(f"\nKafka backend (kafka://) vs confluent-kafka used directly, same settings, "
          f"same broker ({kafka_bench.versions()})", flush=True)
    bootstrap, reason = kafka_bench.find_broker(args.kafka)
    if bootstrap is None:
        print(f"  skipped: {reason}", flush=True)
        return {"skipped": reason}
    params = kafka_bench.KAFKA_QUICK if args.quick else kafka_bench.KAFKA_FULL
    if args.rounds is not None:
        params = kafka_bench.KafkaParams(**{**asdict(params), "rounds": args.rounds})
    print(f"  broker {bootstrap}; parameters: "
          + ", ".join(f"{k}={v:,}" for k, v in asdict(params).items())
          + f"; {kafka_bench.SIZE} B records, single-partition topics, fresh per client and "
          "round; rounds alternate which client goes first", flush=True)

    def report(*a: Any, **k: Any) -> Result:
        results.append(throughput(*a, **k))
        return results[-1]

    steal = cpu_steal_ms()
    details = kafka_bench.run(bootstrap, params, only, report)
    details["parameters"] = asdict(params)
    details["cpu_steal_ms"] = cpu_steal_ms() - steal
    print(f"  CPU steal during the Kafka workloads: {details['cpu_steal_ms']:,.0f} ms; load "
          "average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    return details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller volumes, one round")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the results as JSON")
    parser.add_argument("--dir", metavar="DIR", type=Path, default=None,
                        help="where to put the temporary database and files (default: the "
                             "system temp dir); it decides which disk is measured")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of each throughput workload (default 3, 1 with --quick)")
    parser.add_argument("--only", metavar="N,...", default="1,2,3,4,5,6,7,8",
                        help="run only these workloads (default: all of 1-8; 6-8 are Kafka)")
    parser.add_argument("--kafka", metavar="HOST:PORT", default=None,
                        help="the Kafka broker for workloads 6-8 (default: "
                             "$MILLSTREAM_KAFKA_BOOTSTRAP; skipped when neither is set or the "
                             "broker does not answer)")
    args = parser.parse_args(argv)
    try:
        only = {int(x) for x in args.only.split(",") if x.strip()}
    except ValueError:
        only = set()
    if not only or not only <= set(range(1, 9)):
        parser.error(f"--only {args.only!r}: give workload numbers from 1 to 8, e.g. --only 4,5")
    params = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be ≥ 1")
        params = Params(**{**asdict(params), "rounds": args.rounds})

    info = machine()
    base = Path(tempfile.mkdtemp(prefix="millstream-bench-", dir=args.dir))
    info["filesystem"] = filesystem_of(base.resolve())
    print("millstream stream benchmark — embedded log (local:, durability=full) vs raw "
          "framed file appends; Kafka backend vs confluent-kafka used directly")
    print(f"machine: {info['cpus']} CPUs ({info['cpus_usable']} usable), {info['cpu_model']}; "
          f"{info['python_impl']} {info['python']}; SQLite {info['sqlite']}; "
          f"{info['platform']}")
    print(f"millstream {info['millstream']} (commit {info['commit']}); data in {base} on "
          f"{info['filesystem']}")
    print("parameters: " + ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}"
                                     for k, v in asdict(params).items())
          + f", batch={BATCH:,}, record sizes {SMALL} B and {LARGE} B")
    print("figures are medians over the rounds; ratio = millstream / baseline "
          "(for latency, lower is better)")
    started = time.perf_counter()
    try:
        info["fsync_4k_ms"] = probe = fsync_probe(base / "probe")
        info["loadavg_before"] = os.getloadavg()
        steal = cpu_steal_ms()
        print(f"disk: append 4 KB + fsync, 500 times: p50 {probe['p50']:.2f} ms, p99 "
              f"{probe['p99']:.2f} ms, max {probe['max']:.2f} ms; load average before: "
              + " ".join(f"{x:.2f}" for x in info["loadavg_before"]), flush=True)
        results: list[Result] = []
        details: dict[str, Any] = {}
        if only & {1, 2, 3, 4, 5}:
            results, details = run(params, base, only)
        if only & {6, 7, 8}:
            details["kafka"] = run_kafka(args, only, results)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    took = time.perf_counter() - started
    info["loadavg_after"] = os.getloadavg()
    info["cpu_steal_ms"] = cpu_steal_ms() - steal
    print("load average after: " + " ".join(f"{x:.2f}" for x in info["loadavg_after"])
          + " (the benchmark itself adds about 1; more means other work shared the machine); "
          f"CPU steal during the run: {info['cpu_steal_ms']:,.0f} ms")
    missed = [r for r in results if r.verdict == "MISS"]
    print(f"\n{len(results)} figures, {sum(r.verdict == 'PASS' for r in results)} targets met, "
          f"{len(missed)} missed" + (": " + ", ".join(r.name for r in missed) if missed else "")
          + f"; {took:.0f} s")
    if args.json is not None:
        doc = {
            "machine": info, "parameters": {**asdict(params), "batch": BATCH,
                                            "sizes": [SMALL, LARGE]},
            "targets": TARGETS, "seconds": took,
            "results": [r.as_json() for r in results], "details": details,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
