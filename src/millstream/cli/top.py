"""``millstream top`` and ``millstream metrics``: the services' health, read from their metrics.

``top`` shows one row per service (consumer group) — instances, read rate, p50/p99 handler
time, errors, lag, status — refreshed every second, or once with ``--once``. ``metrics
prometheus`` prints the same in the Prometheus text format; ``metrics serve`` answers
``GET /metrics`` with it (stdlib ``http.server``, one request at a time). All read
``millstream.metrics`` from ``--since`` ago (default 10m) and aggregate in
``millstream.service.monitor``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from millstream.cli.shared import CliState, console, open_streams, pass_state, table
from millstream.errors import ConfigError, NotFoundError, UnknownStreamError
from millstream.service.monitor import (
    CONTENT_TYPE,
    MetricsView,
    ServiceView,
    Snapshot,
    prometheus_text,
)
from millstream.service.wellknown import METRICS
from millstream.streams.base import Streams

__all__ = ["DurationParam", "MetricsServer", "metrics_group", "render_table", "top_command"]

log = logging.getLogger(__name__)

_REFRESH_S = 1.0
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_STATUS_STYLE = {"running": "green", "stalled": "bold yellow", "silent": "bold red",
                 "stopped": "dim"}

if TYPE_CHECKING:
    _DurationBase = click.ParamType[int | None]
else:  # ParamType is generic only in recent click; stay importable with older ones
    _DurationBase = click.ParamType


class DurationParam(_DurationBase):
    """``--since``: ``10m``, ``90s``, ``2h``, ``1d`` (plain numbers are seconds) in ms, or
    ``all`` (None: from the first retained record)."""

    name = "DURATION|all"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text in ("all", "beginning"):
            return None
        match = _DURATION.fullmatch(text)
        if match is None:
            self.fail(f"{value!r} is not a duration like 30s, 10m, 2h or 1d, nor 'all'",
                      param, ctx)
        return int(float(match.group(1)) * _UNITS_MS[match.group(2) or "s"])


_since_option = click.option(
    "--since", "since_ms", type=DurationParam(), default="10m", show_default=True,
    metavar="DURATION|all",
    help="Read metrics written this long ago and since (30s, 10m, 2h, 1d), or 'all'.",
)


def _open_view(streams: Streams, since_ms: int | None) -> MetricsView:
    try:
        return MetricsView(streams, since_ms=since_ms)
    except UnknownStreamError as exc:
        if exc.name != METRICS:
            raise
        raise NotFoundError(
            f"no metrics yet: stream {METRICS!r} does not exist on {streams.url}; services "
            "create it when they start (millstream run ...)"
        ) from exc


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _instances(svc: ServiceView) -> str:
    text = str(svc.alive)
    others = [f"{n} {s}" for s in ("silent", "stopped") if (n := svc.count(s))]
    return f"{text} ({', '.join(others)})" if others else text


def _pair(latest: int, total: int) -> str:
    return f"{latest}/{total}"


def render_table(snap: Snapshot) -> Table:
    """One row per service: the table ``top`` shows."""
    t = table("Service", ">Instances", ">In/s", ">p50 ms", ">p99 ms", ">Errors", ">Exceptions",
              ">Lag", "Status")
    for svc in snap.services:
        t.add_row(
            svc.group, _instances(svc), f"{svc.rate_in:.1f}",
            _ms(svc.percentile_ms(0.50)), _ms(svc.percentile_ms(0.99)),
            _pair(svc.errors, svc.totals["errors"]),
            _pair(svc.exceptions, svc.totals["exceptions"]),
            str(svc.lag), Text(svc.status, style=_STATUS_STYLE[svc.status]),
        )
    return t


def _window(since_ms: int | None) -> str:
    """What ``--since`` covers, for messages: "the last 10m" or "everything retained"."""
    if since_ms is None:
        return "everything retained"
    for unit in ("d", "h", "m", "s"):
        if since_ms and since_ms % _UNITS_MS[unit] == 0:
            return f"the last {since_ms // _UNITS_MS[unit]}{unit}"
    return f"the last {since_ms} ms"


def _screen(snap: Snapshot, since_ms: int | None) -> Group:
    moment = datetime.fromtimestamp(snap.time_ms / 1000).strftime("%H:%M:%S")
    head = Text(f"millstream top  {moment}  {len(snap.services)} service(s), "
                f"metrics of {_window(since_ms)}  (errors and exceptions: latest interval/total; "
                "Ctrl-C quits)", style="bold")
    return Group(head, render_table(snap))


@click.command("top")
@_since_option
@click.option("--once", is_flag=True, help="Print the table once and exit.")
@pass_state
def top_command(state: CliState, since_ms: int | None, once: bool) -> None:
    """Show each service's rate, handler time, errors, lag and status, live.

    A service is 'stalled' when an instance owns partitions, read nothing in its last two
    metrics intervals and its lag did not fall; 'silent' when no instance's metrics arrived
    for 3 intervals (at least 10 s); 'stopped' when every instance shut down cleanly.
    Errors and exceptions read latest-interval/total.

    \b
    Example:
      millstream top
      millstream top --once --since 1h
    """
    with open_streams(state) as streams, _open_view(streams, since_ms) as view:
        view.refresh(timeout=0.2)
        if once:
            snap = view.snapshot()
            if not snap.services:
                click.echo(f"no service metrics in {_window(since_ms)}", err=True)
                return
            console().print(render_table(snap))
            return
        try:
            with Live(_screen(view.snapshot(), since_ms), console=console(),
                      auto_refresh=False) as live:
                while True:
                    deadline = time.monotonic() + _REFRESH_S
                    while (left := deadline - time.monotonic()) > 0:
                        view.refresh(timeout=left)
                    live.update(_screen(view.snapshot(), since_ms), refresh=True)
        except KeyboardInterrupt:
            pass


@click.group("metrics")
def metrics_group() -> None:
    """Export the services' metrics for other tools (Prometheus).

    \b
    Example:
      millstream metrics prometheus
      millstream metrics serve --port 9108
    """


@metrics_group.command("prometheus")
@_since_option
@pass_state
def prometheus(state: CliState, since_ms: int | None) -> None:
    """Print every service's metrics once, in the Prometheus text format 0.0.4.

    \b
    Example:
      millstream metrics prometheus --since 5m
    """
    with open_streams(state) as streams, _open_view(streams, since_ms) as view:
        view.refresh(timeout=0.2)
        click.echo(prometheus_text(view), nl=False)


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


@metrics_group.command("serve")
@click.option("--port", default=9108, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on (0: any free port, printed at start).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@_since_option
@pass_state
def serve(state: CliState, port: int, host: str, since_ms: int | None) -> None:
    """Serve every service's metrics at http://HOST:PORT/metrics for Prometheus to scrape.

    \b
    Example:
      millstream metrics serve --port 9108
    """
    with open_streams(state) as streams, _open_view(streams, since_ms) as view:
        view.refresh(timeout=0.2)
        try:
            server = MetricsServer(view, host, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                              "choose another --port or --host") from exc
        click.echo(f"serving metrics at http://{host}:{server.port}/metrics (Ctrl-C stops)",
                   err=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
