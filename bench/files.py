"""Benchmark of the local file store (``file://``) against the same work in plain Python.

Run with ``.venv/bin/python bench/files.py [--size-mb 100] [--repeat 5] [--json PATH]``.

Workloads, on one file of ``--size-mb`` random bytes in a temporary directory:
  put  ``store.put(name, path)``: read in 1 MiB chunks, SHA-256, write a temporary file,
       fsync, write the sidecar, rename both, fsync the directories.
       Baseline: read in 1 MiB chunks, SHA-256, write a new file, fsync, close.
  get  ``store.open(ref)`` read to its end (SHA-256 verified against the sidecar) and written
       to a destination file, fsynced. Baseline: read the object file in 1 MiB chunks,
       SHA-256 and compare, write the destination, fsync.
  path ``store.local_path(ref)`` the first time after the object's last change (the object
       is checked: one SHA-256 of the file, compared with the record).
       Baseline: read the file in 1 MiB chunks and SHA-256 it.
Each round measures the baseline and then the store back to back (same page cache, same
machine noise); the figures are medians over ``--repeat`` rounds; the ratio is
store MB/s / baseline MB/s, target ≥ 0.80.

Then ``local_path`` again on an object already checked (its stat signature recorded): the
cost of a call, in microseconds (median of 2,000), against ``os.stat`` of the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from millstream.files._local import LocalStore

CHUNK = 1024 * 1024


def make_source(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(CHUNK * 8, left)
            f.write(os.urandom(n))
            left -= n


def baseline_copy(src: Path, dest: Path, expect: str | None = None) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(src, "rb", buffering=0) as fin, open(dest, "wb", buffering=0) as fout:
        while n := fin.readinto(view):
            digest.update(view[:n])
            fout.write(view[:n])
        os.fsync(fout.fileno())
    hexdigest = digest.hexdigest()
    if expect is not None and hexdigest != expect:
        raise AssertionError("baseline hash mismatch")
    return hexdigest


def store_get(store: LocalStore, name: str, dest: Path) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with store.open(name) as fin, open(dest, "wb", buffering=0) as fout:
        while n := fin.readinto(view):  # type: ignore[attr-defined]
            fout.write(view[:n])
        os.fsync(fout.fileno())


def baseline_hash(src: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(src, "rb", buffering=0) as fin:
        while n := fin.readinto(view):
            digest.update(view[:n])
    return digest.hexdigest()


def per_call_us(fn: object, *args: object, n: int = 2000) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def wait_until_checkable(path: Path) -> None:
    """A file changed in the last two seconds is checked at every use (racy timestamps; see
    millstream.files._verify): wait so that the first check is recorded."""
    left = os.stat(path).st_ctime + 2.05 - time.time()
    if left > 0:
        time.sleep(left)


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/files.py")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    size = args.size_mb * 1_000_000
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="millstream-bench-files-") as tmp:
        root = Path(tmp)
        src = root / "source.bin"
        make_source(src, size)
        store = LocalStore(root / "store")
        expect = baseline_copy(src, root / "warm.bin")  # warm the page cache
        (root / "warm.bin").unlink()
        times: dict[str, list[float]] = {"put": [], "put-base": [], "get": [], "get-base": [],
                                         "path": [], "path-base": []}
        for i in range(args.repeat):
            times["put-base"].append(timed(baseline_copy, src, root / "base.bin"))
            times["put"].append(timed(store.put, f"bench/{i}.bin", src))
            times["get-base"].append(timed(baseline_copy, root / "base.bin",
                                           root / "base-out.bin", expect))
            times["get"].append(timed(store_get, store, f"bench/{i}.bin", root / "out.bin"))
            os.utime(store.root / f"bench/{i}.bin")  # a new signature: checked at next use
            wait_until_checkable(store.root / f"bench/{i}.bin")
            times["path-base"].append(timed(baseline_hash, store.root / f"bench/{i}.bin"))
            times["path"].append(timed(store.local_path, f"bench/{i}.bin"))
            if i == args.repeat - 1:
                again = per_call_us(store.local_path, f"bench/{i}.bin")
                stat_us = per_call_us(os.stat, store.root / f"bench/{i}.bin")
            for p in ("base.bin", "base-out.bin", "out.bin"):
                (root / p).unlink()
            store.delete(f"bench/{i}.bin")
        for op in ("put", "get", "path"):
            mine = statistics.median(times[op])
            base = statistics.median(times[f"{op}-base"])
            results[op] = {"store_mb_s": size / mine / 1e6, "baseline_mb_s": size / base / 1e6,
                           "ratio": base / mine}
    print(f"local file store, {args.size_mb} MB, median of {args.repeat} rounds")
    print(f"{'op':<5}{'store MB/s':>12}{'baseline MB/s':>15}{'ratio':>8}")
    for op, r in results.items():
        verdict = "ok" if r["ratio"] >= 0.80 else "below 0.80"
        print(f"{op:<5}{r['store_mb_s']:>12.0f}{r['baseline_mb_s']:>15.0f}"
              f"{r['ratio']:>8.2f}  {verdict}")
    print(f"local_path again: {again:.1f} µs per call (os.stat: {stat_us:.1f} µs)")
    if args.json:
        args.json.write_text(json.dumps(dict(results, again={"local_path_us": again,
                                                             "stat_us": stat_us}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
