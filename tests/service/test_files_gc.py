"""``millstream files gc``: objects no retained record refers to go; referenced ones stay."""

from __future__ import annotations

import os
import time

from click.testing import CliRunner

import millstream
from millstream.cli.main import cli
from millstream.files import open_files
from millstream.files._claimcheck import ClaimCheck, claim_checked
from millstream.tables import open_tables


def test_gc_keeps_referenced_objects_and_deletes_orphans() -> None:
    files = open_files()
    kept = files.put("media/kept.bin", b"k" * 100)
    orphan = files.put("media/orphan.bin", b"o" * 200)  # its record was never sent
    young = files.put("media/young.bin", b"y" * 50)  # just written: a writer may be mid-way
    old = time.time() - 7200
    for ref in (kept, orphan):
        os.utime(files.local_path(ref), (old, old))
    with millstream.open_streams() as streams, open_tables():  # the platform's tables exist
        streams.admin().create_stream("catalog")
        with streams.open_producer() as producer:
            producer.send("catalog", b'{"id": 1, "video": ' + kept.model_dump_json().encode()
                          + b"}", key=b"1")
            producer.send("catalog", b"not json", key=b"2")
        # a claim-checked value: its object is referenced by the record that replaced it
        with claim_checked(streams, ClaimCheck(files, threshold_bytes=10)) as checked, \
                checked.open_producer() as producer:
            producer.send("catalog", b"c" * 1000, key=b"3")
    claim = next(r for r in files.list("claim-check/"))
    os.utime(files.local_path(claim), (old, old))

    dry = CliRunner().invoke(cli, ["files", "gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would delete {orphan.url} (200 bytes)" in dry.output
    assert "would delete 1 object(s)" in dry.output
    assert files.exists(orphan)

    done = CliRunner().invoke(cli, ["files", "gc"])
    assert done.exit_code == 0, done.output
    assert done.output.strip().splitlines()[-1] == (
        "deleted 1 object(s), 200 bytes; kept 3 object(s): referred to by records 2, tables "
        "0, snapshots 0, checkpoints 0; pinned by running writers 0; younger than 1h 1")
    assert not files.exists(orphan)
    assert files.exists(kept) and files.exists(claim) and files.exists(young)
    # with no age protection the young orphan goes too
    done = CliRunner().invoke(cli, ["files", "gc", "--older-than", "0s"])
    assert done.exit_code == 0 and not files.exists(young) and files.exists(kept)
