"""``millstream tail``: print a stream's records, optionally as a consumer group that commits.

Records go to stdout, one header line each (``stream[partition]@offset  key=…  value``);
values that are JSON objects or arrays are pretty-printed below their header, other text is
printed as is (control characters escaped) and binary values as escaped bytes. ``--json``
prints one JSON object per record instead. Progress notes go to stderr.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import click
from rich.json import JSON

from millstream.cli.shared import CliState, console, open_streams, pass_state
from millstream.errors import OffsetOutOfRangeError
from millstream.records import Record, StreamPartition
from millstream.streams._base import Consumer, Streams

__all__ = ["Start", "StartParam", "display_bytes", "tail"]

_POLL_RECORDS = 500


@dataclass(frozen=True, slots=True)
class Start:
    """Where ``--from`` says to start: the beginning, the end, an offset or a time (ms)."""

    kind: Literal["beginning", "end", "offset", "time"]
    value: int = 0


if TYPE_CHECKING:
    _StartBase = click.ParamType[Start]
else:  # ParamType is generic only in recent click; stay importable with older ones
    _StartBase = click.ParamType


class StartParam(_StartBase):
    """``--from``: ``beginning``, ``end``, an offset (``42``) or an ISO-8601 time."""

    name = "beginning|end|OFFSET|TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Start:
        if isinstance(value, Start):
            return value
        text = str(value).strip()
        if text.lower() in ("beginning", "earliest"):
            return Start("beginning")
        if text.lower() in ("end", "latest"):
            return Start("end")
        if text.isdecimal():
            return Start("offset", int(text))
        if text.startswith("-") and text[1:].isdecimal():
            self.fail(f"{text} is negative; offsets start at 0", param, ctx)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not 'beginning', 'end', an offset (like 42) or an ISO time "
                "(like 2026-11-27T14:00:00Z, or 2026-11-27 for midnight local time)",
                param, ctx,
            )
        if moment.tzinfo is None:
            moment = moment.astimezone()  # a time without a zone is local time
        ms = int(moment.timestamp() * 1000)
        if ms < 0:
            self.fail(f"{text!r} is before 1970; give a later time", param, ctx)
        return Start("time", ms)


def _escape_controls(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)


def display_bytes(data: bytes) -> str:
    """Text as text (control characters escaped); anything not UTF-8 as escaped bytes."""
    try:
        return _escape_controls(data.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(data)


def _as_json_object(data: bytes) -> str | None:
    """The value's text if it is a JSON object or array, else None."""
    if not data or data.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        text = data.decode("utf-8")
        json.loads(text)
    except ValueError:
        return None
    return text


def _encode_field(data: bytes | None) -> tuple[str | None, str]:
    if data is None:
        return None, "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _print_json_line(record: Record) -> None:
    key, key_encoding = _encode_field(record.key)
    value, value_encoding = _encode_field(record.value)
    out: dict[str, object] = {
        "stream": record.stream, "partition": record.partition, "offset": record.offset,
        "timestamp": record.timestamp, "key": key, "value": value,
    }
    if key_encoding != "utf-8":
        out["key_encoding"] = key_encoding
    if value_encoding != "utf-8":
        out["value_encoding"] = value_encoding
    if record.headers:
        out["headers"] = {n: display_bytes(v) if v is not None else None
                          for n, v in record.headers}
    click.echo(json.dumps(out, ensure_ascii=False))


class _Printer:
    def __init__(self, as_json: bool) -> None:
        self._as_json = as_json
        self._console = console()

    def __call__(self, record: Record) -> None:
        if self._as_json:
            _print_json_line(record)
            return
        head = click.style(f"{record.stream}[{record.partition}]@{record.offset}", dim=True)
        if record.key is not None:
            head += "  " + click.style(f"key={display_bytes(record.key)}", fg="cyan")
        if record.value is None:
            click.echo(head + "  " + click.style("(tombstone)", fg="yellow"))
            return
        pretty = _as_json_object(record.value)
        if pretty is None:
            click.echo(head + "  " + display_bytes(record.value))
            return
        click.echo(head)
        self._console.print(JSON(pretty, indent=2))


def _seek(streams: Streams, consumer: Consumer, start: Start,
          partitions: list[StreamPartition]) -> None:
    """Apply ``--from`` to newly assigned partitions. An offset past the end of some
    partitions (a keyed stream fills them unevenly) starts those at their end."""
    if not partitions:
        return
    if start.kind == "beginning":
        consumer.seek_to_beginning(partitions)
    elif start.kind == "end":
        consumer.seek_to_end(partitions)
    elif start.kind == "time":
        consumer.seek_to_timestamp(start.value, partitions)
    else:
        info = streams.admin().describe_stream(partitions[0].stream)
        ranges = {p.partition: (p.start, p.end) for p in info.partitions}
        if all(start.value > ranges[sp.partition][1] for sp in partitions):
            ends = ", ".join(f"{sp} ends at {ranges[sp.partition][1]}" for sp in partitions)
            raise OffsetOutOfRangeError(
                f"--from {start.value} is past the end of every partition ({ends}); give a "
                "smaller offset, or --from end to wait for new records"
            )
        for sp in partitions:
            first, end = ranges[sp.partition]
            if start.value < first:
                raise OffsetOutOfRangeError(
                    f"--from {start.value}: {sp} starts at offset {first} (retention removed "
                    f"the records before it); use --from {first} or --from beginning"
                )
            consumer.seek(sp, min(start.value, end))


@click.command("tail")
@click.argument("stream")
@click.option(
    "-g", "--group", metavar="GROUP",
    help="Read as a member of consumer group GROUP: start where the group left off "
         "(unless --from is given) and commit what was printed (and where --from moved it).",
)
@click.option(
    "--from", "start", type=StartParam(), metavar="beginning|end|OFFSET|TIME",
    help="Where to start: the beginning (the default without --group), the end (only new "
         "records), an offset in every partition, or an ISO time such as "
         "2026-11-27T14:00:00Z.",
)
@click.option("-f", "--follow", is_flag=True,
              help="Keep waiting for new records (stop with Ctrl-C).")
@click.option("-n", "--max", "max_records", type=click.IntRange(min=1), metavar="N",
              help="Stop after N records.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per record (key and value as text, or base64 "
                   "with key_encoding/value_encoding when they are not UTF-8).")
@pass_state
def tail(state: CliState, stream: str, group: str | None, start: Start | None, follow: bool,
         max_records: int | None, as_json: bool) -> None:
    """Print the records of STREAM, oldest first; with --follow, keep printing new ones.

    \b
    Example:
      millstream tail orders --from beginning --max 10
      millstream tail orders --from end --follow
      millstream tail orders --group audit --json
    """
    if start is None and group is None:
        start = Start("beginning")
    printer = _Printer(as_json)
    printed = 0
    idle = False
    with open_streams(state) as streams:
        consumer = streams.open_consumer(group)
        try:
            def on_assign(partitions: list[StreamPartition]) -> None:
                if start is not None:
                    _seek(streams, consumer, start, partitions)

            consumer.subscribe([stream], on_assign=on_assign)
            while max_records is None or printed < max_records:
                want = _POLL_RECORDS if max_records is None else min(
                    _POLL_RECORDS, max_records - printed)
                records = consumer.poll(max_records=want, timeout=0.5 if follow else 0.2)
                for record in records:
                    printer(record)
                printed += len(records)
                if group is not None and records:
                    consumer.commit()
                if not follow and (not records or sum(consumer.lag().values()) == 0):
                    break
            if group is not None:
                consumer.commit()  # also when nothing was printed: --from moves the group
                idle = not consumer.assignment()
        except KeyboardInterrupt:
            pass  # what was printed is committed; stop quietly
        finally:
            consumer.close()
    note = f"{printed} record(s) from {stream}"
    if group is not None:
        note += f"; group {group!r} committed past them"
        if idle:
            note += " (this member got no partitions: other live members of the group own them)"
    click.echo(note, err=True)
