"""``millstream config show`` and ``millstream doctor``: what is configured, and does it work.

``doctor`` checks each backend the configuration names — streams, files, tables — and says
for each what to fix; it exits with 1 if any check fails.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import click
from rich.filesize import decimal
from rich.text import Text

import millstream
from millstream.cli.shared import CliState, console, pass_state, table
from millstream.config import PlatformConfig, load_config
from millstream.errors import MillstreamError

__all__ = ["Check", "check_files", "check_streams", "check_tables", "config_group", "doctor"]


def _source(source: str) -> str:
    if source == "argument":
        return "--streams option"
    if source.startswith("$"):
        return f"environment ({source})"
    if source == "default":
        return "default"
    return f"file {source}"


@click.group("config")
def config_group() -> None:
    """Show the configuration: which streams, files and tables URLs are used, and why.

    \b
    Example:
      millstream config show
    """


@config_group.command("show")
@pass_state
def show(state: CliState) -> None:
    """Show the resolved streams, files and tables URLs and where each came from.

    Highest first: the --streams option, the MILLSTREAM_STREAMS / MILLSTREAM_FILES /
    MILLSTREAM_TABLES environment variables, millstream.toml ([platform] table, or the file
    MILLSTREAM_CONFIG names), then defaults under MILLSTREAM_HOME.

    \b
    Example:
      MILLSTREAM_STREAMS=local:/srv/streams millstream config show
    """
    config = load_config(streams=state.streams_url)
    home_source = (
        "environment ($MILLSTREAM_HOME)" if os.environ.get("MILLSTREAM_HOME")
        else "default (./.millstream)"
    )
    t = table("Setting", "Value", "Source")
    t.add_row("MILLSTREAM_HOME", str(config.home), home_source)
    for key in ("streams", "files", "tables"):
        t.add_row(key, getattr(config, key), _source(config.sources.get(key, "default")))
    console().print(t)


@dataclass(frozen=True, slots=True)
class Check:
    """One doctor check: which backend, its URL, whether it passed, and details or the fix."""

    backend: str
    url: str
    ok: bool
    detail: str


def check_streams(config: PlatformConfig) -> Check:
    """Open the streams URL and list its streams; for ``local:``, report the database."""
    url = config.streams
    try:
        with millstream.open_streams(url) as streams:
            names = streams.admin().list_streams()
    except MillstreamError as exc:
        return Check("streams", url, False,
                     f"{exc} — fix the streams URL (--streams, MILLSTREAM_STREAMS or "
                     "millstream.toml), e.g. local:")
    detail = f"{len(names)} stream(s)"
    if url.startswith("local:"):
        from millstream.streams.local import parse_local_url

        path, _ = parse_local_url(url, config.home)
        size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
                   if p.exists())
        detail = f"database {path} ({decimal(size)}), {detail}"
    return Check("streams", url, True, detail)


def _check_directory(path: Path, setting: str, what: str) -> tuple[bool, str]:
    """Whether ``path`` is a writable directory, or one that can be created."""
    if path.exists():
        if not path.is_dir():
            return False, f"{path} is not a directory — point {setting} at a directory"
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            return False, (f"{path} is not writable ({exc.strerror}) — fix its permissions "
                           f"or point {setting} elsewhere")
        return True, f"{what} {path} is writable"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return False, (f"cannot create {path}: {ancestor} is a file, not a directory — "
                       f"point {setting} at a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return False, (f"cannot create {path}: {ancestor} is not writable — fix its "
                       f"permissions or point {setting} elsewhere")
    return True, f"{what} {path} will be created on first use"


def check_files(config: PlatformConfig) -> Check:
    """The files URL: a ``file://`` directory that exists or can be created, and is writable."""
    url = config.files
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return Check("files", url, False,
                         "a file URL names a local path: use file:///absolute/path")
        ok, detail = _check_directory(Path(url2pathname(unquote(parts.path))),
                                      "MILLSTREAM_FILES", "directory")
        return Check("files", url, ok, detail)
    if parts.scheme in ("s3", "s3a"):
        fix = ("S3 file stores need the 's3' extra (pip install 'millstream[s3]') and land in a "
               "later version of millstream; use a file:/// URL for now")
    elif not parts.scheme:
        fix = "not a URL — write a directory as file:///absolute/path"
    else:
        fix = (f"{parts.scheme}:// file stores are not supported — use file:///absolute/path "
               "(s3:// arrives in a later version with the 's3' extra)")
    return Check("files", url, False, fix)


def check_tables(config: PlatformConfig) -> Check:
    """The tables URL: ``sqlite:///path`` that sqlite3 can open (or create)."""
    url = config.tables
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return Check("tables", url, False,
                     "PostgreSQL tables need the 'postgres' extra (pip install "
                     "'millstream[postgres]') and land in a later version of millstream; use "
                     "sqlite:///absolute/path/tables.db for now")
    if parts.scheme != "sqlite":
        return Check("tables", url, False,
                     f"{url!r} is not a sqlite: URL — use sqlite:///absolute/path/tables.db")
    raw = unquote(parts.netloc + parts.path)
    if raw in ("", "/"):
        return Check("tables", url, False,
                     "the URL names no file — use sqlite:///absolute/path/tables.db")
    path = Path(raw).absolute()
    if not path.exists():
        ok, detail = _check_directory(path.parent, "MILLSTREAM_TABLES", "directory")
        if ok:
            detail = f"database {path} will be created on first use"
        return Check("tables", url, ok, detail)
    if path.is_dir():
        return Check("tables", url, False,
                     f"{path} is a directory — name a database file in MILLSTREAM_TABLES")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("tables", url, False,
                     f"sqlite3 cannot open {path} ({exc}) — fix its permissions, restore it, "
                     "or point MILLSTREAM_TABLES at another file")
    return Check("tables", url, True, f"database {path} ({decimal(path.stat().st_size)}) opens")


@click.command("doctor")
@pass_state
@click.pass_context
def doctor(ctx: click.Context, state: CliState) -> None:
    """Check that the streams, files and tables backends work, and say what to fix.

    Exits with 1 if any check fails.

    \b
    Example:
      millstream doctor
    """
    config = load_config(streams=state.streams_url)
    checks = [check_streams(config), check_files(config), check_tables(config)]
    t = table("Backend", "URL", "Status", "Details")
    for c in checks:
        status = Text("OK", style="green") if c.ok else Text("FAIL", style="bold red")
        t.add_row(c.backend, c.url, status, c.detail)
    out = console()
    out.print(t)
    failed = [c.backend for c in checks if not c.ok]
    if failed:
        out.print(f"{len(failed)} check(s) failed ({', '.join(failed)}); fix them and run "
                  "millstream doctor again", style="red")
        ctx.exit(1)
    out.print("all backends OK", style="green")
