"""Reading whole streams back for assertions, and decoding them as the app declared.

A ``StreamReader`` keeps one consumer (no group) per stream and reads what was added since
its last call, so a test that polls a stream many times reads each record once.
"""

from __future__ import annotations

import json
import time
from typing import Any

from millstream.errors import OperationTimeoutError
from millstream.records import Record, StreamPartition
from millstream.service._app import App
from millstream.service._shadow import is_shadow, production_name
from millstream.streams._base import Consumer, Streams

__all__ = ["StreamReader", "decode_record"]


class StreamReader:
    """Every record of one stream so far, in (partition, offset) order."""

    def __init__(self, streams: Streams, stream: str) -> None:
        self._streams = streams
        self.stream = stream
        self._consumer: Consumer | None = None
        self._records: list[Record] = []

    def read(self, timeout: float = 10.0) -> list[Record]:
        """The stream's records up to its current end (read now)."""
        info = self._streams.admin().describe_stream(self.stream)
        if self._consumer is None:
            self._consumer = self._streams.open_consumer()
            self._consumer.subscribe([self.stream])
        consumer = self._consumer
        ends = {StreamPartition(self.stream, p.partition): p.end for p in info.partitions}
        deadline = time.monotonic() + timeout
        fresh: list[Record] = []
        while any(consumer.position(sp) < end for sp, end in ends.items()):
            if time.monotonic() > deadline:
                raise OperationTimeoutError(
                    f"could not read {self.stream} up to its end within {timeout} s"
                )
            fresh += consumer.poll(max_records=10_000, timeout=0.05)
        if fresh:
            self._records = sorted([*self._records, *fresh],
                                   key=lambda r: (r.partition, r.offset))
        return list(self._records)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def decode_record(app: App, record: Record) -> Any:
    """The record's value as the app reads it: its stream's codec (a shadow stream uses the
    codec of the stream it shadows); platform streams (``millstream.*``) as JSON; other
    streams as raw bytes."""
    spec = app.streams.get(record.stream)
    if spec is None and is_shadow(record.stream):
        spec = app.streams.get(production_name(record.stream))
    if spec is not None:
        return spec.codec.decode(record.value, record.headers)
    if record.stream.startswith("millstream.") and record.value is not None:
        try:
            return json.loads(record.value)
        except ValueError:
            return record.value
    return record.value
