"""The millstream console beside the site, in this process: what the demo starts so that a
new user sees the services working live (``millstream console`` does the same as a
process of its own).

The console reads the platform the site runs on through handles of its own (streams, file
store, tables), as a console process would, and is read-only unless given a token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import millstream
from millstream.console import ServedConsole, create_app
from millstream.files import open_files
from millstream.tables import open_tables

__all__ = ["CONSOLE_PORT", "open_console"]

#: the port ``millstream console`` serves on by default; the demo takes it when it is free
CONSOLE_PORT = 8765


@contextmanager
def open_console(streams_url: str, *, port: int, token: str | None = None
                 ) -> Iterator[ServedConsole]:
    """The console for the platform at ``streams_url`` (the file store and tables from the
    same configuration), served on ``127.0.0.1:port`` until the block ends. ``token``
    allows its actions (8 characters or more)."""
    streams = millstream.open_streams(streams_url)
    try:
        app = create_app(streams, token=token, streams_url=streams_url,
                         open_files=open_files, open_tables=open_tables)
    except BaseException:
        streams.close()
        raise
    try:
        with ServedConsole(app, port=port) as served:
            yield served
    finally:
        app.state.console.close()
        streams.close()
