"""The metrics record: what a service instance writes to ``millstream.metrics``, as one type.

``MetricsRecord`` is the only definition of the record's fields. The runtime's ``Metrics``
writes it; ``millstream top``, the Prometheus exposition, ``millstream.observe`` and any
service that reads the stream (``app.stream(METRICS_STREAM, MetricsRecord)``) read it. On the
wire it is one JSON object per record::

    {"format": 1, "kind": "service", "app": ..., "service": ..., "group": ...,
     "instance": "host:pid", "run": "<12 hex digits, new for every run>", "version": ...,
     "time_ms": ..., "started_ms": ..., "interval_ms": ...,
     "totals":   {"in": n, "out": n, "errors": n, "retries": n, "exceptions": n},
     "interval": {... the same counters since the previous record ...},
     "processing": {"count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"},  # interval
     "histogram": {"buckets": {"<index>": n}, "count", "total_us", "max_us"},      # interval
     "processing_total": {"count", "total_us"},                            # since start
     "lag": {"stream/partition": records}, "assigned": ["stream/partition", ...],
     "inputs": ["orders"], "outputs": ["invoices", "totals"], "stores": ["tables:totals"],
     "streams_in": {"orders": n, "millstream.retry.shop.bill": n},                 # interval
     "streams_out": {"invoices": n, "totals": n},                                   # interval
     "final": false}

``inputs``, ``outputs`` and ``stores`` are what the service declares (its input streams, the
streams it writes — a table output's changelog stream among them, a shadow's streams under
their shadow names — and the stores it uses, ``tables:<name>`` for a table it feeds), so a
reader can draw the topology of an app it never imported. ``streams_in`` and ``streams_out``
count the records read from and written to each stream in the interval (a stream the run has
not touched yet is absent); they add up to ``interval``'s ``in`` and ``out``.

Compatibility: records written before the format had a number carry no ``format`` and are
format 1; older ones have no ``run`` or ``processing_total`` either (read as ``""`` and None).
A missing counter or field reads as its default (the topology fields and per-stream counts
read as empty in records older than them), and fields this reader does not know are
ignored, so adding a field with a default keeps the format's number. Only ``group``,
``instance`` and ``time_ms`` are required. A record of a later format, or with a field of the
wrong type, raises ``DecodeError`` naming the field and the value found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from millstream.codecs import DecodeError
from millstream.runtime._histogram import Histogram

__all__ = ["FORMAT", "Counters", "MetricsRecord", "ProcessingSummary", "ProcessingTotal",
           "RecordedHistogram"]

#: The format this millstream writes and the latest it reads.
FORMAT = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Counters(_Frozen):
    """Records one instance counted since it started (``totals``) or in one interval.

    On the wire the first two are ``in`` and ``out``."""

    records_in: int = 0
    records_out: int = 0
    #: handler failures, retried or not
    errors: int = 0
    retries: int = 0
    #: records given up on (written to ``millstream.exceptions``) or reported
    exceptions: int = 0

    _WIRE: ClassVar[dict[str, str]] = {"in": "records_in", "out": "records_out"}

    @model_validator(mode="before")
    @classmethod
    def _from_wire(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {cls._WIRE.get(k, k): v for k, v in data.items()}
        return data

    @model_serializer
    def _to_wire(self) -> dict[str, int]:
        return {"in": self.records_in, "out": self.records_out, "errors": self.errors,
                "retries": self.retries, "exceptions": self.exceptions}

    def __add__(self, other: Counters) -> Counters:
        return Counters(records_in=self.records_in + other.records_in,
                        records_out=self.records_out + other.records_out,
                        errors=self.errors + other.errors,
                        retries=self.retries + other.retries,
                        exceptions=self.exceptions + other.exceptions)

    def __sub__(self, other: Counters) -> Counters:
        return Counters(records_in=self.records_in - other.records_in,
                        records_out=self.records_out - other.records_out,
                        errors=self.errors - other.errors,
                        retries=self.retries - other.retries,
                        exceptions=self.exceptions - other.exceptions)


class ProcessingSummary(_Frozen):
    """Handler time per record over one interval, in milliseconds (0 when it handled none)."""

    count: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


class RecordedHistogram(_Frozen):
    """One interval's handler times as log-linear buckets (``Histogram.to_dict``): bucket
    index → count, with the exact count, sum and maximum in µs. Instances' histograms merge
    by adding them up (``histogram()`` then ``Histogram.merge``)."""

    buckets: dict[int, int] = {}
    count: int = 0
    total_us: int = 0
    max_us: int = 0

    @classmethod
    def of(cls, histogram: Histogram) -> RecordedHistogram:
        return cls(buckets=dict(sorted(histogram.buckets.items())), count=histogram.count,
                   total_us=histogram.total, max_us=histogram.max)

    def histogram(self) -> Histogram:
        """A new ``Histogram`` holding these counts."""
        hist = Histogram()
        hist.buckets = dict(self.buckets)
        hist.count, hist.total, hist.max = self.count, self.total_us, self.max_us
        return hist


class ProcessingTotal(_Frozen):
    """How many records an instance has timed since it started, and their sum in µs."""

    count: int
    total_us: int


class MetricsRecord(_Frozen):
    """One record of ``millstream.metrics``: a service instance's counters, handler times,
    lag and assignment, every metrics interval and once more (``final``) when it stops
    cleanly. The module docstring shows it on the wire and says what older records hold."""

    schema_name: ClassVar[str] = "millstream.metrics"
    schema_version: ClassVar[int] = FORMAT

    #: the wire format's number; a reader refuses a later one
    format: int = FORMAT
    kind: Literal["service"] = "service"
    app: str = ""
    service: str = ""
    #: the service's consumer group, ``<app>.<service>`` (plus a shadow suffix)
    group: str
    #: the process (and slot), ``host:pid`` or ``host:pid#n``, for people and Prometheus
    instance: str
    #: tells apart two runs that share ``instance`` (a restart in one process); new each run
    run: str = ""
    #: the service's version (``App``'s, or the shadow's)
    version: str = ""
    time_ms: int
    started_ms: int = 0
    #: since the previous record of this run (at least 1)
    interval_ms: int = 0
    totals: Counters = Counters()
    interval: Counters = Counters()
    processing: ProcessingSummary = ProcessingSummary()
    histogram: RecordedHistogram = RecordedHistogram()
    #: since the run started; None in records older than this field
    processing_total: ProcessingTotal | None = None
    #: records not yet read, per ``stream/partition``
    lag: dict[str, int] = {}
    #: the partitions the instance owned, as ``stream/partition``
    assigned: tuple[str, ...] = ()
    #: the streams the service reads, as declared
    inputs: tuple[str, ...] = ()
    #: the streams it writes (a table output's stream among them), as written
    outputs: tuple[str, ...] = ()
    #: the stores it uses (``files``, ``tables:<name>``), its table outputs among them
    stores: tuple[str, ...] = ()
    #: records read from each stream in the interval (its retry stream too)
    streams_in: dict[str, int] = {}
    #: records written to each stream in the interval
    streams_out: dict[str, int] = {}
    #: written by a clean stop, after the run's last commit
    final: bool = False

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value > FORMAT:
            raise ValueError(f"format {value} is newer than this millstream reads (format "
                             f"{FORMAT}); upgrade millstream where the stream is read")
        if value < 1:
            raise ValueError(f"format {value} is not a metrics record format (1 or more)")
        return value

    @classmethod
    def parse(cls, data: bytes | str | Mapping[str, Any]) -> MetricsRecord:
        """The record in ``data`` (its JSON, or the decoded object). Raises ``DecodeError``
        naming each field that does not fit, with the value found."""
        try:
            if isinstance(data, Mapping):
                return cls.model_validate(data)
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            raise DecodeError(f"not a {cls.schema_name} record: {problems}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object written to the stream."""
        return self.model_dump(mode="json")

    def to_json(self) -> bytes:
        """The record's bytes on the stream (compact JSON)."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


def _problem(error: Any) -> str:
    wire = {"records_in": "in", "records_out": "out"}
    where = ".".join(wire.get(str(part), str(part)) for part in error["loc"]) or "(record)"
    if error["type"] == "json_invalid":
        return f"not JSON ({error['msg']})"
    found = repr(error.get("input"))
    if len(found) > 60:
        found = found[:57] + "..."
    if error["type"] == "missing":
        return f"field {where!r} is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"field {where!r}: {message} (found {found})"
