"""``millstream tables``: list tables, read documents, snapshot, restore and rebuild them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from millstream.cli.shared import CliState, console, open_streams, pass_state, table
from millstream.errors import NotFoundError
from millstream.files._base import FileStore
from millstream.operations._tables import (
    find_snapshot,
    parse_condition,
    query_table,
    table_statuses,
)
from millstream.records import StreamPartition
from millstream.tables import Tables, open_tables

__all__ = ["tables_group"]

_URL_KEY = "millstream.tables_url"


def _open(ctx: click.Context) -> Tables:
    return open_tables(ctx.meta.get(_URL_KEY))


def _open_files(url: str | None) -> FileStore:
    from millstream.files import open_files

    return open_files(url)


def _dump(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


@contextmanager
def _progress(what: str) -> Iterator[Any]:
    """A progress bar on stderr; yields the ``progress(done, total)`` callback."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    task = bar.add_task(what, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


@click.group("tables")
@click.option("--tables", "tables_url", metavar="URL",
              help="Tables backend, overriding MILLSTREAM_TABLES and millstream.toml "
                   "(sqlite:///path/tables.db or postgresql://user@host:port/db).")
@click.pass_context
def tables_group(ctx: click.Context, tables_url: str | None) -> None:
    """List tables, read their documents, and snapshot, restore or rebuild them.

    \b
    Example:
      millstream tables list
      millstream tables get orders o-17
      millstream tables query orders status=paid --limit 10
    """
    ctx.meta[_URL_KEY] = tables_url


@tables_group.command("list")
@pass_state
@click.pass_context
def list_tables(ctx: click.Context, state: CliState) -> None:
    """List every table: documents, indexes, the stream feeding it and how far behind it is.

    \b
    Example:
      millstream tables list
    """
    with _open(ctx) as tables, open_streams(state) as streams:
        statuses = table_statuses(tables, streams)
    if not statuses:
        click.echo("no tables yet; a materializer creates its table when it starts", err=True)
        return
    t = table("Table", ">Documents", "Indexes", "Feed", ">Behind")
    for status in statuses:
        info = status.info
        behind = status.problem or ("-" if status.behind is None else str(status.behind))
        t.add_row(info.name, str(info.documents), ", ".join(info.indexes) or "-",
                  info.feed or "-", behind)
    console().print(t)


@tables_group.command("get")
@click.argument("table_name", metavar="TABLE")
@click.argument("key")
@click.pass_context
def get(ctx: click.Context, table_name: str, key: str) -> None:
    """Print the document at KEY of TABLE as JSON.

    \b
    Example:
      millstream tables get orders o-17
    """
    with _open(ctx) as tables:
        doc = tables.table(table_name).get(key)
    if doc is None:
        raise NotFoundError(f"table {table_name!r} has no document at key {key!r}")
    click.echo(_dump(doc))


@tables_group.command("scan")
@click.argument("table_name", metavar="TABLE")
@click.argument("prefix", default="")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="At most this many documents.")
@click.option("--after", metavar="KEY", help="Only keys after KEY (to page on).")
@click.pass_context
def scan(ctx: click.Context, table_name: str, prefix: str, limit: int, after: str | None
         ) -> None:
    """Print the documents whose key starts with PREFIX, by key, as JSON lines
    ``{"key": ..., "value": ...}``.

    \b
    Example:
      millstream tables scan orders o-1 --limit 20
    """
    with _open(ctx) as tables:
        rows = tables.table(table_name).scan(prefix, after=after, limit=limit)
    for key, doc in rows:
        click.echo(_dump({"key": key, "value": doc}))


@tables_group.command("query")
@click.argument("table_name", metavar="TABLE")
@click.argument("conditions", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="At most this many documents.")
@click.pass_context
def query(ctx: click.Context, table_name: str, conditions: tuple[str, ...], limit: int) -> None:
    """Print the documents whose top-level fields equal every VALUE, as JSON lines.

    VALUE is read as JSON when it is JSON (1, 2.5, true, null, "7"), else as a string.

    \b
    Example:
      millstream tables query orders status=paid
      millstream tables query orders customer='"42"' paid=true --limit 5
    """
    where = dict(parse_condition(c) for c in conditions)
    with _open(ctx) as tables:
        answer = query_table(tables.table(table_name), where, limit=limit)
    for key, doc in answer.rows:
        click.echo(_dump({"key": key, "value": doc}))
    if answer.hint:
        click.echo(f"no document matched: {answer.hint}", err=True)


@tables_group.command("snapshot")
@click.argument("table_name", metavar="TABLE")
@click.option("--files", "files_url", metavar="URL", help="File store (default: configured).")
@click.pass_context
def snapshot(ctx: click.Context, table_name: str, files_url: str | None) -> None:
    """Write a consistent snapshot of TABLE (documents + the stream offsets they match) to
    the file store; the table keeps serving meanwhile.

    \b
    Example:
      millstream tables snapshot orders
    """
    from millstream.tables._snapshot import write_snapshot

    files = _open_files(files_url)
    try:
        with _open(ctx) as tables, _progress(f"snapshot {table_name}") as progress:
            info = write_snapshot(tables.table(table_name), files, progress=progress)
    finally:
        files.close()
    click.echo(f"snapshot of {table_name!r}: {info.documents} document(s), offsets "
               f"{_offsets(info.offsets)}, written to {info.ref.url} (sha256 {info.sha256})")


def _offsets(offsets: Mapping[StreamPartition, int]) -> str:
    return ", ".join(f"{sp}={o}" for sp, o in sorted(offsets.items())) or "none"


@tables_group.command("restore")
@click.argument("table_name", metavar="TABLE")
@click.argument("snapshot_name", metavar="[SNAPSHOT]", required=False)
@click.option("--files", "files_url", metavar="URL", help="File store (default: configured).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def restore(ctx: click.Context, table_name: str, snapshot_name: str | None,
            files_url: str | None, yes: bool) -> None:
    """Replace TABLE's documents and offsets by a snapshot (default: TABLE's latest), so its
    materializer continues from the snapshot's offsets. A damaged snapshot is refused.

    \b
    Example:
      millstream tables restore orders
      millstream tables restore orders-v2 tables/orders/snapshots/NAME.jsonl.gz
    """
    from millstream.tables._snapshot import restore_snapshot

    files = _open_files(files_url)
    try:
        ref = find_snapshot(files, table_name, snapshot_name)
        with _open(ctx) as tables:
            if not yes and table_name in tables.list_tables():
                click.confirm(f"replace every document of table {table_name!r} by the snapshot "
                              f"{ref.url}?", abort=True, err=True)
            with _progress(f"restore {table_name}") as progress:
                info = restore_snapshot(files, ref, tables, table=table_name, progress=progress)
    finally:
        files.close()
    click.echo(f"restored {table_name!r} from {info.ref.url}: {info.documents} document(s), "
               f"offsets {_offsets(info.offsets)}")


@tables_group.command("rebuild")
@click.argument("table_name", metavar="TABLE")
@click.option("--stream", metavar="STREAM", help="Replay STREAM (default: the table's feed).")
@click.option("--into", metavar="NAME",
              help="Build an up-to-date copy in table NAME instead; TABLE keeps serving.")
@click.option("--into-tables", metavar="URL",
              help="Put the --into copy in this tables backend (default: the same one).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
@click.pass_context
def rebuild_command(ctx: click.Context, state: CliState, table_name: str, stream: str | None,
                    into: str | None, into_tables: str | None, yes: bool) -> None:
    """Recreate TABLE from scratch by replaying its stream, with a progress bar.

    Refused when the stream's retention has removed records the table needs (feed tables from
    compacted streams). Without --into, TABLE is emptied first and serves partial results
    until the replay ends; --into builds the copy elsewhere while TABLE keeps serving.

    \b
    Example:
      millstream tables rebuild orders --into orders-v2
      millstream tables rebuild orders --into orders --into-tables postgresql://db/app
    """
    from millstream.tables._materialize import rebuild

    if into_tables and not into:
        into = table_name
    if into == table_name and not into_tables:
        into = None  # the table itself: a rebuild in place
    if into is None and not yes:
        click.confirm(f"empty table {table_name!r} and replay its stream into it?", abort=True,
                      err=True)
    target_url = into_tables
    with _open(ctx) as tables, open_streams(state) as streams:
        other = open_tables(target_url) if target_url else None
        try:
            with _progress(f"rebuild {into or table_name}") as progress:
                stats = rebuild(streams, tables, table_name, stream=stream, into=into,
                                into_tables=other, progress=progress)
        finally:
            if other is not None:
                other.close()
    click.echo(f"rebuilt {into or table_name!r}: {stats.records} record(s) replayed, "
               f"{stats.upserts} upsert(s), {stats.deletes} delete(s), {stats.skipped} "
               f"skipped; offsets {_offsets(stats.offsets)}")
