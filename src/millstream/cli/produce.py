"""``millstream produce``: append the lines of stdin or a file to a stream, one record each.

Only what the stream acknowledged is reported: the producer is flushed (closed) before the
count is printed, and a record whose write failed is not counted.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from millstream.cli.shared import CliState, console, open_streams, pass_state
from millstream.errors import InvalidRequestError, MillstreamError
from millstream.records import Position
from millstream.streams._base import Producer, SendHandle

__all__ = ["produce", "summarize"]

_PROGRESS_STEP = 256 * 1024  # bytes read between progress-bar updates


def summarize(stream: str, positions: list[Position]) -> str:
    """One line: how many records were acknowledged, and on which partitions and offsets."""
    if not positions:
        return f"acknowledged 0 records to stream {stream!r}"
    spans: dict[int, list[int]] = {}
    for pos in positions:
        span = spans.get(pos.partition)
        if span is None:
            spans[pos.partition] = [1, pos.offset, pos.offset]
        else:
            span[0] += 1
            span[1] = min(span[1], pos.offset)
            span[2] = max(span[2], pos.offset)
    noun = "record" if len(positions) == 1 else "records"
    parts = ", ".join(
        f"partition {p}: {n} (offsets {lo}..{hi})" for p, (n, lo, hi) in sorted(spans.items())
    )
    return f"acknowledged {len(positions)} {noun} to stream {stream!r}: {parts}"


def _acknowledged(handles: list[SendHandle]) -> list[Position]:
    out = []
    for handle in handles:
        if not handle.done():
            continue
        try:
            out.append(handle.wait(0))
        except MillstreamError:
            continue  # not stored: not acknowledged, not counted
    return out


def _regular_file_size(source: BinaryIO) -> int | None:
    """The size of ``source`` if it is a regular file (worth a progress bar), else None."""
    try:
        info = os.fstat(source.fileno())
    except (OSError, ValueError):
        return None  # a pipe, a terminal, or an in-memory stream
    return info.st_size if stat.S_ISREG(info.st_mode) else None


@contextmanager
def _progress(source: BinaryIO) -> Iterator[Progress | None]:
    """For a named file, a progress bar on stderr that tracks bytes read; else None."""
    size = _regular_file_size(source)
    name = getattr(source, "name", "")
    if size is None or not isinstance(name, str) or name in ("-", "<stdin>"):
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=console(stderr=True), transient=True,
    )
    with progress:
        progress.add_task(f"reading {Path(name).name}", total=size or None)
        yield progress


def _send_lines(producer: Producer, stream: str, source: BinaryIO, progress: Progress | None,
                separator: bytes | None, partition: int | None,
                handles: list[SendHandle]) -> int:
    """Send one record per non-empty line; return how many empty lines were skipped."""
    skipped = 0
    unreported = 0
    for lineno, raw in enumerate(source, 1):
        if progress is not None:
            unreported += len(raw)
            if unreported >= _PROGRESS_STEP:
                progress.advance(progress.task_ids[0], unreported)
                unreported = 0
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            skipped += 1
            continue
        key = None
        if separator is not None:
            key, found, line = line.partition(separator)
            if not found:
                raise InvalidRequestError(
                    f"line {lineno} has no key separator {separator.decode()!r}; write each "
                    "line as KEY<SEP>VALUE, or leave out --key-separator to send lines unkeyed"
                )
        handles.append(producer.send(stream, line, key=key, partition=partition))
    if progress is not None:
        progress.advance(progress.task_ids[0], unreported)
    return skipped


@click.command("produce")
@click.argument("stream")
@click.argument("file", type=click.File("rb"), default="-")
@click.option(
    "-k", "--key-separator", metavar="SEP",
    help="Split each line at the first SEP into KEY and VALUE (records with the same key go "
         "to the same partition). Without it, lines are sent without a key.",
)
@click.option(
    "-p", "--partition", type=click.IntRange(min=0),
    help="Send every record to this partition instead of choosing one by key.",
)
@pass_state
def produce(state: CliState, stream: str, file: BinaryIO, key_separator: str | None,
            partition: int | None) -> None:
    """Append each line of FILE (default: stdin) to STREAM as one record.

    Empty lines are skipped. When the input ends, waits until every record is stored and
    prints how many were acknowledged, per partition.

    \b
    Example:
      printf 'alice:hello\\nbob:hi\\n' | millstream produce greetings --key-separator :
      millstream produce orders orders.jsonl
    """
    separator = None
    if key_separator is not None:
        if not key_separator:
            raise click.BadParameter("give a non-empty separator, e.g. ':'",
                                     param_hint="'--key-separator'")
        separator = key_separator.encode()
    with open_streams(state) as streams:
        info = streams.admin().describe_stream(stream)
        if partition is not None and partition >= info.partition_count:
            raise click.BadParameter(
                f"{partition} is out of range: stream {stream!r} has partitions "
                f"0..{info.partition_count - 1}", param_hint="'--partition'",
            )
        handles: list[SendHandle] = []
        failure: BaseException | None = None
        skipped = 0
        producer = streams.open_producer()
        try:
            with _progress(file) as progress:
                skipped = _send_lines(producer, stream, file, progress, separator, partition,
                                      handles)
        except (MillstreamError, KeyboardInterrupt) as exc:
            failure = exc
        try:
            producer.close()  # flushes: waits for every acknowledgement
        except MillstreamError as exc:
            failure = failure or exc
    acked = _acknowledged(handles)
    click.echo(summarize(stream, acked))
    if skipped:
        click.echo(f"skipped {skipped} empty line(s)", err=True)
    if len(acked) < len(handles):
        click.secho(f"{len(handles) - len(acked)} record(s) were sent but not stored",
                    fg="red", err=True)
    if isinstance(failure, KeyboardInterrupt):
        raise click.exceptions.Exit(130)
    if failure is not None:
        raise failure
    if len(acked) < len(handles):
        raise click.exceptions.Exit(1)
