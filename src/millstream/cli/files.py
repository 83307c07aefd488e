"""``millstream files``: list, store, fetch, inspect and remove objects of the file store.

The store is the configured one (``MILLSTREAM_FILES``, millstream.toml, default
``file://$MILLSTREAM_HOME/files``) or the one ``--files URL`` names. Large transfers show a
progress bar on a terminal's stderr; stdout carries only results (or the object, for
``get NAME -``).
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import click
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from millstream.cli.shared import CliState, console, open_streams, pass_state, table
from millstream.errors import MillstreamError
from millstream.files import FileStore, open_files
from millstream.files._core import StoreBase
from millstream.files._gc import run_gc
from millstream.files._objects import CHUNK
from millstream.streams._base import Streams
from millstream.tables._base import Tables

__all__ = ["files_group"]

#: Transfers at least this large get a progress bar (on a terminal).
PROGRESS_BYTES = 16 * 1024 * 1024


@contextlib.contextmanager
def _progress(what: str, total: int) -> Iterator[Progress | None]:
    err = console(stderr=True)
    if total < PROGRESS_BYTES or not err.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        progress.add_task(what, total=total)
        yield progress


class _Counting:
    """A binary reader that advances a progress bar as it is read."""

    def __init__(self, f: BinaryIO, progress: Progress | None) -> None:
        self._f = f
        self._progress = progress

    def readinto(self, b: memoryview) -> int:
        n: int = self._f.readinto(b)  # type: ignore[attr-defined]
        if self._progress is not None and n:
            self._progress.advance(self._progress.task_ids[0], n)
        return n

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._progress is not None:
            self._progress.advance(self._progress.task_ids[0], len(data))
        return data


def _store(ctx: click.Context) -> FileStore:
    url: str | None = ctx.find_root().meta.get("millstream.files_url")
    return open_files(url)


@click.group("files")
@click.option("--files", "files_url", metavar="URL",
              help="File store to use, overriding MILLSTREAM_FILES and millstream.toml "
                   "(e.g. file:///data/files or s3://bucket/prefix).")
@click.pass_context
def files_group(ctx: click.Context, files_url: str | None) -> None:
    """List, store, fetch and remove objects of the file store.

    \b
    Example:
      millstream files put ./clip.mp4 videos/clip.mp4
      millstream files ls videos/
      millstream files get videos/clip.mp4 ./copy.mp4
    """
    ctx.find_root().meta["millstream.files_url"] = files_url


def _base(store: FileStore) -> StoreBase:
    assert isinstance(store, StoreBase), store  # every store open_files makes
    return store


@files_group.command("ls")
@click.argument("prefix", default="")
@click.option("--unrecorded", is_flag=True,
              help="List instead the files that hold bytes but no record of a write (copied "
                   "in by hand, or left by an older version): not objects until adopted.")
@click.pass_context
def ls(ctx: click.Context, prefix: str, unrecorded: bool) -> None:
    """List objects whose names start with PREFIX: name, size, SHA-256, content type.

    \b
    Example:
      millstream files ls videos/
      millstream files ls --unrecorded videos/
    """
    store = _store(ctx)
    if unrecorded:
        with contextlib.closing(store):
            names = list(_base(store).unrecorded(prefix))
        for name in names:
            click.echo(name)
        where = f" under {prefix!r}" if prefix else ""
        if names:
            click.echo(f"{len(names)} file(s){where} without a record: not objects; check "
                       "their bytes, then record them with: millstream files adopt PREFIX",
                       err=True)
        else:
            click.echo(f"no files without a record{where}", err=True)
        return
    with contextlib.closing(store):
        refs = list(store.list(prefix))
        base = store.url + "/"
    if not refs:
        where = f" under {prefix!r}" if prefix else ""
        click.echo(f"no objects{where}; store one with: millstream files put PATH NAME",
                   err=True)
        return
    t = table("Name", ">Size", "SHA-256", "Content type")
    for ref in refs:
        t.add_row(ref.url.removeprefix(base), str(ref.size), ref.sha256,
                  ref.content_type or "-")
    console().print(t)


@files_group.command("adopt")
@click.argument("prefix")
@click.pass_context
def adopt(ctx: click.Context, prefix: str) -> None:
    """Record the files under PREFIX that have no record, hashing their bytes as they are.

    For files copied into the store by hand, or left by a write an older version of
    millstream did not finish: they are refused and not listed until adopted. Adopt only
    bytes you trust — whatever they hold becomes the object. Objects that have a record are
    never touched. Each file is printed with its size and SHA-256; a file that cannot be
    adopted is named with the reason, and the exit code is 1. Pass '' for the whole store.

    \b
    Example:
      millstream files ls --unrecorded videos/
      millstream files adopt videos/
    """
    store = _store(ctx)
    adopted = failed = 0
    with contextlib.closing(store):
        base = _base(store)
        for name in list(base.unrecorded(prefix)):
            try:
                ref = base.adopt(name, content_type=mimetypes.guess_type(name)[0])
            except MillstreamError as exc:
                click.echo(f"not adopted {name}: {exc}", err=True)
                failed += 1
                continue
            click.echo(f"adopted {name} {ref.size} {ref.sha256}")
            adopted += 1
    where = f" under {prefix!r}" if prefix else ""
    click.echo(f"adopted {adopted} file(s){where}, {failed} not adopted", err=True)
    if failed:
        raise SystemExit(1)


@files_group.command("put")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name")
@click.option("--content-type", metavar="TYPE",
              help="Media type to record (default: guessed from the file name).")
@click.pass_context
def put(ctx: click.Context, path: Path, name: str, content_type: str | None) -> None:
    """Store the file PATH as the object NAME (atomically; replaces an existing one).

    \b
    Example:
      millstream files put ./clip.mp4 videos/clip.mp4
    """
    content_type = content_type or mimetypes.guess_type(path.name)[0]
    store = _store(ctx)
    size = path.stat().st_size
    with contextlib.closing(store), _progress(f"put {name}", size) as progress:
        if progress is None:
            ref = store.put(name, path, content_type=content_type)
        else:
            with open(path, "rb") as f:
                ref = store.put(name, _Counting(f, progress),  # type: ignore[arg-type]
                                content_type=content_type)
    click.echo(f"stored {name} ({decimal(ref.size)}): {ref.url} sha256={ref.sha256}")


@files_group.command("get")
@click.argument("name")
@click.argument("dest", required=False)
@click.pass_context
def get(ctx: click.Context, name: str, dest: str | None) -> None:
    """Copy the object NAME to DEST (default: its base name here; '-' for stdout), verified.

    The copy appears under DEST only once all of it was read and its SHA-256 matched.

    \b
    Example:
      millstream files get videos/clip.mp4 ./copy.mp4
      millstream files get notes/today.txt - | less
    """
    store = _store(ctx)
    with contextlib.closing(store):
        ref = store.stat(name)
        with _progress(f"get {name}", ref.size) as progress, store.open(ref) as src:
            reader = _Counting(src, progress)
            if dest == "-":
                out = sys.stdout.buffer
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
                out.flush()
                return
            target = Path(dest or name.rsplit("/", 1)[-1])
            if target.is_dir():
                target = target / name.rsplit("/", 1)[-1]
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
            try:
                with open(tmp, "wb") as f:
                    while chunk := reader.read(CHUNK):
                        f.write(chunk)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    click.echo(f"wrote {target} ({decimal(ref.size)}, sha256={ref.sha256} verified)")


@files_group.command("rm")
@click.argument("name")
@click.pass_context
def rm(ctx: click.Context, name: str) -> None:
    """Remove the object NAME.

    \b
    Example:
      millstream files rm videos/old.mp4
    """
    store = _store(ctx)
    with contextlib.closing(store):
        ref = store.stat(name)
        store.delete(name)
    click.echo(f"removed {name} ({decimal(ref.size)})")


@files_group.command("stat")
@click.argument("name")
@click.pass_context
def stat(ctx: click.Context, name: str) -> None:
    """Show the object NAME's URL, size, SHA-256 and content type (recorded at write).

    \b
    Example:
      millstream files stat videos/clip.mp4
    """
    store = _store(ctx)
    with contextlib.closing(store):
        ref = store.stat(name)
    click.echo(f"url           {ref.url}\nsize          {ref.size}\n"
               f"sha256        {ref.sha256}\ncontent-type  {ref.content_type or '-'}")


_POINT_GC = ("point gc at the platform's backends: the global --streams URL, --tables URL, "
             "or MILLSTREAM_HOME / MILLSTREAM_STREAMS / MILLSTREAM_TABLES / millstream.toml "
             "as the services use them")


def _platform_backends(streams_url: str | None, tables_url: str | None,
                       force: bool) -> tuple[str, str | None]:
    """The streams and tables URLs gc will scan (tables None: none to scan), refusing an
    embedded log or SQLite file that does not exist: opening it would create it empty, and gc
    would then find no reference and delete every object. A missing tables file is accepted
    with ``force`` (a platform that never made a table), and then not created."""
    from millstream.config import load_config
    from millstream.streams._local import parse_local_url
    from millstream.tables._sqlite import sqlite_path

    config = load_config(streams=streams_url, tables=tables_url)
    missing = []
    if config.streams.startswith("local:"):
        path, _ = parse_local_url(config.streams, config.home)
        if not path.exists():
            missing.append(f"streams {config.streams} does not exist (no {path})")
    tables: str | None = config.tables
    if config.tables.startswith("sqlite:") and not sqlite_path(config.tables).exists():
        if force and not missing:
            tables = None
        else:
            missing.append(f"tables {config.tables} does not exist "
                           f"(no {sqlite_path(config.tables)})")
    if missing:
        raise click.ClickException(
            f"refusing to collect garbage: {'; '.join(missing)}; so no reference to any "
            f"object could be found and every object would be deleted; {_POINT_GC} (a "
            "platform that never made a table: --force scans no tables)")
    return config.streams, tables


def _refuse_foreign_backends(store: FileStore, streams: Streams, tables: Tables,
                             streams_at: str, tables_at: str) -> None:
    """Refuse backends that cannot be the ones the store's objects were written for."""
    from millstream.files._references import is_snapshot

    names = set(tables.list_tables())
    if not streams.admin().list_streams() and not names and any(
            not r.url.removeprefix(store.url + "/").startswith("millstream.gc/")
            for r in store.list()):
        raise click.ClickException(
            f"refusing to collect garbage: streams {streams_at} and tables {tables_at} "
            f"hold no stream and no table, but {store.url} holds objects; {_POINT_GC} "
            "(or pass --force if nothing refers to them any more)")
    lacking = sorted({r.url.removeprefix(store.url + "/").split("/")[1]
                      for r in store.list("tables/")
                      if is_snapshot(r.url.removeprefix(store.url + "/"))} - names)
    if lacking:
        raise click.ClickException(
            f"refusing to collect garbage: {store.url} holds snapshots of table(s) "
            f"{', '.join(lacking)} that tables {tables_at} lacks, so it may not be the "
            f"platform's; {_POINT_GC} (or pass --force if those tables were dropped)")


@files_group.command("gc")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--older-than", "older_than", default="1h", show_default=True,
              metavar="SPAN", help="Also keep objects younger than this (0s, 30m, 2h, 1d): the "
                                   "grace for writers that do not pin what they store.")
@click.option("--prefix", default="", help="Only objects whose names start with this.")
@click.option("--tables", "tables_url", metavar="URL",
              help="Tables backend whose documents refer to objects, overriding "
                   "MILLSTREAM_TABLES and millstream.toml.")
@click.option("--snapshots", "snapshot_urls", metavar="URL", multiple=True,
              help="Another file store holding table snapshots (`tables snapshot --files "
                   "URL`): what they refer to is kept too. Repeatable.")
@click.option("--force", is_flag=True,
              help="Run even though the streams and tables scanned look like not the "
                   "platform's (empty while the store holds objects, or lacking tables the "
                   "store holds snapshots of).")
@pass_state
@click.pass_context
def gc(ctx: click.Context, state: CliState, dry_run: bool, older_than: str,
       prefix: str, tables_url: str | None, snapshot_urls: tuple[str, ...],
       force: bool) -> None:
    """Delete objects nothing on the platform refers to any more.

    Kept: objects a retained record in any stream refers to (claim-check objects and
    their contents included, and failed inputs kept in millstream.exceptions), objects a
    table document or a state checkpoint refers to, table snapshots (also those in the
    --snapshots stores) and what they refer to, objects a running service has pinned
    (stored, its record not yet sent), and objects younger than --older-than. Orphans of
    crashes and expired claim-checks go. The first line names the backends scanned; gc
    refuses ones that cannot be the platform's (see --force). The last line counts the
    objects kept for each reason.

    \b
    Example:
      millstream files gc --dry-run
      millstream files gc --older-than 1d
    """
    from millstream.tables import open_tables

    match = re.fullmatch(r"(\d+)\s*([smhd])", older_than.strip())
    if match is None:
        raise click.BadParameter(f"{older_than!r} is not a span like 0s, 30m, 2h or 1d",
                                 param_hint="--older-than")
    seconds = int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    units = {"stream": "record(s)", "table": "document(s)", "snapshot": "document(s)"}

    def progress(what: str, name: str, count: int) -> None:
        click.echo(f"scanned {what} {name}: {count} {units[what]}", err=True)

    store = _store(ctx)
    streams_at, tables_at = _platform_backends(state.streams_url, tables_url, force)
    click.echo(f"gc of {store.url}: references from streams {streams_at} and "
               f"{f'tables {tables_at}' if tables_at else 'no tables (none exist)'}"
               f"{''.join(f', snapshots in {url}' for url in snapshot_urls)}", err=True)
    with contextlib.closing(store), open_streams(state) as streams, \
            (open_tables(tables_at) if tables_at else contextlib.nullcontext()) as tables:
        if not force:
            assert tables is not None and tables_at is not None
            _refuse_foreign_backends(store, streams, tables, streams_at, tables_at)
        platform = open_files()  # where claim-check and checkpoint-state objects are kept
        with contextlib.ExitStack() as others:
            others.enter_context(contextlib.closing(platform))
            snapshots_in = [others.enter_context(contextlib.closing(open_files(url)))
                            for url in snapshot_urls]
            report = run_gc(store, streams, tables, dry_run=dry_run, older_than_s=seconds,
                            prefix=prefix, progress=progress, platform=platform,
                            snapshots_in=snapshots_in)
    verb = "would delete" if dry_run else "deleted"
    for ref in report.deleted:
        click.echo(f"{verb} {ref.url} ({decimal(ref.size)})")
    for url in report.unreadable:
        click.echo(f"kept {url}: unreadable, not scanned for references", err=True)
    kept = report.kept
    click.echo(f"{verb} {len(report.deleted)} object(s), "
               f"{decimal(sum(r.size for r in report.deleted))}; kept "
               f"{sum(kept.values())} object(s): referred to by records {kept['records']}, "
               f"tables {kept['tables']}, snapshots {kept['snapshots']}, checkpoints "
               f"{kept['checkpoints']}; pinned by running writers {kept['pins']}; younger "
               f"than {older_than.strip()} {kept['young']}", err=True)
