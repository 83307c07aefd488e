"""What every command shares: the global options, opening the streams backend, the consoles."""

from __future__ import annotations

from dataclasses import dataclass

import click
from rich import box
from rich.console import Console
from rich.table import Table

import millstream
from millstream.streams._base import Streams

__all__ = ["CliState", "console", "open_streams", "pass_state", "table"]

# Piped output is not wrapped at 80 columns: a table is as wide as its content.
_PIPE_WIDTH = 500


@dataclass(frozen=True, slots=True)
class CliState:
    """The global options, given to every command: ``--streams URL`` (None: configured)."""

    streams_url: str | None = None


pass_state = click.make_pass_decorator(CliState, ensure=True)


def open_streams(state: CliState) -> Streams:
    """Open the streams backend the command line names (``--streams``) or the configured one."""
    return millstream.open_streams(state.streams_url)


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr) that writes to whatever stream click set up.

    Markup is off: names, paths and messages are printed as they are (style with ``Text``).
    """
    out = Console(stderr=stderr, highlight=False, markup=False)
    if not out.is_terminal:
        out.width = _PIPE_WIDTH
    return out


def table(*columns: str, title: str | None = None) -> Table:
    """A plain table in the command line's one style; numeric columns are given right-aligned
    by a leading ``>`` in their name (``">End"``)."""
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False,
              show_edge=False)
    for name in columns:  # fold long names and paths on narrow terminals, never cut them
        if name.startswith(">"):
            t.add_column(name[1:], justify="right", overflow="fold")
        else:
            t.add_column(name, overflow="fold")
    return t
