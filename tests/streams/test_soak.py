"""Soak test of the embedded log: many processes at once for a while, retention running.

4 producers append to two streams (one bounded by size, one by age) at a steady rate; two
consumers share group ``soak-a`` and one reads alone in group ``soak-b``, each checking as it
reads that offsets follow one another and each producer's records come in order. Meanwhile
the test samples the -wal and database file sizes. ``MILLSTREAM_SOAK_SECONDS`` sets the
duration (default 60).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

import millstream
from millstream import Retention
from tests.support.children import Child
from tests.support.logread import by_partition, db_path, integrity, read_all
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

SOAK_SECONDS = float(os.environ.get("MILLSTREAM_SOAK_SECONDS", "60"))
MiB = 1024 * 1024
WAL_LIMIT = 64 * MiB  # LocalOptions.wal_limit_bytes: the journal_size_limit
SIZE_BOUND = 1 * MiB  # per partition of soak-size
AGE_BOUND_MS = 5_000  # soak-age
MAX_BATCH = 512 * 1024  # LocalOptions.max_batch_bytes
STREAMS = {"soak-size": 4, "soak-age": 2}
GROUPS = {"soak-a": 2, "soak-b": 1}
PRODUCERS = 4
RATE = 1500  # records per second per producer (over both streams)


def _covered(intervals: list[list[int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` that no interval covers."""
    gaps = []
    at = start
    for a, b in sorted(intervals):
        if a > at:
            gaps.append((at, min(a, end)))
        at = max(at, b)
        if at >= end:
            break
    if at < end:
        gaps.append((at, end))
    return [(a, b) for a, b in gaps if a < b]


def test_soak_many_processes_with_retention(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    url = f"local:{directory}?retention_check_ms=1000"
    with millstream.open_streams(url) as streams:
        admin = streams.admin()
        admin.create_stream("soak-size", STREAMS["soak-size"], Retention(max_bytes=SIZE_BOUND))
        admin.create_stream("soak-age", STREAMS["soak-age"], Retention(max_age=AGE_BOUND_MS / 1000))
    stop_producers = tmp_path / "stop-producers"
    stop_consumers = tmp_path / "stop-consumers"
    db = db_path(url)
    wal = db.with_name("streams.db-wal")

    children: list[Child] = []
    try:
        consumers = []
        for group, members in GROUPS.items():
            for i in range(members):
                consumers.append(Child(
                    "soak-consume", "--url", url, "--streams", *STREAMS, "--group", group,
                    "--stop", str(stop_consumers), out=tmp_path / f"{group}-{i}.out"))
        producers = [
            Child("soak-produce", "--url", url, "--streams", *STREAMS, "--name", f"p{i}",
                  "--stop", str(stop_producers), "--rate", str(RATE),
                  out=tmp_path / f"p{i}.out")
            for i in range(PRODUCERS)
        ]
        children = consumers + producers
        for child in children:
            child.wait_for("READY")

        started = time.monotonic()
        half_size: int | None = None
        wal_max = 0
        samples = 0
        db_sizes: list[int] = []  # at every tenth of the run, for the printed summary

        def size(path: Path) -> int:
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return 0

        def sample() -> bool:
            nonlocal half_size, wal_max, samples
            wal_max = max(wal_max, size(wal))
            samples += 1
            elapsed = time.monotonic() - started
            if half_size is None and elapsed >= SOAK_SECONDS / 2:
                half_size = size(db)
            if elapsed >= len(db_sizes) * SOAK_SECONDS / 10:
                db_sizes.append(size(db))
            for child in children:
                assert child.proc.poll() is None, (
                    f"{child.name} exited early with {child.proc.returncode}:\n"
                    f"{child.lines()[-5:]}\n{child.stderr()[-3000:]}")
            return elapsed >= SOAK_SECONDS

        wait_until(sample, SOAK_SECONDS + 30, "the soak to run its course", interval=0.2)
        end_size = size(db)
        stop_producers.touch()
        per_producer_last: dict[str, dict[str, dict[str, int]]] = {}
        sent = 0
        for child in producers:
            assert child.wait(60) == 0, child.stderr()[-3000:]
            per_producer_last[child.name] = json.loads(child.texts("LAST")[0])
            sent += int(child.fields("SENT")[0][0])

        with millstream.open_streams(url) as streams:
            admin = streams.admin()

            def groups_caught_up() -> bool:
                wal_max_update()
                for group in GROUPS:
                    info = admin.describe_group(group)
                    if len(info.partitions) != sum(STREAMS.values()) or any(
                            p.committed != p.end for p in info.partitions):
                        return False
                return True

            def wal_max_update() -> None:
                nonlocal wal_max
                wal_max = max(wal_max, size(wal))

            wait_until(groups_caught_up, 60, "both groups to commit every partition's end")
            stop_consumers.touch()
            results = {}
            for child in consumers:
                assert child.wait(60) == 0, (child.lines()[-3:], child.stderr()[-3000:])
                results[child.name] = json.loads(child.texts("RESULT")[0])

            print(f"soak: {SOAK_SECONDS:.0f} s, {sent} records sent, read "
                  f"{ {n: r['records'] for n, r in results.items()} }, -wal max {wal_max} B, "
                  f"db {half_size} B at half time, {end_size} B at the end, by tenths "
                  f"{[round(n / MiB, 1) for n in db_sizes]} MiB")
            # -- bounded files ---------------------------------------------------------------
            assert samples > SOAK_SECONDS  # about five samples a second
            assert wal_max <= WAL_LIMIT + 4 * MiB, f"-wal file reached {wal_max} bytes"
            assert half_size is not None
            assert end_size <= half_size * 1.1 + 2 * MiB, (
                f"database grew from {half_size} to {end_size} bytes in the second half")

            # -- retention ran and holds its bounds -------------------------------------------
            infos = {name: admin.describe_stream(name) for name in STREAMS}
            for name, info in infos.items():
                assert all(p.start > 0 for p in info.partitions), f"{name}: nothing retired"
            for p in infos["soak-size"].partitions:
                assert p.bytes is not None and p.bytes <= SIZE_BOUND + MAX_BATCH

            # -- consumers: no error, every retained record read by every group, in order ----
            for name, result in results.items():
                assert result["errors"] == [], f"{name}: {result['errors'][:5]}"
            for group, members in GROUPS.items():
                mine = [results[f"{group}-{i}"] for i in range(members)]
                assert all(r["records"] > 0 for r in mine), f"{group}: an idle member"
                for stream, info in infos.items():
                    for p in info.partitions:
                        intervals = [iv for r in mine
                                     for iv in r["intervals"].get(f"{stream}/{p.partition}", [])]
                        gaps = _covered(intervals, p.start, p.end)
                        assert gaps == [], f"{group} never read {stream}[{p.partition}] {gaps}"

            # -- a fresh reader: dense offsets, each producer's retained tail whole, in order --
            for stream, info in infos.items():
                parts = by_partition(read_all(streams, stream))
                for p in info.partitions:
                    records = parts[p.partition]
                    assert [r.offset for r in records] == list(range(p.start, p.end))
                    seqs: dict[str, list[int]] = defaultdict(list)
                    for r in records:
                        producer, seq, _ = (r.value or b"").decode().split(":", 2)
                        seqs[producer].append(int(seq))
                    n = STREAMS[stream]
                    assert set(seqs) == set(per_producer_last)
                    for producer, got in seqs.items():
                        final = per_producer_last[producer][stream][str(p.partition)]
                        assert got == list(range(got[0], final + 1, n)), (
                            f"{stream}[{p.partition}]: {producer}'s records are not its "
                            f"retained tail in order")
            assert sent > SOAK_SECONDS * PRODUCERS * RATE * 0.5, f"only {sent} records sent"
        assert integrity(db) == "ok"
    finally:
        stop_producers.touch()
        stop_consumers.touch()
        for child in children:
            child.__exit__(None, None, None)
