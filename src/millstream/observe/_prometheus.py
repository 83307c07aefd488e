"""Prometheus: the health of every service in the text exposition format 0.0.4, and a small
HTTP server that answers ``GET /metrics`` with it.

``prometheus_text`` renders a ``Snapshot`` (or a ``MetricsView``'s snapshot now): per instance
the five counters since it started, ``millstream_up`` and a ``millstream_processing_seconds``
summary (quantiles over the latest interval; count and sum since start); per service
``millstream_stalled``; per group and partition ``millstream_lag``. An instance name restarted
by a new run continues one series (its counters restart from 0: a counter reset).
``MetricsServer`` serves it (stdlib ``http.server``, one request at a time).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from millstream.observe._health import InstanceView, Snapshot
from millstream.observe._reader import MetricsView
from millstream.runtime._metrics_record import Counters

__all__ = ["CONTENT_TYPE", "MetricsServer", "prometheus_text"]

log = logging.getLogger(__name__)

#: The Prometheus text exposition format's content type.
CONTENT_TYPE = "text/plain; version=0.0.4"

_INSTANCE_LABELS = ("app", "service", "group", "instance")
#: (metric name, help, its value in the instance's ``Counters``) per counter
_COUNTERS: tuple[tuple[str, str, Callable[[Counters], int]], ...] = (
    ("millstream_records_in_total", "Records the instance read and handled.",
     lambda c: c.records_in),
    ("millstream_records_out_total", "Records the instance wrote.", lambda c: c.records_out),
    ("millstream_errors_total", "Handler failures, retried or not.", lambda c: c.errors),
    ("millstream_retries_total", "Handler retries.", lambda c: c.retries),
    ("millstream_exceptions_total", "Records given up on and written to millstream.exceptions.",
     lambda c: c.exceptions),
)
_QUANTILES = (0.5, 0.9, 0.99)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _family(out: list[str], name: str, kind: str, text: str) -> None:
    out.append(f"# HELP {name} {_escape_help(text)}")
    out.append(f"# TYPE {name} {kind}")


def _split_partition(key: str) -> tuple[str, str]:
    stream, _, partition = key.rpartition("/")
    return stream, partition


def prometheus_text(view: MetricsView | Snapshot) -> str:
    """The services in ``view`` (a snapshot, or a view's snapshot now) as Prometheus text."""
    snap = view.snapshot() if isinstance(view, MetricsView) else view
    # one series per instance label: a run restarted under the same instance continues it
    # (its counters restart from 0, which Prometheus reads as a counter reset)
    newest: dict[tuple[str, str], InstanceView] = {}
    for inst in (i for svc in snap.services for i in svc.instances):
        ident_key = (inst.group, inst.instance)
        if ident_key not in newest or inst.time_ms >= newest[ident_key].time_ms:
            newest[ident_key] = inst
    instances = list(newest.values())

    def ident(inst: InstanceView) -> list[tuple[str, str]]:
        return [(k, str(getattr(inst, k))) for k in _INSTANCE_LABELS]

    out: list[str] = []
    for name, text, count in _COUNTERS:
        _family(out, name, "counter", text)
        out.extend(f"{name}{_labels(ident(i))} {count(i.totals)}" for i in instances)
    _family(out, "millstream_up", "gauge",
            "1 if the instance's metrics arrive in time, 0 if it is silent or stopped.")
    out.extend(f"millstream_up{_labels(ident(i))} {int(i.up)}" for i in instances)
    _family(out, "millstream_stalled", "gauge",
            "1 if a running instance of the service owns partitions with lag but reads nothing.")
    for svc in snap.services:
        labels = _labels([("app", svc.app), ("service", svc.service), ("group", svc.group)])
        out.append(f"millstream_stalled{labels} {int(svc.stalled)}")
    _family(out, "millstream_lag", "gauge",
            "Records not yet read by the group, per partition (newest report).")
    for svc in snap.services:
        for key, lag in svc.partition_lag.items():
            stream, partition = _split_partition(key)
            labels = _labels([("group", svc.group), ("stream", stream), ("partition", partition)])
            out.append(f"millstream_lag{labels} {lag}")
    name = "millstream_processing_seconds"
    _family(out, name, "summary",
            "Handler time per record: quantiles over the latest interval; count and sum since "
            "the instance started.")
    for inst in instances:
        for q in _QUANTILES:
            value = (inst.histogram.percentile(q) / 1e6 if inst.histogram.count else math.nan)
            out.append(f"{name}{_labels([*ident(inst), ('quantile', str(q))])} {_number(value)}")
        out.append(f"{name}_count{_labels(ident(inst))} {inst.processed_count}")
        out.append(f"{name}_sum{_labels(ident(inst))} {_number(inst.processed_us / 1e6)}")
    return "\n".join(out) + "\n"


class MetricsServer(HTTPServer):
    """Answers ``GET /metrics`` with ``view`` in the Prometheus text format, reading the
    records that arrived first. One request at a time: the view is not shared across threads."""

    def __init__(self, view: MetricsView, host: str = "127.0.0.1", port: int = 9108) -> None:
        self.view = view
        self.lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def render(self) -> bytes:
        with self.lock:
            self.view.refresh()
            return prometheus_text(self.view).encode()


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    timeout = 10  # a client that stops sending cannot hold the one request slot

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._send(HTTPStatus.NOT_FOUND, b"not found; metrics are at /metrics\n",
                       "text/plain; charset=utf-8")
            return
        self._send(HTTPStatus.OK, self.server.render(), CONTENT_TYPE)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)
