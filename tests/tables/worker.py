"""A child process for the tables crash tests: materialize a table from a stream.

``python -m tests.tables.worker STREAMS_URL TABLES_URL TABLE STREAM BATCH [MAX_BATCHES]`` prints
``READY`` once open and ``B <records>`` after every committed batch, until the stream is caught
up (then ``DONE``) — or until a fault point (``MILLSTREAM_FAULT``) or a SIGKILL ends it. After
``MAX_BATCHES`` batches it prints ``PAUSED`` and waits to be killed: a parent that a loaded
machine holds up does not find the worker far past where it meant to kill it.
"""

from __future__ import annotations

import sys
import time

import millstream
from millstream.tables import open_tables
from millstream.tables._materialize import Materializer


def main(argv: list[str]) -> None:
    streams_url, tables_url, table, stream, batch, *rest = argv
    max_batches = int(rest[0]) if rest else None
    with millstream.open_streams(streams_url) as streams, open_tables(tables_url) as tables, \
            Materializer(streams, tables, table, stream, batch_size=int(batch),
                         indexes=["colour"]) as m:
        print("READY", flush=True)
        batches = 0
        while (n := m.step(timeout=0.2)) > 0:
            print(f"B {n}", flush=True)
            batches += 1
            if batches == max_batches:
                print("PAUSED", flush=True)
                time.sleep(600)  # killed long before, unless its parent is gone
                sys.exit(3)
        print("DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
