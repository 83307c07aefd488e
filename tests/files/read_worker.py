"""A child process that reads one object, for race tests.

    python -m tests.files.read_worker URL NAME HOW [SECONDS]

``HOW`` is ``full`` (``read_bytes``), ``range`` (bytes 0..100, then ``local_path``'s file
from the store) or ``local_path``. Once, it prints ``ok SHA256`` of what it got (for a range,
of the whole file it names) or ``error CLASS: MESSAGE``. With ``SECONDS``, it reads in a loop
for that long, every way in turn, and prints one line per failure and ``reads N`` at the end.
Run it with ``MILLSTREAM_FAULT_PAUSE=files.read.after_record`` to hold it between reading
the record and opening the file.
"""

from __future__ import annotations

import hashlib
import sys
import time

from millstream.errors import MillstreamError
from millstream.files import open_files


def read_once(store: object, name: str, how: str) -> bytes:
    if how == "full":
        return store.read_bytes(name)  # type: ignore[attr-defined, no-any-return]
    if how == "range":
        with store.open(name, start=0, end=100) as f:  # type: ignore[attr-defined]
            head = f.read()
        assert len(head) == 100, len(head)
        return head
    return store.local_path(name).read_bytes()  # type: ignore[attr-defined, no-any-return]


def main(argv: list[str]) -> None:
    url, name, how, *rest = argv
    store = open_files(url)
    if not rest:
        try:
            data = read_once(store, name, how)
        except MillstreamError as exc:
            print("error", f"{type(exc).__name__}: {exc}", flush=True)
            return
        print("ok", hashlib.sha256(data).hexdigest(), len(data), flush=True)
        return
    until = time.monotonic() + float(rest[0])
    reads = 0
    while time.monotonic() < until:
        for kind in ("full", "range", "local_path"):
            try:
                read_once(store, name, kind)
                reads += 1
            except MillstreamError as exc:
                print("error", kind, f"{type(exc).__name__}: {exc}", flush=True)
    print("reads", reads, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
