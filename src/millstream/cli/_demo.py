"""``millstream demo``: a producer → consumer-group round trip on the embedded log.

What it shows, in under a minute on a laptop and with no server:

1. a stream ``demo.orders`` with 4 partitions (created if missing);
2. a consumer group ``demo-billing`` of two consumer *processes* that split the partitions
   between them, each counting the orders it reads and summing their amounts;
3. a producer sending JSON orders keyed by customer, with a progress bar of the records
   acknowledged (durably stored);
4. a second progress bar fed by the group's committed offsets, until the group has caught up;
5. a summary: rates, what each member consumed, lag, where the data lives, what to try next.

Running it again appends to the same stream; the group's offsets are first moved to the
stream's current end, so each run counts exactly its own records.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from millstream.errors import FencedError, InvalidRequestError, MillstreamError
from millstream.records import StreamPartition
from millstream.streams import open_streams
from millstream.streams._base import BatchHandle, Streams

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event

__all__ = ["CONSUMERS", "GROUP", "PARTITIONS", "STREAM", "run"]

STREAM = "demo.orders"
GROUP = "demo-billing"
PARTITIONS = 4
CONSUMERS = 2
CUSTOMERS = 1_000

_CHUNK = 5_000  # records per send_batch call
_IN_FLIGHT = 8  # unacknowledged chunks before the producer waits
_UI_INTERVAL_S = 0.1
_COMMIT_INTERVAL_S = 0.05
_SETTLE_TIMEOUT_S = 30.0  # for the group to form (covers an expired session of a killed run)
_STALL_TIMEOUT_S = 60.0  # consumption made no progress for this long: give up


def _amount_cents(order: int) -> int:
    return (order * 7919) % 10_000 + 99


def _order_json(run_id: str, order: int, customer: int) -> bytes:
    return b'{"run":"%s","order":%d,"customer":"customer-%04d","amount_cents":%d}' % (
        run_id.encode(), order, customer, _amount_cents(order))


@dataclass(frozen=True, slots=True)
class MemberResult:
    """What one consumer process read."""

    index: int
    pid: int
    count: int
    amount_cents: int
    stale: int  # records of other runs (there should be none)
    error: str | None = None


# -- the consumer processes -------------------------------------------------------------------


def _consume(url: str, index: int, run_id: str, stop: Event,
             results: Queue[MemberResult]) -> None:
    """One member of the demo group (runs in a spawned process): read, count, sum, commit."""
    count = total = stale = 0
    error: str | None = None
    marker = f'"run":"{run_id}"'.encode()
    try:
        with open_streams(url) as streams, streams.open_consumer(group=GROUP) as consumer:
            def commit_before_losing(_partitions: list[StreamPartition]) -> None:
                # Commit what this member counted before its partitions move to the other
                # member, so nothing is counted twice.
                try:
                    consumer.commit()
                except FencedError:
                    pass  # the partitions already moved (our lease expired): nothing to save

            consumer.subscribe([STREAM], on_revoke=commit_before_losing)
            parent = multiprocessing.parent_process()
            dirty = False
            last_commit = time.monotonic()
            while not stop.is_set():
                if parent is not None and not parent.is_alive():
                    error = "the demo process went away"  # killed: do not linger as an orphan
                    break
                records = consumer.poll(max_records=2_000, timeout=0.1)
                for record in records:
                    value = record.value or b"{}"
                    if marker not in value:
                        stale += 1
                        continue
                    total += json.loads(value)["amount_cents"]
                    count += 1
                if records:
                    dirty = True
                now = time.monotonic()
                if dirty and (not records or now - last_commit >= _COMMIT_INTERVAL_S):
                    consumer.commit()
                    dirty, last_commit = False, now
            if dirty:
                consumer.commit()
    except KeyboardInterrupt:
        error = "interrupted"
    except (MillstreamError, OSError, ValueError, KeyError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    results.put(MemberResult(index, os.getpid(), count, total, stale, error))


# -- helpers for the main process ---------------------------------------------------------------


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:>9,.0f}/s" if speed else " " * 11, style="progress.data.speed")


def _committed(streams: Streams, starts: Mapping[int, int]) -> tuple[int, int]:
    """(records of this run the group has committed, the group's lag on the stream)."""
    info = streams.admin().describe_group(GROUP)
    done = lag = 0
    for p in info.partitions:
        if p.stream != STREAM or p.partition not in starts:
            continue
        start = starts[p.partition]
        done += max((p.committed if p.committed is not None else start) - start, 0)
        lag += p.lag
    return done, lag


def _start_group_at_end(streams: Streams) -> dict[int, int]:
    """Move the group's offsets to the stream's end, so this run's members read only this
    run's records; return those offsets by partition. Waits out the session of members left
    by a killed earlier run (live members refuse the reset)."""
    deadline = time.monotonic() + _SETTLE_TIMEOUT_S
    while True:
        try:
            offsets = streams.admin().reset_offsets(GROUP, STREAM, "latest")
        except InvalidRequestError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        return {sp.partition: offset for sp, offset in offsets.items()}


def _wait(check: Callable[[], bool], timeout: float, procs: list[SpawnProcess]) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline or any(p.exitcode is not None for p in procs):
            return False
        time.sleep(0.05)
    return True


def _group_ready(streams: Streams) -> bool:
    info = streams.admin().describe_group(GROUP)
    return len(info.members) == CONSUMERS and all(m.partitions for m in info.members)


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} records/s" if seconds > 0 else "—"


def _dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


# -- the demo --------------------------------------------------------------------------------


def run(streams_url: str | None = None, records: int = 100_000) -> int:
    """Run the demo on ``streams_url`` (default: the configured backend); return an exit code."""
    console = Console(highlight=False)
    if type(records) is not int or records < 0:
        console.print(f"[red]records={records!r}: give a whole number ≥ 0[/red]")
        return 2
    run_id = uuid.uuid4().hex[:12]
    with open_streams(streams_url) as streams:
        admin = streams.admin()
        admin.ensure_stream(STREAM, partitions=PARTITIONS)
        starts = _start_group_at_end(streams)

        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        results: Queue[MemberResult] = ctx.Queue()
        procs = [
            ctx.Process(target=_consume, args=(streams.url, i, run_id, stop, results),
                        name=f"demo-consumer-{i + 1}", daemon=True)
            for i in range(CONSUMERS)
        ]
        members: list[MemberResult] = []
        try:
            with console.status(f"starting {CONSUMERS} consumer processes in group {GROUP} …"):
                for proc in procs:
                    proc.start()
                ready = _wait(lambda: _group_ready(streams), _SETTLE_TIMEOUT_S, procs)
            if not ready:
                console.print(f"[yellow]the consumer group did not settle within "
                              f"{_SETTLE_TIMEOUT_S:.0f} s; going on anyway[/yellow]")

            progress = Progress(
                TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                _RateColumn(), TimeElapsedColumn(), console=console,
            )
            with progress:
                sent = progress.add_task("produced, acknowledged", total=records)
                seen = progress.add_task("consumed, committed", total=records)
                t0 = time.monotonic()
                consumed = 0
                next_ui = 0.0

                def show_consumed() -> None:
                    nonlocal consumed, next_ui
                    consumed = _committed(streams, starts)[0]
                    progress.update(seen, completed=consumed)
                    next_ui = time.monotonic() + _UI_INTERVAL_S

                with streams.open_producer() as producer:
                    pending: deque[tuple[BatchHandle, int]] = deque()
                    acked = 0
                    for base in range(0, records, _CHUNK):
                        orders = range(base, min(base + _CHUNK, records))
                        customers = [(o * 37) % CUSTOMERS for o in orders]
                        pending.append((producer.send_batch(
                            STREAM,
                            [_order_json(run_id, o, c) for o, c in zip(orders, customers,
                                                                       strict=True)],
                            keys=[b"customer-%04d" % c for c in customers],
                        ), len(orders)))
                        while pending and (pending[0][0].done() or len(pending) > _IN_FLIGHT):
                            handle, n = pending.popleft()
                            handle.wait()
                            acked += n
                        progress.update(sent, completed=acked)
                        if time.monotonic() >= next_ui:
                            show_consumed()
                    producer.flush()
                    for handle, _ in pending:
                        handle.wait()
                produce_s = time.monotonic() - t0
                progress.update(sent, completed=records)

                last, last_change = -1, time.monotonic()
                while consumed < records:
                    show_consumed()
                    if consumed != last:
                        last, last_change = consumed, time.monotonic()
                    dead = [p for p in procs if p.exitcode is not None]
                    if dead or time.monotonic() - last_change > _STALL_TIMEOUT_S:
                        break
                    time.sleep(_UI_INTERVAL_S / 2)
                end_to_end_s = time.monotonic() - t0

            stop.set()
            deadline = time.monotonic() + 30
            while len(members) < CONSUMERS and time.monotonic() < deadline:
                try:
                    members.append(results.get(timeout=0.5))
                except queue.Empty:
                    if all(p.exitcode is not None for p in procs):
                        break
        finally:
            stop.set()
            for proc in procs:
                if proc.pid is None:
                    continue
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.terminate()
                    proc.join()
            results.close()
            results.join_thread()

        done, lag = _committed(streams, starts)
        where = getattr(streams, "path", None) or streams.url
        return _summary(console, records=records, produce_s=produce_s,
                        end_to_end_s=end_to_end_s, members=sorted(members, key=lambda m: m.index),
                        committed=done, lag=lag, where=str(where), url=streams.url)


def _summary(console: Console, *, records: int, produce_s: float, end_to_end_s: float,
             members: list[MemberResult], committed: int, lag: int, where: str,
             url: str) -> int:
    expected_cents = sum(_amount_cents(o) for o in range(records))
    consumed = sum(m.count for m in members)
    cents = sum(m.amount_cents for m in members)
    problems = [f"consumer {m.index + 1} (pid {m.pid}) failed: {m.error}"
                for m in members if m.error]
    if len(members) < CONSUMERS:
        problems.append(f"only {len(members)} of {CONSUMERS} consumer processes reported back")
    if consumed != records or cents != expected_cents:
        problems.append(f"the group counted {consumed:,} records worth {_dollars(cents)}; "
                        f"expected {records:,} worth {_dollars(expected_cents)}")
    if any(m.stale for m in members):
        problems.append(f"{sum(m.stale for m in members):,} records of earlier runs were read")
    if committed != records or lag:
        problems.append(f"the group committed {committed:,} of {records:,} records (lag {lag:,})")

    ok = "[green]✓[/green]"
    table = Table(title="millstream demo", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("records produced", f"{records:,} JSON orders to {STREAM}, keyed by "
                  f"{min(records, CUSTOMERS):,} customers")
    table.add_row("produce rate", f"{_rate(records, produce_s)} ({produce_s:.2f} s to "
                  "acknowledged, i.e. durably stored)")
    for m in members:
        table.add_row(f"consumer {m.index + 1} (pid {m.pid})",
                      f"{m.count:,} records, {_dollars(m.amount_cents)}")
    table.add_row("consumed in total", f"{consumed:,} records, {_dollars(cents)} "
                  + (ok if consumed == records and cents == expected_cents else "[red]✗[/red]"))
    table.add_row(f"lag of {GROUP}", f"{lag:,} " + (ok if lag == 0 else "[red]✗[/red]"))
    table.add_row("end-to-end", f"{end_to_end_s:.2f} s from the first send to the last commit")
    table.add_row("data lives in", f"{where}  [dim]({url})[/dim]")
    console.print()
    console.print(table)
    for problem in problems:
        console.print(f"[red]problem:[/red] {problem}")
    console.print("\nTry next:")
    for command in (f"millstream streams describe {STREAM}",
                    f"millstream tail {STREAM} --from beginning --max 5",
                    f"millstream groups describe {GROUP}"):
        console.print(f"  [cyan]{command}[/cyan]")
    return 1 if problems else 0
