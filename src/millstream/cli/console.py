"""``millstream console``: serve the web console for the configured platform."""

from __future__ import annotations

import re

import click

import millstream
from millstream.cli.shared import CliState, pass_state
from millstream.config import load_config

__all__ = ["console_command"]

_SPAN = re.compile(r"(\d+)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_span(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``2d`` or plain seconds, as seconds."""
    match = _SPAN.fullmatch(text.strip())
    if match:
        seconds = float(int(match[1]) * _UNIT_S[match[2]])
    else:
        try:
            seconds = float(text)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a span like 30m, 1h or 2d") from None
    if seconds <= 0:
        raise click.BadParameter(f"{text!r}: the history must keep some time (more than 0 s)")
    return seconds


@click.command("console")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (0.0.0.0: every interface; use a token then).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="The port to listen on.")
@click.option("--token", envvar="MILLSTREAM_CONSOLE_TOKEN", default=None, metavar="TOKEN",
              help="Allow actions (reset a group, replay exceptions, restore a table, promote "
                   "a shadow) to who signs in with TOKEN (8 characters or more; or set "
                   "MILLSTREAM_CONSOLE_TOKEN). Without it the console is read-only.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="A host name the console answers to besides this machine's loopback names "
                   "(repeat it; '*' for any). Requests naming another host are refused (400), "
                   "so a page elsewhere cannot reach the console through DNS rebinding.")
@click.option("--history", "history", default="1h", show_default=True, metavar="SPAN",
              help="How much of the metrics stream the charts keep, read back at start "
                   "(30m, 1h, 6h…).")
@pass_state
def console_command(state: CliState, host: str, port: int, token: str | None,
                    allow_hosts: tuple[str, ...], history: str) -> None:
    """Serve the web console for the configured platform (or --streams).

    The overview draws every app that reports metrics, with live rates and health; pages
    show each service's charts, the streams and their records, consumer groups, failed
    records, tables and shadow versions. Read-only unless --token is given.

    \b
    Example:
      millstream console
      millstream console --port 9000 --token "$(openssl rand -hex 16)"
    """
    from millstream.console import build_server, create_app  # the web stack: only here
    from millstream.console._app import LOOPBACK, redacted

    keep = parse_span(history)
    if token is not None and len(token) < 8:
        raise click.BadParameter("the token must be 8 characters or more", param_hint="--token")
    config = load_config(streams=state.streams_url)
    streams = millstream.open_streams(config.streams)
    everywhere = host in ("0.0.0.0", "::", "")
    allowed = [*LOOPBACK, *([] if everywhere or host in LOOPBACK else [host]), *allow_hosts]
    app = create_app(streams, token=token, keep=keep, streams_url=config.streams,
                     open_files=lambda: millstream.open_files(config.files),
                     open_tables=lambda: millstream.open_tables(config.tables),
                     allowed_hosts=allowed)
    mode = "actions need the token" if token else "read-only (no --token)"
    click.echo(f"millstream console on http://{host}:{port}/ for {redacted(config.streams)} — "
               f"{mode}; Ctrl-C stops it")
    if everywhere and not allow_hosts:
        click.echo(f"note: listening on every interface, the console answers only to "
                   f"{', '.join(LOOPBACK)}; name the host people reach it by with --allow-host")
    try:
        build_server(app, host=host, port=port, log_level="warning").run()
    finally:
        app.state.console.close()
        streams.close()
