"""Exception records: what the runtime writes when it gives up on an input record.

One JSON document per failed input record, on ``millstream.exceptions`` keyed by the group::

    {"app", "service", "group", "instance", "version", "time_ms",
     "input": {"stream", "partition", "offset", "timestamp", "key_b64", "headers"},
     "value_b64": <the raw input, base64> | null, "value_size": n, "value_ref": null,
     "stage": "decode" | "handle" | "encode" | "state" | "reported" | "late",
     "error": {"type": "module.Class", "message": ..., "traceback": ...},
     "attempts": n, "replay_of": <exception offset> | null}

The raw input is stored whole up to ``INLINE_LIMIT`` bytes; a larger one is stored as its
position only (``value_b64`` null, ``value_ref`` = ``stream/partition/offset``), and replay
re-reads it from the input stream while the stream still retains it. Stage ``reported`` is
an input the handler processed but reported with ``ctx.report`` (not a failure to process);
stage ``late`` is a record a windowed service got after every window it belongs to closed.
"""

from __future__ import annotations

import base64
import json
import time
import traceback
from dataclasses import dataclass
from typing import Any

from millstream.records import Headers, Record

__all__ = ["INLINE_LIMIT", "ExceptionRecord", "describe_failure", "parse_exception"]

INLINE_LIMIT = 256 * 1024


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def _unb64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text is not None else None


def _headers_json(headers: Headers) -> list[list[str | None]]:
    return [[name, _b64(value)] for name, value in headers]


def describe_failure(identity: dict[str, str], record: Record, stage: str,
                     error: BaseException, attempts: int, replay_of: int | None,
                     time_ms: int | None = None) -> bytes:
    """The exceptions-stream document for ``record`` (JSON bytes)."""
    value = record.value
    inline = value is None or len(value) <= INLINE_LIMIT
    doc: dict[str, Any] = {
        **identity,
        "time_ms": time_ms if time_ms is not None else int(time.time() * 1000),
        "input": {
            "stream": record.stream, "partition": record.partition, "offset": record.offset,
            "timestamp": record.timestamp, "key_b64": _b64(record.key),
            "headers": _headers_json(record.headers),
        },
        "value_b64": _b64(value) if inline else None,
        "value_size": len(value) if value is not None else None,
        "value_null": value is None,
        "value_ref": None if inline else f"{record.stream}/{record.partition}/{record.offset}",
        "stage": stage,
        "error": {
            "type": f"{type(error).__module__}.{type(error).__qualname__}",
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
        "attempts": attempts,
        "replay_of": replay_of,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class ExceptionRecord:
    """An exception record read back (for ``millstream exceptions`` and replay)."""

    id: int  # its offset in the exceptions stream
    document: dict[str, Any]

    @property
    def group(self) -> str:
        return str(self.document.get("group", ""))

    @property
    def service(self) -> str:
        return str(self.document.get("service", ""))

    @property
    def input(self) -> dict[str, Any]:
        value = self.document.get("input", {})
        return value if isinstance(value, dict) else {}

    @property
    def error_type(self) -> str:
        return str(self.document.get("error", {}).get("type", ""))

    @property
    def message(self) -> str:
        return str(self.document.get("error", {}).get("message", ""))

    @property
    def stage(self) -> str:
        """Where it failed (``decode``, ``handle`` ...), or ``reported`` by the handler."""
        return str(self.document.get("stage", ""))

    @property
    def reported(self) -> bool:
        """Handled by design, not a failure: a ``ctx.report``, a window's or a join's late
        record, an inner join's unmatched record reported as asked. The input was
        processed; replaying it processes it again (a late record is late again)."""
        return self.stage in ("reported", "late", "join")

    @property
    def attempts(self) -> int:
        return int(self.document.get("attempts", 0))

    def key(self) -> bytes | None:
        return _unb64(self.input.get("key_b64"))

    def value(self) -> bytes | None:
        """The raw input if stored inline (None for a tombstone or a by-reference value)."""
        return _unb64(self.document.get("value_b64"))

    @property
    def by_reference(self) -> bool:
        return self.document.get("value_ref") is not None

    def headers(self) -> Headers:
        pairs = self.input.get("headers") or []
        return tuple((str(name), _unb64(value)) for name, value in pairs)


def parse_exception(record: Record) -> ExceptionRecord | None:
    """The exception record stored in ``record``, or None if it is not one."""
    if record.value is None:
        return None
    try:
        doc = json.loads(record.value)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "error" not in doc:
        return None
    return ExceptionRecord(record.offset, doc)
