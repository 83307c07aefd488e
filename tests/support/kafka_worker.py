"""Child processes for the Kafka fault tests, speaking only millstream's streams Protocols.

    python -m tests.support.kafka_worker produce URL STREAM COUNT KEYS
        sends COUNT records; record i has key ``str(i % KEYS)`` and value ``"KEY:SEQ"`` with
        SEQ = i // KEYS (a per-key sequence number). Keeps at most WINDOW records unresolved.
        Prints, in send order, for every record once its handle resolved:
            ack KEY SEQ PARTITION OFFSET        the handle returned a position
            fail KEY SEQ ERROR-TYPE MESSAGE     the handle raised (the record was not stored)
        then ``flush ok`` or ``flush ERROR-TYPE MESSAGE`` and ``close ok``/``close ...``, and
        ``done SENT ACKED FAILED`` last. A send() that raises prints ``send-error KEY SEQ ...``
        and counts as failed (nothing of it was queued).
    python -m tests.support.kafka_worker consume URL STREAM GROUP
        a group member: polls, prints ``rec PARTITION OFFSET VALUE`` for each record and
        ``commit N`` after each successful commit (a failed commit is tried again on the next
        round, with or without new records); a millstream error from poll or commit prints
        ``err ERROR-TYPE RETRIABLE MESSAGE`` and the loop goes on. SIGTERM ends it cleanly
        (``closed``).

Lines are written in blocks (one write per poll or per few hundred acknowledgements) and
flushed, so the parent sees progress and a killed child leaves only whole lines behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import millstream
from millstream import MillstreamError
from tests.support.children import REPO, Child

WINDOW = 20_000


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def produce(url: str, stream: str, count: int, keys: int, keyless: bool = False) -> None:
    out: list[str] = []
    last_flush = time.monotonic()
    acked = failed = 0

    def emit(line: str) -> None:
        nonlocal last_flush
        out.append(line)
        now = time.monotonic()
        if len(out) >= 500 or now - last_flush > 0.05:
            sys.stdout.write("\n".join(out) + "\n")
            sys.stdout.flush()
            out.clear()
            last_flush = now

    def resolve(key: int, seq: int, handle: Any) -> None:
        nonlocal acked, failed
        try:
            pos = handle.wait(600)
        except MillstreamError as exc:
            failed += 1
            emit(f"fail {key} {seq} {type(exc).__name__} {_one_line(exc)}")
        else:
            acked += 1
            emit(f"ack {key} {seq} {pos.partition} {pos.offset}")

    with millstream.open_streams(url) as streams:
        producer = streams.open_producer()
        pending: deque[tuple[int, int, Any]] = deque()
        for i in range(count):
            key, seq = i % keys, i // keys
            try:
                handle = producer.send(stream, f"{key}:{seq}".encode(),
                                       key=None if keyless else str(key).encode())
            except MillstreamError as exc:
                failed += 1
                emit(f"send-error {key} {seq} {type(exc).__name__} {_one_line(exc)}")
                continue
            pending.append((key, seq, handle))
            while pending and (pending[0][2].done() or len(pending) > WINDOW):
                resolve(*pending.popleft())
        while pending:
            resolve(*pending.popleft())
        try:
            producer.flush(600)
            emit("flush ok")
        except MillstreamError as exc:
            emit(f"flush {type(exc).__name__} {_one_line(exc)}")
        try:
            producer.close()
            emit("close ok")
        except MillstreamError as exc:
            emit(f"close {type(exc).__name__} {_one_line(exc)}")
    out.append(f"done {count} {acked} {failed}")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def consume(url: str, stream: str, group: str) -> None:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    commits = 0
    dirty = False  # records returned since the last successful commit
    with millstream.open_streams(url) as streams, streams.open_consumer(group) as consumer:
        consumer.subscribe([stream])
        print("joined", flush=True)
        while not stopping:
            lines = []
            try:
                records = consumer.poll(2000, timeout=0.2)
                for r in records:
                    lines.append(f"rec {r.partition} {r.offset} {(r.value or b'').decode()}\n")
                dirty = dirty or bool(records)
                if dirty:  # also retries a commit that failed while a broker was down
                    consumer.commit()
                    dirty = False
                    commits += 1
                    lines.append(f"commit {commits}\n")
            except MillstreamError as exc:
                lines.append(f"err {type(exc).__name__} {int(exc.retriable)} {_one_line(exc)}\n")
            if lines:
                sys.stdout.write("".join(lines))
                sys.stdout.flush()
    print("closed", flush=True)


class KafkaChild(Child):
    """A ``python -m tests.support.kafka_worker ROLE ARGS`` child (see ``Child``)."""

    def __init__(self, role: str, *args: str, out: Path) -> None:
        self.name = out.stem
        self.out_path = out
        self.err_path = out.with_suffix(".err")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        with open(self.out_path, "wb") as stdout, open(self.err_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.kafka_worker", role, *args],
                cwd=REPO, stdout=stdout, stderr=stderr, env=env)


def main(argv: list[str]) -> None:
    command, url, stream, *rest = argv
    if command == "produce":
        produce(url, stream, int(rest[0]), int(rest[1]), keyless=rest[2:] == ["keyless"])
    elif command == "consume":
        consume(url, stream, rest[0])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
