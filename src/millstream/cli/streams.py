"""``millstream streams``: create, list, describe and delete streams."""

from __future__ import annotations

import click
from rich.filesize import decimal

from millstream.cli.shared import CliState, console, open_streams, pass_state, table
from millstream.streams._info import Retention
from millstream.streams._words import format_retention

__all__ = ["streams_group"]

@click.group("streams")
def streams_group() -> None:
    """Create, list, describe and delete streams.

    \b
    Example:
      millstream streams create orders --partitions 4
      millstream streams list
    """


@streams_group.command("create")
@click.argument("name")
@click.option(
    "-p", "--partitions", type=click.IntRange(min=1), default=1, show_default=True,
    help="How many partitions: records with the same key always go to the same one.",
)
@click.option(
    "--retention-ms", type=click.IntRange(min=1), metavar="MS",
    help="Delete records older than MS milliseconds (default: keep forever).",
)
@click.option(
    "--retention-bytes", type=click.IntRange(min=1), metavar="BYTES",
    help="Delete the oldest records once a partition holds more than BYTES.",
)
@click.option("--compact", is_flag=True, help="Keep only the latest record of each key.")
@pass_state
def create(state: CliState, name: str, partitions: int, retention_ms: int | None,
           retention_bytes: int | None, compact: bool) -> None:
    """Create the stream NAME (letters, digits, '.', '_' and '-').

    \b
    Example:
      millstream streams create orders --partitions 4 --retention-ms 604800000
    """
    retention = Retention(max_age=None if retention_ms is None else retention_ms / 1000,
                          max_bytes=retention_bytes, compact=compact)
    with open_streams(state) as streams:
        info = streams.admin().create_stream(name, partitions, retention)
    noun = "partition" if info.partition_count == 1 else "partitions"
    click.echo(
        f"created stream {info.name!r}: {info.partition_count} {noun}, "
        f"retention {format_retention(info.retention)}"
    )


@streams_group.command("list")
@pass_state
def list_streams(state: CliState) -> None:
    """List every stream with its partitions, records and retention.

    \b
    Example:
      millstream streams list
    """
    with open_streams(state) as streams:
        admin = streams.admin()
        infos = [admin.describe_stream(name) for name in admin.list_streams()]
    if not infos:
        click.echo("no streams yet; create one with: millstream streams create NAME", err=True)
        return
    t = table("Stream", ">Partitions", ">Records", "Retention")
    for info in infos:
        t.add_row(info.name, str(info.partition_count), str(info.records),
                  format_retention(info.retention))
    console().print(t)


@streams_group.command("describe")
@click.argument("name")
@pass_state
def describe(state: CliState, name: str) -> None:
    """Show each partition of the stream NAME: its first offset, end offset and size.

    The end is the offset the next record will get; records retained = end - start.

    \b
    Example:
      millstream streams describe orders
    """
    with open_streams(state) as streams:
        info = streams.admin().describe_stream(name)
    out = console()
    out.print(
        f"stream {info.name}: {info.partition_count} partition(s), {info.records} record(s), "
        f"retention {format_retention(info.retention)}",
    )
    t = table(">Partition", ">Start", ">End", ">Records", ">Bytes")
    for p in info.partitions:
        t.add_row(str(p.partition), str(p.start), str(p.end), str(p.end - p.start),
                  decimal(p.bytes) if p.bytes is not None else "-")
    out.print(t)


@streams_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: CliState, name: str, yes: bool) -> None:
    """Delete the stream NAME, its records and its groups' committed offsets.

    Asks for confirmation unless --yes is given. This cannot be undone.

    \b
    Example:
      millstream streams delete old-orders --yes
    """
    with open_streams(state) as streams:
        admin = streams.admin()
        info = admin.describe_stream(name)
        if not yes:
            click.confirm(
                f"delete stream {info.name!r} and its {info.records} record(s)? "
                "This cannot be undone",
                abort=True,
                err=True,
            )
        admin.delete_stream(name)
    click.echo(f"deleted stream {info.name!r} ({info.records} record(s))")
