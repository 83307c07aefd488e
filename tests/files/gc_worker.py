"""A child process that runs ``files gc``, for race tests.

    python -m tests.files.gc_worker FILES_URL STREAMS_URL [OPTIONS_JSON]

runs ``run_gc`` with ``older_than_s=0`` (tables: the configured ones) and prints one JSON
line: the URLs deleted and the objects kept per reason. Hold it at a fault point with
``MILLSTREAM_FAULT_PAUSE`` and ``MILLSTREAM_FAULT_PAUSE_FILE`` (see ``millstream.faults``);
shorten the pin protocol's limits with ``GC_WORKER_LIMITS`` (``Limits`` fields as JSON). A gc
that refuses to go on (``UnavailableError``) prints ``{"error": message, "deleted": [...]}``.
"""

from __future__ import annotations

import json
import os
import sys

import millstream
from millstream.errors import UnavailableError
from millstream.files import open_files
from millstream.files._gc import run_gc
from millstream.files._pin_area import Limits
from millstream.tables import open_tables


def main(argv: list[str]) -> None:
    files_url, streams_url, *rest = argv
    store = open_files(files_url, options=json.loads(rest[0]) if rest else None)
    limits = Limits(**json.loads(os.environ.get("GC_WORKER_LIMITS", "{}")))
    with millstream.open_streams(streams_url) as streams, open_tables() as tables:
        try:
            report = run_gc(store, streams, tables, older_than_s=0, limits=limits)
        except UnavailableError as exc:
            left = sorted(r.url for r in store.list() if "millstream.gc/" not in r.url)
            print(json.dumps({"error": str(exc), "deleted": [], "left": left}), flush=True)
            return
    print(json.dumps({"deleted": [r.url for r in report.deleted], "kept": report.kept}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
