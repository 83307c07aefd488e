"""What the join operators share: how a record is kept in a shard, and a shard's event time.

A join keeps records of its inputs in the shard of their partition (``runtime._state``), whose
values must be JSON. A kept record is its value's bytes as written on the stream: the text of
a JSON payload (a model or ``dict`` stream) as is, anything else in base64 (``Packer``); it is
decoded again with the stream's codec when a match needs it. Keys are the records' keys as
text (``key_text``; bytes that are not UTF-8 survive the round trip).

Event time (``EventTime``): a record's time is its stream timestamp or a payload field (a
``datetime``, naive meaning UTC, or seconds since the epoch), in integer milliseconds. A
shard's watermark is the largest time seen on it minus ``lateness``; it never goes back, and
it is kept in the shard (``"~t"``), so it is checkpointed and replays identically.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from millstream.codecs import Codec, JsonCodec, ModelCodec
from millstream.errors import InvalidRequestError
from millstream.records import Record

__all__ = ["NO_TIME", "EventTime", "Packer", "Shard", "key_bytes", "key_text", "millis"]

#: what a join's state is: a shard (or any mapping of JSON values, in tests)
Shard = MutableMapping[str, Any]

#: the watermark of a shard that has seen no record
NO_TIME = -(2**62)

#: the shard key holding the largest event time seen (int ms)
_MAX_TIME = "~t"


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


def millis(when: object, what: str) -> int:
    """``when`` — a ``datetime`` (naive = UTC) or seconds since the epoch — in ms."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp() * 1000)
    if isinstance(when, int | float) and not isinstance(when, bool):
        return round(when * 1000)
    raise InvalidRequestError(
        f"{what} is {when!r}, which is not a time: give a datetime or a number of seconds "
        "since the epoch (or leave time=None to use the record's timestamp)")


class EventTime:
    """Reads a record's event time and keeps a shard's watermark.

    ``field``: None (the record's timestamp), a payload field name, or a function of the
    value returning a time; ``lateness``: how far (ms) the watermark trails the largest time
    seen."""

    __slots__ = ("_field", "_of", "lateness")

    def __init__(self, field: str | Callable[[Any], object] | None, lateness_ms: int) -> None:
        self._field = field
        self.lateness = lateness_ms
        self._of: Callable[[Any], object] | None
        if field is None:
            self._of = None
        elif callable(field):
            self._of = field
        else:
            name = field
            self._of = (lambda value: value[name] if isinstance(value, dict)
                        else getattr(value, name))

    def of(self, value: Any, record: Record) -> int:
        """``record``'s event time (ms); ``value`` is its decoded value."""
        if self._of is None:
            return record.timestamp
        try:
            when = self._of(value)
        except (AttributeError, KeyError, TypeError) as exc:
            raise InvalidRequestError(
                f"the record's value has no time field {self._field!r} ({exc}); name the "
                "field that holds its event time, or time=None for the record timestamp"
            ) from exc
        return millis(when, f"time field {self._field!r}")

    def watermark(self, shard: Shard) -> int:
        """The shard's watermark: its largest time seen minus the lateness."""
        seen = shard.get(_MAX_TIME)
        return NO_TIME if seen is None else int(seen) - self.lateness

    def see(self, shard: Shard, time_ms: int) -> int:
        """Note a record at ``time_ms``; the watermark after it."""
        seen = shard.get(_MAX_TIME)
        if seen is None or time_ms > seen:
            shard[_MAX_TIME] = seen = time_ms
        return int(seen) - self.lateness

    def idle(self, shard: Shard, now_ms: int, idle_ms: int) -> int:
        """Move the watermark of a shard idle for ``idle_ms`` to ``now − lateness − idle``
        (never back); the watermark after it."""
        return self.see(shard, now_ms - idle_ms)
