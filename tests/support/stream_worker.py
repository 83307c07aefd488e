"""A child process for multi-process contract tests, speaking only the streams Protocols.

    python -m tests.support.stream_worker produce URL STREAM COUNT PREFIX
        sends COUNT keyed records whose values are PREFIX-i, printing "ack PREFIX-i" for each
        once it is acknowledged (handle resolved);
    python -m tests.support.stream_worker consume URL STREAM GROUP
        polls in GROUP, printing "rec PARTITION OFFSET VALUE" for each record and "commit" after
        each successful commit, until killed or stdin closes... (runs until SIGTERM/SIGKILL).
"""

from __future__ import annotations

import signal
import sys

import millstream


def produce(url: str, stream: str, count: int, prefix: str) -> None:
    with millstream.open_streams(url) as streams, streams.open_producer() as producer:
        pending = []
        for i in range(count):
            value = f"{prefix}-{i}".encode()
            pending.append((value, producer.send(stream, value, key=f"k{i % 17}".encode())))
            if len(pending) >= 50:
                for v, handle in pending:
                    handle.wait(60)
                    print("ack", v.decode(), flush=True)
                pending.clear()
        for v, handle in pending:
            handle.wait(60)
            print("ack", v.decode(), flush=True)


def consume(url: str, stream: str, group: str) -> None:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    with millstream.open_streams(url) as streams, streams.open_consumer(group) as consumer:
        consumer.subscribe([stream])
        print("joined", flush=True)
        while not stopping:
            records = consumer.poll(200, timeout=0.2)
            for r in records:
                print("rec", r.partition, r.offset, (r.value or b"").decode(), flush=True)
            if records:
                try:
                    consumer.commit()
                    print("commit", flush=True)
                except millstream.FencedError:
                    print("fenced", flush=True)
    print("closed", flush=True)


def main(argv: list[str]) -> None:
    command, url, stream, *rest = argv
    if command == "produce":
        produce(url, stream, int(rest[0]), rest[1])
    elif command == "consume":
        consume(url, stream, rest[0])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
