"""What the join operators share: how a record is kept in a shard, and a shard's event time.

A join keeps records of its inputs in the shard of their partition (``runtime._state``), whose
values must be JSON. A kept record is its value's bytes as written on the stream: the text of
a JSON payload (a model or ``dict`` stream) as is, anything else in base64 (``Packer``); it is
decoded again with the stream's codec when a match needs it. Keys are the records' keys as
text (``key_text``; bytes that are not UTF-8 survive the round trip).

Event time (``EventTime``): a record's time is its stream timestamp or a payload field (a
``datetime``, naive meaning UTC, or seconds since the epoch), in integer milliseconds, read
as the windows read it (``_windowing.event_time_of``). A shard keeps the largest time seen
on each of its two inputs (``"~t0"``, ``"~t1"``); its watermark is the smaller of the two
minus ``lateness`` (none until both inputs have shown a time), so an input read far ahead of
the other — a backlog, a replay — does not make the other's records late. It never goes back,
and it is kept in the shard, so it is checkpointed and replays identically.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Callable, MutableMapping
from datetime import datetime
from typing import Any

from millstream.codecs import Codec, JsonCodec, ModelCodec
from millstream.records import Record
from millstream.runtime._windowing import event_time_of

__all__ = ["NO_TIME", "EventTime", "Packer", "Shard", "key_bytes", "key_text", "push_back"]

#: what a join's state is: a shard (or any mapping of JSON values, in tests)
Shard = MutableMapping[str, Any]

#: the watermark of a shard that has seen no record
NO_TIME = -(2**62)

#: the shard keys holding the largest event time seen on each input (int ms)
_MAX_TIME = ("~t0", "~t1")


def push_back(shard: Shard, name: str, entries: list[list[Any]]) -> None:
    """Push ``entries`` back onto the heap the shard keeps under ``name`` (what an attempt
    took off it, when the attempt failed)."""
    if not entries:
        return
    heap = list(shard.get(name) or ())
    for entry in entries:
        heapq.heappush(heap, entry)
    shard[name] = heap


def key_text(key: bytes) -> str:
    """A record key as state text (undecodable bytes kept as surrogates: ``key_bytes``
    gives them back)."""
    return key.decode("utf-8", "surrogateescape")


def key_bytes(text: str) -> bytes:
    """The record key ``key_text`` gave ``text`` for."""
    return text.encode("utf-8", "surrogateescape")


class Packer:
    """Turns a record's value bytes into JSON-storable text and back into the decoded value
    with the stream's codec."""

    __slots__ = ("_codec", "_text")

    def __init__(self, codec: Codec[Any]) -> None:
        self._codec = codec
        self._text = isinstance(codec, ModelCodec | JsonCodec)

    def pack(self, data: bytes | None) -> str | None:
        if data is None:
            return None
        if self._text:
            return data.decode("utf-8", "surrogateescape")
        return base64.b64encode(data).decode("ascii")

    def unpack(self, stored: str | None) -> Any:
        if stored is None:
            return self._codec.decode(None, ())
        data = (stored.encode("utf-8", "surrogateescape") if self._text
                else base64.b64decode(stored))
        return self._codec.decode(data, ())


class EventTime:
    """Reads a record's event time and keeps a shard's watermark.

    ``field``: None (the record's timestamp), a payload field name, or a function of the
    value returning a time; ``lateness``: how far (ms) the watermark trails the largest time
    seen."""

    __slots__ = ("_of", "lateness")

    def __init__(self, field: str | Callable[[Any], datetime | int | float] | None,
                 lateness_ms: int) -> None:
        self._of = event_time_of(field)
        self.lateness = lateness_ms

    def of(self, value: Any, record: Record) -> int:
        """``record``'s event time (ms); ``value`` is its decoded value."""
        return self._of(value, record.timestamp)

    def watermark(self, shard: Shard) -> int:
        """The shard's watermark: the smaller of its inputs' largest times seen, minus the
        lateness (``NO_TIME`` until both inputs have one)."""
        first, second = shard.get(_MAX_TIME[0]), shard.get(_MAX_TIME[1])
        if first is None or second is None:
            return NO_TIME
        return min(int(first), int(second)) - self.lateness

    def after(self, shard: Shard, side: int, time_ms: int) -> int:
        """The watermark once a record of input ``side`` at ``time_ms`` is seen (nothing is
        stored: ``see`` does that)."""
        mine, other = shard.get(_MAX_TIME[side]), shard.get(_MAX_TIME[1 - side])
        if other is None:
            return NO_TIME
        return min(time_ms if mine is None else max(int(mine), time_ms),
                   int(other)) - self.lateness

    def see(self, shard: Shard, side: int, time_ms: int) -> int:
        """Note a record of input ``side`` at ``time_ms``; the watermark after it."""
        name = _MAX_TIME[side]
        seen = shard.get(name)
        if seen is None or time_ms > seen:
            shard[name] = time_ms
        return self.watermark(shard)

    def idle(self, shard: Shard, sides: list[int], now_ms: int, idle_ms: int) -> int:
        """Move the inputs ``sides``, idle for ``idle_ms``, to ``now − idle`` (never back);
        the watermark after it."""
        for side in sides:
            self.see(shard, side, now_ms - idle_ms)
        return self.watermark(shard)
