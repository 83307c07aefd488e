"""Resetting where a consumer group reads next: the logic ``millstream groups reset`` and
the console's Groups page share.

A target (``ResetTarget``) is the beginning (``"earliest"``), the end (``"latest"``), an offset,
or a time (``("time", epoch_ms)``: per partition, the first record at or after it);
``parse_reset_target`` reads one from text. ``reset_group`` applies it to one stream of the
group, or every stream the group has read, or one partition (the other partitions keep their
committed offsets). The backend refuses a group with live members (``InvalidRequestError``
naming them): stop its consumers first.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Literal

from millstream.errors import InvalidRequestError, NotFoundError
from millstream.records import StreamPartition
from millstream.streams._base import Streams

__all__ = ["ResetTarget", "describe_target", "offsets_at", "parse_reset_target", "parse_time",
           "reset_group"]

ResetTarget = Literal["earliest", "latest"] | int | tuple[Literal["time"], int]

_SPAN = re.compile(r"(\d+)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_reset_target(text: str, *, now: float | None = None) -> ResetTarget:
    """``beginning``/``earliest``, ``end``/``latest``, an offset (an integer ≥ 0), or a time
    (``parse_time``). Raises ``InvalidRequestError`` naming the text and what is accepted."""
    lowered = text.strip().lower()
    if lowered in ("earliest", "beginning"):
        return "earliest"
    if lowered in ("latest", "end"):
        return "latest"
    if lowered.isdecimal():
        return int(lowered)
    try:
        return ("time", parse_time(text, now=now))
    except InvalidRequestError:
        raise InvalidRequestError(
            f"{text!r} is not 'beginning', 'end', an offset (an integer ≥ 0), a time like "
            "2026-11-27T10:00 or a span ago like 30m") from None


def parse_time(text: str, *, now: float | None = None, assume_utc: bool = False) -> int:
    """A time as epoch milliseconds: a span ago (``30m``, ``2h``, ``1d``, before ``now``,
    seconds since the epoch, the clock's by default) or an ISO time (``2026-11-27T10:00``:
    local time unless it names its offset, or UTC with ``assume_utc``). Raises
    ``InvalidRequestError`` naming the text."""
    given = text.strip()
    span = _SPAN.fullmatch(given.lower())
    if span:
        start = time.time() if now is None else now
        return int((start - int(span[1]) * _UNIT_S[span[2]]) * 1000)
    try:
        moment = dt.datetime.fromisoformat(given)
    except ValueError:
        raise InvalidRequestError(
            f"{text!r} is not a time: give an ISO time like 2026-11-27T10:00 or a span ago "
            "like 30m") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC) if assume_utc else moment.astimezone()
    return int(moment.timestamp() * 1000)


def describe_target(target: ResetTarget) -> str:
    """The target in words: ``the beginning``, ``the end``, ``offset 12``, ``<ISO time>``."""
    if target == "earliest":
        return "the beginning"
    if target == "latest":
        return "the end"
    if isinstance(target, tuple):
        moment = dt.datetime.fromtimestamp(target[1] / 1000, dt.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"offset {target}"


def offsets_at(streams: Streams, stream: str, timestamp_ms: int) -> dict[int, int]:
    """Per partition, the offset of the first record at or after ``timestamp_ms`` (the end if
    none)."""
    with streams.open_consumer() as reader:
        reader.subscribe([stream])
        reader.seek_to_timestamp(timestamp_ms)
        return {sp.partition: reader.position(sp) for sp in reader.assignment()}


def reset_group(streams: Streams, group: str, target: ResetTarget, *,
                stream: str | None = None,
                partition: int | None = None) -> dict[str, dict[StreamPartition, int]]:
    """Set where ``group`` next reads ``stream`` (every stream it has read if None), or only
    ``partition`` of it; returns the offsets set, per stream. Raises ``NotFoundError`` when
    the group has read no stream (and none is named) and ``InvalidRequestError`` while it has
    live members, for a partition the stream does not have, or when resetting one partition
    while another of the stream has no committed offset to keep."""
    admin = streams.admin()
    if partition is not None and stream is None:
        raise InvalidRequestError(
            f"partition {partition} of which stream? Name the stream to reset one partition")
    if stream is None:
        names = sorted({p.stream for p in admin.describe_group(group).partitions})
        if not names:
            raise NotFoundError(
                f"group {group!r} has read no stream yet; name the stream to reset")
    else:
        names = [stream]
    results: dict[str, dict[StreamPartition, int]] = {}
    for name in names:
        if partition is not None:
            results[name] = _reset_partition(streams, group, name, partition, target)
            continue
        to = offsets_at(streams, name, target[1]) if isinstance(target, tuple) else target
        results[name] = admin.reset_offsets(group, name, to)
    return results


def _reset_partition(streams: Streams, group: str, stream: str, partition: int,
                     target: ResetTarget) -> dict[StreamPartition, int]:
    admin = streams.admin()
    info = admin.describe_stream(stream)
    ranges = {p.partition: p for p in info.partitions}
    if partition not in ranges:
        raise InvalidRequestError(
            f"stream {stream!r} has no partition {partition}: its partitions are "
            f"0..{len(ranges) - 1}")
    committed = {p.partition: p.committed for p in admin.describe_group(group).partitions
                 if p.stream == stream}
    missing = sorted(n for n in ranges if n != partition and committed.get(n) is None)
    if missing:
        raise InvalidRequestError(
            f"group {group!r} has no committed offset on {stream!r} partition(s) "
            f"{', '.join(map(str, missing))}, so resetting only partition {partition} would "
            "have to invent one; reset the whole stream instead")
    if target == "earliest":
        offset = ranges[partition].start
    elif target == "latest":
        offset = ranges[partition].end
    elif isinstance(target, tuple):
        offset = offsets_at(streams, stream, target[1])[partition]
    else:
        offset = target
    keep = {n: off for n, off in committed.items() if off is not None}
    chosen = admin.reset_offsets(group, stream, {**keep, partition: offset})
    return {sp: off for sp, off in chosen.items() if sp.partition == partition}
