"""``files gc`` keeps what a damaged object still names: a claim-check value or a snapshot
whose bytes changed in place is scanned as it is (unverified), never skipped, because the
objects it refers to may be all that is left once the original is restored."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import millstream
from millstream.files import ClaimCheck, FileRef, claim_checked, open_files
from millstream.files._gc import run_gc
from millstream.files._local import LocalStore
from millstream.streams._base import Streams
from millstream.tables import open_tables
from millstream.tables._snapshot import write_snapshot


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[Streams]:
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as s:
        s.admin().create_stream("events", 1)
        yield s


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = open_files((tmp_path / "files").as_uri())
    assert isinstance(store, LocalStore)
    return store


def damage(path: Path, how: str) -> None:
    with open(path, "r+b") as f:  # in place: same inode
        if how == "appended":
            f.seek(0, os.SEEK_END)
            f.write(b"x")
        elif how == "flipped":  # a byte of the padding, before the reference
            f.seek(20)
            byte = f.read(1)
            f.seek(20)
            f.write(bytes([byte[0] ^ 0x01]))
        else:  # cut short: the closing brace is gone
            f.truncate(os.path.getsize(path) - 1)


@pytest.mark.parametrize("how", ["appended", "flipped", "truncated"])
def test_gc_keeps_what_a_damaged_claim_check_object_refers_to(
        streams: Streams, store: LocalStore, how: str) -> None:
    inner = store.put("obj/inner", b"inner" * 10)
    orphan = store.put("obj/orphan", b"orphan" * 10)
    big = json.dumps({"pad": "p" * 5000, "ref": inner.model_dump()}).encode()
    checked = claim_checked(streams, ClaimCheck(store, threshold_bytes=1000))
    with checked.open_producer() as producer:
        producer.send("events", big, key=b"k")
    (claim,) = store.list("claim-check/")
    damage(store.root / claim.url.removeprefix(store.url + "/"), how)

    report = run_gc(store, streams, older_than_s=0)
    assert [r.url for r in report.deleted] == [orphan.url]
    assert report.unreadable == [claim.url]
    assert {r.url for r in store.list()} == {inner.url, claim.url}


def test_gc_keeps_what_a_damaged_snapshot_refers_to(
        streams: Streams, store: LocalStore, tmp_path: Path) -> None:
    snapped = store.put("obj/snapped", b"s" * 10)
    orphan = store.put("obj/orphan", b"o" * 10)
    with open_tables(f"sqlite:{tmp_path / 'tables.db'}") as tables:
        table = tables.ensure_table("media")
        table.put("k", {"file": snapped.model_dump()})
        snapshot: FileRef = write_snapshot(table, store).ref
        table.delete("k")
        damage(store.root / snapshot.url.removeprefix(store.url + "/"), "appended")
        report = run_gc(store, streams, tables, older_than_s=0)
    assert [r.url for r in report.deleted] == [orphan.url]
    assert report.unreadable == [snapshot.url]
    assert {r.url for r in store.list()} == {snapped.url, snapshot.url}
