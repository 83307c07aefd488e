"""A child process that writes one large object, for crash tests.

    python -m tests.files.put_worker URL NAME SIZE [OPTIONS_JSON]

writes SIZE bytes (byte i is ``i % 251``) through ``store.writer(NAME)``, printing ``started``
once the first MiB is written and ``committed SHA256`` after close. Run it with
``MILLSTREAM_FAULT=files.put.before_commit`` to die just before the object would appear, or
with ``MILLSTREAM_TEST_WRITE_PAUSE_S`` to write slowly enough to be SIGKILLed mid-way.
"""

from __future__ import annotations

import json
import os
import sys
import time

from millstream.files import open_files

PATTERN = bytes(i % 251 for i in range(251 * 4096))


def pattern(size: int) -> bytes:
    """The bytes the worker writes for ``size`` (the parent computes the same)."""
    reps = size // len(PATTERN) + 1
    return (PATTERN * reps)[:size]


def main(argv: list[str]) -> None:
    url, name, size_text, *rest = argv
    options = json.loads(rest[0]) if rest else None
    data = memoryview(pattern(int(size_text)))
    store = open_files(url, options=options)
    pause = float(os.environ.get("MILLSTREAM_TEST_WRITE_PAUSE_S", "0"))
    with store.writer(name, content_type="application/octet-stream") as w:
        for i in range(0, len(data), 1 << 20):
            w.write(bytes(data[i:i + (1 << 20)]))
            if i == 0:
                print("started", flush=True)
            if pause:
                time.sleep(pause)  # so a test can SIGKILL it mid-write
    assert w.ref is not None
    print("committed", w.ref.sha256, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
