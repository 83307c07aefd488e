"""A child process for crash and soak tests of the embedded log.

Run from the repository root: ``python -m tests.support.log_worker ROLE --url local:DIR ...``.
Every role writes one line per event to stdout, flushed at once, so a parent that kills the
child with SIGKILL still sees every line written before the kill:

- ``A <id> <partition> <offset> [<wal bytes>]``   a record was acknowledged (its handle resolved)
- ``R <partition> <offset> <value>``              a consumer processed a record
- ``C <partition> <next offset>``                 a consumer's commit returned
- ``E <where> <ExceptionType> <message>``          an expected error, reported not raised
- ``READY`` / ``POLLED`` / ``DONE``               progress markers

Roles: ``produce`` (kill loop, torn tail), ``fill`` (disk full under RLIMIT_FSIZE),
``consume`` (group member killed between processing and commit), ``zombie`` (group member
that is paused by its parent), ``soak-produce`` and ``soak-consume`` (the soak test).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path

import millstream
from millstream import StreamPartition


def out(*fields: object) -> None:
    print(*fields, flush=True)


def wal_size(url: str) -> int:
    directory = url.split(":", 1)[1].split("?", 1)[0]
    try:
        return os.path.getsize(Path(directory) / "streams.db-wal")
    except FileNotFoundError:
        return 0


# -- producers ----------------------------------------------------------------------------------


def produce(args: argparse.Namespace) -> int:
    """Append records ``<prefix>-<seq>`` (key = value) and print each acknowledgement in order.

    ``--sync`` waits for every send (one record per commit) and prints the -wal file's size
    after each acknowledgement. ``--tail-bytes`` then sends that much more in one batch and
    flushes (the parent arms a fault point so that commit never happens).
    """
    rng = random.Random(args.seed)
    pending: collections.deque[tuple[list[str], object]] = collections.deque()
    with millstream.open_streams(args.url) as streams, streams.open_producer() as producer:
        out("READY")
        seq = 0

        def ack(ids: list[str], handle: object) -> None:
            result = handle.wait(30)  # type: ignore[attr-defined]
            positions = result if isinstance(result, list) else [result]
            extra = [wal_size(args.url)] if args.sync else []
            for rid, pos in zip(ids, positions, strict=True):
                out("A", rid, pos.partition, pos.offset, *extra)

        while args.count == 0 or seq < args.count:
            if not args.sync and rng.random() < 0.2:
                ids = [f"{args.prefix}-{seq + i}" for i in range(rng.randint(2, 20))]
                data = [i.encode() for i in ids]
                handle: object = producer.send_batch(args.stream, data, keys=data)
            else:
                ids = [f"{args.prefix}-{seq}"]
                handle = producer.send(args.stream, ids[0].encode(), key=ids[0].encode())
            seq += len(ids)
            pending.append((ids, handle))
            while len(pending) > (0 if args.sync else args.window):
                ack(*pending.popleft())
        while pending:
            ack(*pending.popleft())
        if args.tail_bytes:
            values = [b"tail-%09d-" % i + b"t" * 985 for i in range(args.tail_bytes // 1000)]
            producer.send_batch(args.stream, values, partition=0)
            producer.flush()
            out("TAIL-FLUSHED")  # only reached when no fault is armed
    out("DONE")
    return 0


def fill(args: argparse.Namespace) -> int:
    """Produce under a small RLIMIT_FSIZE until the producer refuses; report every outcome."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
    directory = Path(args.url.split(":", 1)[1].split("?", 1)[0])
    largest = max(p.stat().st_size for p in directory.iterdir())
    limit = largest + args.room
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    out("LIMIT", limit)
    pending: collections.deque[tuple[str, millstream.SendHandle]] = collections.deque()
    failures = 0
    value_pad = b"x" * args.value_bytes
    with millstream.open_streams(args.url) as streams:
        producer = streams.open_producer()
        seq = 0
        refused = False
        while not refused:
            rid = f"f-{seq}"
            seq += 1
            try:
                handle = producer.send(args.stream, rid.encode() + b" " + value_pad,
                                       key=rid.encode())
            except millstream.DeliveryError as exc:
                out("E", "send", type(exc).__name__, str(exc).replace("\n", " "))
                refused = True
                break
            pending.append((rid, handle))
            while len(pending) > args.window or (pending and pending[0][1].done()):
                rid0, h0 = pending.popleft()
                try:
                    pos = h0.wait(30)
                    out("A", rid0, pos.partition, pos.offset)
                except millstream.DeliveryError as exc:
                    failures += 1
                    if failures == 1:
                        out("E", "wait", type(exc).__name__, str(exc).replace("\n", " "))
        for rid0, h0 in pending:
            try:
                pos = h0.wait(30)
                out("A", rid0, pos.partition, pos.offset)
            except millstream.DeliveryError as exc:
                failures += 1
                if failures == 1:
                    out("E", "wait", type(exc).__name__, str(exc).replace("\n", " "))
        for where, call in (("flush", producer.flush), ("close", producer.close)):
            try:
                call()
                out("OK", where)
            except millstream.DeliveryError as exc:
                out("E", where, type(exc).__name__, str(exc).replace("\n", " "))
        try:
            producer.send(args.stream, b"after-close")
            out("OK", "send-after-close")
        except millstream.MillstreamError as exc:
            out("E", "send-after-close", type(exc).__name__, str(exc).replace("\n", " "))
    out("FAILED-WAITS", failures)
    out("DONE")
    return 0


# -- group members ------------------------------------------------------------------------------


def consume(args: argparse.Namespace) -> int:
    """A group member: poll, print every record, commit after each poll; exits when idle."""
    with millstream.open_streams(args.url) as streams, \
            streams.open_consumer(group=args.group) as consumer:
        consumer.subscribe([args.stream])
        out("READY")
        idle = 0
        while idle < args.idle_polls:
            records = consumer.poll(max_records=args.max_records, timeout=0.2)
            if not records:
                idle += 1
                continue
            idle = 0
            for r in records:
                out("R", r.partition, r.offset, (r.value or b"").decode())
            consumer.commit()
            for sp, off in sorted(consumer.committed().items()):
                out("C", sp.partition, off)
    out("DONE")
    return 0


def zombie(args: argparse.Namespace) -> int:
    """A member that commits once, polls again, then waits for ``--go`` before committing.

    Its parent SIGSTOPs it while it waits (so its lease expires and its partitions move) and
    creates the go file after SIGCONT: the commit that follows must be fenced.
    """
    go = Path(args.go)
    with millstream.open_streams(args.url) as streams, \
            streams.open_consumer(group=args.group) as consumer:
        consumer.subscribe([args.stream])
        for phase in ("first", "second"):
            records: list[millstream.Record] = []
            deadline = time.monotonic() + 20
            while not records and time.monotonic() < deadline:
                records = consumer.poll(max_records=args.max_records, timeout=0.5)
            for r in records:
                out("R", r.partition, r.offset, (r.value or b"").decode())
            if phase == "first":
                consumer.commit()
                for sp, off in sorted(consumer.committed().items()):
                    out("C", sp.partition, off)
        out("ASSIGNED", ",".join(str(sp.partition) for sp in consumer.assignment()))
        out("POLLED")
        while not go.exists():  # the parent stops this process here
            time.sleep(0.01)
        try:
            consumer.commit()
            out("COMMITTED")
        except millstream.FencedError as exc:
            out("E", "commit", type(exc).__name__, str(exc).replace("\n", " "))
    out("DONE")
    return 0


# -- soak ---------------------------------------------------------------------------------------


def soak_produce(args: argparse.Namespace) -> int:
    """Send ``<name>:<seq>`` to partition ``seq % P`` of each stream at a steady rate until the
    stop file appears; flush; print the last sequence number sent per stream and partition."""
    stop = Path(args.stop)
    pad = b"p" * args.value_bytes
    last: dict[str, dict[int, int]] = {}
    sent = 0
    with millstream.open_streams(args.url) as streams, streams.open_producer() as producer:
        admin = streams.admin()
        parts = {s: admin.describe_stream(s).partition_count for s in args.streams}
        out("READY")
        seq = 0
        started = time.monotonic()
        while not stop.exists():
            for stream in args.streams:
                p = seq % parts[stream]
                producer.send(stream, f"{args.name}:{seq}:".encode() + pad, partition=p)
                last.setdefault(stream, {})[p] = seq
            seq += 1
            sent += len(args.streams)
            behind = sent / args.rate - (time.monotonic() - started)
            if behind > 0:
                time.sleep(behind)
            if seq % 500 == 0:
                producer.flush(60)
        producer.flush(60)
    out("LAST", json.dumps(last))
    out("SENT", sent)
    out("DONE")
    return 0


def soak_consume(args: argparse.Namespace) -> int:
    """A group member that checks order as it reads: on each partition every record's offset
    is the one after the previous (from the position where the partition was assigned), and
    each producer's sequence numbers increase. Reports the offset intervals it read."""
    stop = Path(args.stop)
    intervals: dict[str, list[list[int]]] = collections.defaultdict(list)
    expected: dict[StreamPartition, int] = {}
    last_seq: dict[StreamPartition, dict[str, int]] = {}
    errors: list[str] = []
    polled = 0
    with millstream.open_streams(args.url) as streams, \
            streams.open_consumer(group=args.group) as consumer:

        def owned_progress() -> dict[StreamPartition, int]:
            owned = set(consumer.assignment())
            return {sp: off for sp, off in expected.items() if sp in owned}

        def on_assign(parts: list[StreamPartition]) -> None:
            for sp in parts:
                expected[sp] = consumer.position(sp)
                last_seq[sp] = {}  # re-reading from the committed offset may repeat records
                intervals[f"{sp.stream}/{sp.partition}"].append([expected[sp], expected[sp]])

        def on_revoke(parts: list[StreamPartition]) -> None:
            consumer.commit({sp: expected[sp] for sp in parts if sp in expected})
            for sp in parts:
                expected.pop(sp, None)

        consumer.subscribe(args.streams, on_assign=on_assign, on_revoke=on_revoke)
        out("READY")
        next_commit = 0.0
        while not stop.exists():
            try:
                records = consumer.poll(max_records=1000, timeout=0.2)
            except millstream.MillstreamError as exc:
                errors.append(f"poll: {type(exc).__name__}: {exc}")
                break
            for r in records:
                sp = StreamPartition(r.stream, r.partition)
                want = expected.get(sp)
                if want is None:
                    errors.append(f"record {r.position} from a partition never assigned")
                    continue
                if r.offset != want:
                    errors.append(f"{sp}: expected offset {want}, got {r.offset}")
                expected[sp] = r.offset + 1
                intervals[f"{sp.stream}/{sp.partition}"][-1][1] = r.offset + 1
                producer, seq_text, _ = (r.value or b"").decode().split(":", 2)
                seq = int(seq_text)
                previous = last_seq[sp].get(producer, -1)
                if seq <= previous:
                    errors.append(f"{r.position}: {producer} seq {seq} after {previous}")
                last_seq[sp][producer] = seq
            polled += len(records)
            if time.monotonic() >= next_commit:  # commit twice a second, as services do
                next_commit = time.monotonic() + 0.5
                try:
                    consumer.commit(owned_progress())
                except millstream.FencedError:
                    pass  # a partition moved between poll and commit; its new owner re-reads
            if len(errors) > 20:
                break
        try:
            consumer.commit(owned_progress())
        except millstream.FencedError:
            pass
    out("RESULT", json.dumps({"errors": errors, "intervals": intervals, "records": polled}))
    out("DONE")
    return 0 if not errors else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.log_worker")
    sub = parser.add_subparsers(dest="role", required=True)

    p = sub.add_parser("produce")
    p.add_argument("--url", required=True)
    p.add_argument("--stream", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, default=0, help="records to send; 0 = until killed")
    p.add_argument("--window", type=int, default=64, help="handles in flight")
    p.add_argument("--sync", action="store_true")
    p.add_argument("--tail-bytes", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("fill")
    p.add_argument("--url", required=True)
    p.add_argument("--stream", required=True)
    p.add_argument("--room", type=int, default=2 * 1024 * 1024)
    p.add_argument("--value-bytes", type=int, default=200)
    p.add_argument("--window", type=int, default=200)

    for role in ("consume", "zombie"):
        p = sub.add_parser(role)
        p.add_argument("--url", required=True)
        p.add_argument("--stream", required=True)
        p.add_argument("--group", required=True)
        p.add_argument("--max-records", type=int, default=50)
        p.add_argument("--idle-polls", type=int, default=5)
        p.add_argument("--go", default="")

    p = sub.add_parser("soak-produce")
    p.add_argument("--url", required=True)
    p.add_argument("--streams", nargs="+", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--stop", required=True)
    p.add_argument("--rate", type=float, default=2000.0, help="records per second")
    p.add_argument("--value-bytes", type=int, default=200)

    p = sub.add_parser("soak-consume")
    p.add_argument("--url", required=True)
    p.add_argument("--streams", nargs="+", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--stop", required=True)

    args = parser.parse_args(argv)
    role = {
        "produce": produce, "fill": fill, "consume": consume, "zombie": zombie,
        "soak-produce": soak_produce, "soak-consume": soak_consume,
    }[args.role]
    return role(args)


if __name__ == "__main__":
    sys.exit(main())
