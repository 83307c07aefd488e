"""``millstream top`` and ``millstream metrics``: the services' health, read from their metrics.

``top`` shows one row per service (consumer group) — instances up, read rate, p50/p99
handler time, errors, exceptions, lag, status — refreshed every second on a terminal; as
plain rows, a table per refresh, when its output is not one (``-b``, as ``top -b`` does),
``-n`` times, or once with ``--once``. Lines fit the terminal's width (``--width``): long
service names lose their middle. ``metrics prometheus`` prints the same in the Prometheus
text format; ``metrics serve`` answers ``GET /metrics`` with it. All read
``millstream.metrics`` from ``--since`` ago (default 10m) through ``millstream.observe``.
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Group
from rich.live import Live
from rich.text import Text

from millstream._wellknown import METRICS
from millstream.cli.shared import CliState, console, open_streams, pass_state
from millstream.errors import ConfigError, NotFoundError, UnknownStreamError
from millstream.observe import MetricsServer, MetricsView, ServiceView, Snapshot, prometheus_text
from millstream.streams._base import Streams

__all__ = ["DurationParam", "metrics_group", "render_lines", "shorten", "top_command"]

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
        return MetricsView(streams, since=None if since_ms is None else since_ms / 1000)
    except UnknownStreamError as exc:
        if exc.name != METRICS:
            raise
        raise NotFoundError(
            f"no metrics yet: stream {METRICS!r} does not exist on {streams.url}; services "
            "create it when they start (millstream run ...)"
        ) from exc


def _ms(value: float | None) -> str:
    """Milliseconds in at most 7 characters, finer when small."""
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 100 else f"{value:.1f}" if value < 10_000 else f"{value:.0f}"


#: (header, right-aligned) per column; errors and exceptions read latest-interval/total
_COLUMNS = (("Service", False), ("Up", True), ("In/s", True), ("p50 ms", True),
            ("p99 ms", True), ("Errors", True), ("Exceptions", True), ("Lag", True),
            ("Status", False))
_GAP = "  "
#: a name is never cut below this many characters, whatever the width
_MIN_NAME = 12


def _cells(svc: ServiceView) -> list[str]:
    return [svc.group, str(svc.alive), f"{svc.rate_in:.1f}",
            _ms(svc.percentile_ms(0.50)), _ms(svc.percentile_ms(0.99)),
            f"{svc.errors}/{svc.totals.errors}",
            f"{svc.exceptions}/{svc.totals.exceptions}", str(svc.lag), svc.status]


def shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters: its start and its end (where the service
    and any shadow suffix are) around an ellipsis."""
    if len(name) <= width:
        return name
    head = (width - 1) // 3
    return f"{name[:head]}…{name[len(name) - (width - 1 - head):]}"


def render_lines(snap: Snapshot, width: int | None = None) -> list[str]:
    """The table ``top`` shows, as plain lines: a header, then one row per service. With
    ``width``, long service names are shortened (never below 12 characters) so each line
    fits in ``width`` columns."""
    rows = [_cells(svc) for svc in snap.services]
    widths = [max([len(header), *(len(r[i]) for r in rows)])
              for i, (header, _) in enumerate(_COLUMNS)]
    over = sum(widths) + len(_GAP) * (len(widths) - 1) - (width or 0)
    if width is not None and over > 0 and widths[0] > _MIN_NAME:
        widths[0] = max(widths[0] - over, _MIN_NAME, len(_COLUMNS[0][0]))
        for r in rows:
            r[0] = shorten(r[0], widths[0])
    lines = []
    for cells in ([h for h, _ in _COLUMNS], *rows):
        line = _GAP.join(cell.rjust(w) if right else cell.ljust(w)
                         for cell, w, (_, right) in zip(cells, widths, _COLUMNS, strict=True))
        lines.append(line.rstrip())
    return lines


def _styled(lines: list[str], snap: Snapshot) -> Text:
    """``render_lines`` for a terminal: the header bold, each status in its colour."""
    text = Text("\n".join(lines))
    text.stylize("bold", 0, len(lines[0]))
    offset = len(lines[0]) + 1
    for line, svc in zip(lines[1:], snap.services, strict=True):
        end = offset + len(line)
        text.stylize(_STATUS_STYLE[svc.status], end - len(svc.status), end)
        offset = end + 1
    return text


def _window(since_ms: int | None) -> str:
    """What ``--since`` covers, for messages: "the last 10m" or "everything retained"."""
    if since_ms is None:
        return "everything retained"
    for unit in ("d", "h", "m", "s"):
        if since_ms and since_ms % _UNITS_MS[unit] == 0:
            return f"the last {since_ms // _UNITS_MS[unit]}{unit}"
    return f"the last {since_ms} ms"


def _heading(snap: Snapshot, since_ms: int | None, live: bool) -> str:
    moment = datetime.fromtimestamp(snap.time_ms / 1000).strftime("%H:%M:%S")
    count = len(snap.services)
    window = "all retained metrics" if since_ms is None else f"metrics of {_window(since_ms)}"
    return (f"millstream top {moment}, {count} service{'s' if count != 1 else ''}, {window}"
            + ("; Ctrl-C quits" if live else ""))


def _screen(snap: Snapshot, since_ms: int | None, width: int) -> Group:
    return Group(Text(_heading(snap, since_ms, True), style="bold", no_wrap=True,
                      overflow="ellipsis"),
                 _styled(render_lines(snap, width), snap))


def _wait(view: MetricsView, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        view.refresh(timeout=left)


@click.command("top")
@_since_option
@click.option("--once", is_flag=True, help="Print the table once, without a heading, and exit.")
@click.option("-n", "--count", type=click.IntRange(min=1), default=None, metavar="N",
              help="Refresh N times, then exit (default: until Ctrl-C).")
@click.option("-b", "--batch", is_flag=True,
              help="Print plain rows, a table per refresh, as `top -b` does (the default when "
                   "the output is not a terminal).")
@click.option("--width", type=click.IntRange(min=40), default=None, metavar="COLUMNS",
              help="Fit the table in this many columns, shortening long service names "
                   "(default: the terminal's width; as wide as the names when piped).")
@pass_state
def top_command(state: CliState, since_ms: int | None, once: bool, count: int | None,
                batch: bool, width: int | None) -> None:
    """Show each service's rate, handler time, errors, lag and status, live.

    Up counts the instances reporting in time. Errors (handler failures, retried or not) and
    Exceptions (records given up on) read latest-interval/total; totals add up every
    instance and restart seen. A service is 'stalled' when an instance owns partitions, read
    nothing in its last two metrics intervals and its lag did not fall; when no instance
    reports, 'stopped' if the last one heard from shut down cleanly, 'silent' if it went
    quiet (no metrics for 3 intervals, at least 10 s).

    \b
    Example:
      millstream top
      millstream top --once --since 1h
      millstream top -b -n 3 > top.txt
    """
    out = console()
    if width is None and out.is_terminal:
        width = out.width
    with open_streams(state) as streams, _open_view(streams, since_ms) as view:
        view.refresh(timeout=0.2)
        if once:
            snap = view.snapshot()
            if not snap.services:
                click.echo(f"no service metrics in {_window(since_ms)}", err=True)
                return
            click.echo("\n".join(render_lines(snap, width)))
            return
        try:
            if batch or not out.is_terminal:
                for shown in itertools.count(1):
                    snap = view.snapshot()
                    click.echo("\n".join([_heading(snap, since_ms, False),
                                          *render_lines(snap, width), ""]))
                    sys.stdout.flush()
                    if count is not None and shown >= count:
                        return
                    _wait(view, _REFRESH_S)
            with Live(_screen(view.snapshot(), since_ms, width or out.width), console=out,
                      auto_refresh=False) as live:
                for _ in itertools.count(1) if count is None else range(count - 1):
                    _wait(view, _REFRESH_S)
                    live.update(_screen(view.snapshot(), since_ms, width or out.width),
                                refresh=True)
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
