"""The processes of a verify run: producers and group consumers, and the final reader.

Each worker records every operation in its own history file (``history.HistoryWriter``) and
runs until SIGTERM (a clean stop: pending acknowledgements awaited, the group left, then
``Stopped`` recorded) or SIGKILL. Run as ``python -m millstream._verify.workers ROLE --streams
URL --stream NAME --history FILE --name NAME --parent PID``; the runner starts them
(``fleet``). A worker never outlives the runner: on Linux the kernel SIGKILLs it when the
runner dies (``PR_SET_PDEATHSIG``), and everywhere it stops once its parent is no longer
``PID``. ``read_all`` is the fresh reader that reads every partition from the start once the
workers are gone.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import millstream
from millstream._verify.history import (
    Ack,
    Assigned,
    Commit,
    Fail,
    HistoryWriter,
    Poll,
    Read,
    Revoked,
    Seen,
    Send,
    Stopped,
)
from millstream.errors import MillstreamError, OperationTimeoutError
from millstream.records import Record, StreamPartition
from millstream.streams._base import SendHandle

__all__ = ["GROUP_SUFFIX", "KEYS", "WINDOW", "die_with_parent", "main", "read_all",
           "run_consumer", "run_producer"]

#: How many sends a producer has in flight before it waits for their acknowledgements.
WINDOW = 20
#: Distinct keys a producer cycles through, so that records spread over every partition.
KEYS = 64
#: The consumer group is the stream's name plus this.
GROUP_SUFFIX = "-group"


#: prctl(2) option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), and exit at once if
    the parent (pid ``parent``) is already gone."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


class _Stop:
    """Set by SIGTERM, or found true once the parent ``parent`` is gone: finish the operation
    in hand, then stop."""

    def __init__(self, parent: int | None) -> None:
        self._signalled = False
        self._parent = parent
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = True

    @property
    def requested(self) -> bool:
        return self._signalled or (self._parent is not None and os.getppid() != self._parent)


def _value(record: Record) -> str:
    return (record.value or b"").decode("utf-8", errors="backslashreplace")


def run_producer(url: str, stream: str, history: Path, name: str,
                 parent: int | None = None) -> None:
    """Send ``NAME:SEQ`` values (never one value twice) until stopped, recording each send
    before it is handed to the producer and each acknowledgement or failure after."""
    stop = _Stop(parent)  # before the history file: the fleet takes the file as "ready to stop"
    with HistoryWriter(history) as out, millstream.open_streams(url) as streams:
        producer = streams.open_producer()
        seq = 0
        try:
            while not stop.requested:
                window: list[tuple[str, SendHandle]] = []
                for _ in range(WINDOW):
                    value, key = f"{name}:{seq}", f"k{seq % KEYS}"
                    seq += 1
                    out.write(Send(value, key))
                    window.append((value, producer.send(stream, value.encode(),
                                                        key=key.encode())))
                for value, handle in window:
                    try:
                        pos = handle.wait()
                    except OperationTimeoutError:
                        continue  # indeterminate: recorded as sent, neither acked nor failed
                    except MillstreamError as exc:
                        out.write(Fail(value, str(exc)[:300]))
                        continue
                    out.write(Ack(value, pos.partition, pos.offset))
        finally:
            producer.close()
        out.write(Stopped())


def run_consumer(url: str, stream: str, history: Path, name: str,
                 parent: int | None = None) -> None:
    """Poll as a member of the run's group until stopped, recording every assignment change,
    every non-empty poll, and every commit the backend confirmed (after each poll, the offsets
    after the records just recorded); assignments and commits with the time they happened."""
    stop = _Stop(parent)  # before the history file, as in run_producer
    with HistoryWriter(history) as out, millstream.open_streams(url) as streams:
        consumer = streams.open_consumer(stream + GROUP_SUFFIX, offset_reset="earliest")
        try:
            consumer.subscribe(
                [stream],
                on_assign=lambda ps: out.write(
                    Assigned(tuple(p.partition for p in ps), time.monotonic())),
                on_revoke=lambda ps: out.write(
                    Revoked(tuple(p.partition for p in ps), time.monotonic())))
            while not stop.requested:
                records = consumer.poll(500, 0.5)
                if not records:
                    continue
                out.write(Poll(tuple(Seen(r.partition, r.offset, _value(r)) for r in records)))
                nexts = {StreamPartition(stream, r.partition): r.offset + 1 for r in records}
                try:
                    consumer.commit(nexts)
                except MillstreamError:
                    continue  # not confirmed (e.g. the partition moved): not recorded
                out.write(Commit(tuple(sorted((sp.partition, o) for sp, o in nexts.items())),
                                 time.monotonic()))
        finally:
            consumer.close()
        out.write(Stopped())


def read_all(url: str, stream: str, history: Path, timeout: float = 120.0) -> int:
    """Read every partition of ``stream`` from its start to its current end with a fresh
    consumer outside the group, recording what it returns; return how many records.

    Raises ``OperationTimeoutError`` if the end is not reached within ``timeout`` seconds.
    """
    total = 0
    with HistoryWriter(history) as out, millstream.open_streams(url) as streams:
        info = streams.admin().describe_stream(stream)
        ends = {StreamPartition(stream, p.partition): p.end for p in info.partitions}
        with streams.open_consumer(None) as reader:
            reader.subscribe([stream])
            reader.seek_to_beginning(list(ends))
            deadline = time.monotonic() + timeout
            while any(reader.position(sp) < end for sp, end in ends.items()):
                if time.monotonic() > deadline:
                    behind = {str(sp): (reader.position(sp), end) for sp, end in ends.items()
                              if reader.position(sp) < end}
                    raise OperationTimeoutError(
                        f"the final read of {stream!r} did not reach the end within "
                        f"{timeout:.0f} s (position, end): {behind}")
                records = reader.poll(1000, 1.0)
                if records:
                    total += len(records)
                    out.write(Read(tuple(Seen(r.partition, r.offset, _value(r))
                                         for r in records)))
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m millstream._verify.workers")
    parser.add_argument("role", choices=("producer", "consumer"))
    parser.add_argument("--streams", required=True, help="the streams URL")
    parser.add_argument("--stream", required=True)
    parser.add_argument("--history", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--parent", type=int, help="stop once this pid is no longer the parent")
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    run = run_producer if args.role == "producer" else run_consumer
    run(args.streams, args.stream, args.history, args.name, args.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
