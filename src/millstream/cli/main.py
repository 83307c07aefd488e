"""The ``millstream`` command: the top-level group, global options, logging and error handling.

This is the only module in millstream that configures logging. Expected failures — any
``MillstreamError`` — end the command with a one-line red message on stderr and exit code 1;
click's usage errors exit with 2. A traceback means a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler

from millstream import __version__
from millstream.cli.config import config_group, doctor
from millstream.cli.console import console_command
from millstream.cli.exceptions import exceptions_group
from millstream.cli.files import files_group
from millstream.cli.graph import graph_command
from millstream.cli.groups import groups_group
from millstream.cli.produce import produce
from millstream.cli.run import run_command_cli, up_command
from millstream.cli.shadow import diff_command, promote_command
from millstream.cli.shared import CliState, pass_state
from millstream.cli.streams import streams_group
from millstream.cli.tables import tables_group
from millstream.cli.tail import tail
from millstream.cli.top import metrics_group, top_command
from millstream.cli.verify import verify_command
from millstream.errors import MillstreamError

__all__ = ["cli", "main"]


class _CliLogHandler(RichHandler):
    """The command line's log handler (a class of its own so it is installed only once)."""


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("millstream")
    if not any(isinstance(h, _CliLogHandler) for h in logger.handlers):
        logger.addHandler(_CliLogHandler(console=Console(stderr=True), show_path=False))
    logger.setLevel(level)


def _report(exc: MillstreamError) -> None:
    message = " ".join(str(exc).splitlines()) or type(exc).__name__
    click.secho(f"error: {message}", fg="red", err=True)


class _Group(click.Group):
    """The top-level group: turns expected errors into one red line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MillstreamError as exc:
            _report(exc)
            ctx.exit(1)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--streams", "streams_url", metavar="URL",
    help="Streams backend to use, overriding MILLSTREAM_STREAMS and millstream.toml "
         "(e.g. local: or local:/path/to/dir).",
)
@click.option("-v", "--verbose", count=True, help="Log more: -v for info, -vv for debug.")
@click.version_option(__version__, "-V", "--version", prog_name="millstream")
@click.pass_context
def cli(ctx: click.Context, streams_url: str | None, verbose: int) -> None:
    """Small services connected by named, durable, replayable streams.

    Everything runs embedded under ./.millstream (or $MILLSTREAM_HOME) unless configured
    otherwise; `millstream config show` says what is used and why.

    \b
    Example:
      millstream streams create orders --partitions 4
      printf 'c7:{"id": 1}\\n' | millstream produce orders --key-separator :
      millstream tail orders --from beginning
    """
    _configure_logging(verbose)
    ctx.obj = CliState(streams_url=streams_url)


@cli.command()
@click.option(
    "--records", default=100_000, show_default=True, type=click.IntRange(min=1),
    help="How many records the demo pushes through its pipeline.",
)
@pass_state
@click.pass_context
def demo(ctx: click.Context, state: CliState, records: int) -> None:
    """Run the built-in demo pipeline on the configured streams and report its throughput.

    \b
    Example:
      millstream demo --records 10000
    """
    from millstream.cli._demo import run  # multiprocessing and progress bars: only for it

    ctx.exit(run(state.streams_url, records))


cli.add_command(streams_group)
cli.add_command(produce)
cli.add_command(tail)
cli.add_command(groups_group)
cli.add_command(config_group)
cli.add_command(doctor)
cli.add_command(run_command_cli)
cli.add_command(up_command)
cli.add_command(exceptions_group)
cli.add_command(graph_command)
cli.add_command(console_command)
cli.add_command(top_command)
cli.add_command(metrics_group)
cli.add_command(diff_command)
cli.add_command(promote_command)
cli.add_command(files_group)
cli.add_command(tables_group)
cli.add_command(verify_command)


def main(argv: Sequence[str] | None = None) -> None:
    """The console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="millstream")
