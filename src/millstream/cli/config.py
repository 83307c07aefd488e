"""``millstream config show`` and ``millstream doctor``: what is configured, and does it work.

``doctor`` checks each backend the configuration names — streams, files, tables — through
the same table of backends that opens it (``millstream._backends``), and says for each what
to fix; it exits with 1 if any check fails.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import click
from rich.text import Text

from millstream._backends import FAMILIES
from millstream.cli.shared import CliState, console, pass_state, table
from millstream.config import PlatformConfig, load_config
from millstream.errors import MillstreamError

__all__ = ["Check", "config_group", "doctor", "run_checks", "shown"]


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


_SECRET = re.compile(r"secret|password|passwd|token|^key$|sasl\.", re.IGNORECASE)


def shown(url: str) -> str:
    """``url`` with passwords and secret options replaced by ``***``, for printing."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        f"{name}={'***' if _SECRET.search(name) else value}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(netloc=netloc, query=query)) if (
        netloc != parts.netloc or query != parts.query) else url


def run_checks(config: PlatformConfig) -> list[Check]:
    """Check every backend the configuration names, through the code that opens it."""
    out = []
    for backend, family in FAMILIES.items():
        url = getattr(config, backend)
        try:
            out.append(Check(backend, url, True, family.check(url, config.home, None)))
        except MillstreamError as exc:
            out.append(Check(backend, url, False, str(exc)))
    return out


@click.command("doctor")
@pass_state
@click.pass_context
def doctor(ctx: click.Context, state: CliState) -> None:
    """Check that the streams, files and tables backends work, and say what to fix.

    Each backend is opened as services open it and asked one question that needs the server,
    the credentials and the bucket or database: the embedded log and Kafka list their
    streams, S3 lists a key of the bucket, PostgreSQL connects and looks for millstream's
    schema, a file:// directory or SQLite file is checked for writing. Nothing is created
    on S3 or PostgreSQL. Exits with 1 if any check fails.

    \b
    Example:
      millstream doctor
    """
    config = load_config(streams=state.streams_url)
    checks = run_checks(config)
    t = table("Backend", "URL", "Status", "Details")
    for c in checks:
        status = Text("OK", style="green") if c.ok else Text("FAIL", style="bold red")
        t.add_row(c.backend, shown(c.url), status, c.detail)
    out = console()
    out.print(t)
    failed = [c.backend for c in checks if not c.ok]
    if failed:
        out.print(f"{len(failed)} check(s) failed ({', '.join(failed)}); fix them and run "
                  "millstream doctor again", style="red")
        ctx.exit(1)
    out.print("all backends OK", style="green")
