"""Snapshots: a consistent copy of a table and its offsets in the file store, restored so the
materializer continues from there; damaged snapshots are refused and change nothing."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest

from millstream import CorruptDataError, NotFoundError, StreamPartition, Streams
from millstream.files import FileStore, open_files
from millstream.tables import Tables
from millstream.tables._materialize import Materializer
from millstream.tables._snapshot import (
    latest_snapshot,
    list_snapshots,
    restore_snapshot,
    write_snapshot,
)
from tests.tables.helpers import produce_feed, replay


@pytest.fixture
def files() -> Iterator[FileStore]:
    store = open_files()
    yield store
    store.close()


def test_restore_then_continue_from_the_snapshot_offsets(
        streams: Streams, tables: Tables, files: FileStore) -> None:
    streams.admin().create_stream("feed", partitions=2)
    produce_feed(streams, "feed", 3000, keys=400)
    with Materializer(streams, tables, "orders", "feed", indexes=["colour"]) as m:
        m.catch_up()
    seen: list[tuple[int, int]] = []
    snap = write_snapshot(tables.table("orders"), files,
                          progress=lambda d, t: seen.append((d, t)))
    live = dict(tables.table("orders").scan())
    assert snap.documents == len(live) and seen[-1] == (len(live), len(live))
    assert snap.offsets == tables.table("orders").offsets() and snap.feed == "feed"
    assert snap.ref.url.startswith(files.url) and "tables/orders/snapshots/" in snap.ref.url
    assert latest_snapshot(files, "orders") == snap.ref == list_snapshots(files, "orders")[-1]

    # the stream moves on; a restored copy continues from the snapshot's offsets
    produce_feed(streams, "feed", 1000, keys=400, seed=5, start=3000)
    restored = restore_snapshot(files, snap.ref.url, tables, table="copy")
    assert restored.documents == snap.documents and restored.sha256 == snap.sha256
    copy = tables.table("copy")
    assert dict(copy.scan()) == live and copy.offsets() == snap.offsets
    assert copy.info().indexes == ("colour",) and copy.info().feed == "feed"
    with Materializer(streams, tables, "copy", "feed") as m:
        assert m.catch_up().records == 1000
    assert dict(copy.scan()) == replay(streams, "feed")

    # restoring over an existing table replaces its documents and offsets
    restore_snapshot(files, snap.ref, tables, table="copy")
    assert dict(copy.scan()) == live and copy.offsets() == snap.offsets


def test_a_snapshot_matches_its_offsets_while_the_table_is_written(
        streams: Streams, tables: Tables, files: FileStore) -> None:
    streams.admin().create_stream("feed")
    produce_feed(streams, "feed", 2000, keys=300)
    with Materializer(streams, tables, "t", "feed", batch_size=100) as m:
        m.step()
        with tables.table("t").export() as view:  # the view a snapshot would take
            m.catch_up()  # the table moves on meanwhile
            rows = dict(view.rows())
            offsets = view.offsets
        snap = write_snapshot(tables.table("t"), files)
    assert offsets == {StreamPartition("feed", 0): 100}
    assert {k: json.loads(v) for k, v in rows.items()} == replay(
        streams, "feed", offsets)
    restore_snapshot(files, snap.ref, tables, table="again")
    assert dict(tables.table("again").scan()) == replay(streams, "feed")


def _stored(files: FileStore, name: str) -> bytes:
    with files.open(name, verify=False) as f:
        return f.read()


@pytest.mark.parametrize("damage", ["flipped-byte", "edited-document", "truncated",
                                    "not-a-snapshot"])
def test_a_damaged_snapshot_is_refused_and_changes_nothing(
        tables: Tables, files: FileStore, damage: str) -> None:
    t = tables.create_table("t")
    with t.transaction() as tx:
        tx.put_json([(f"k{i:03d}", f'{{"i": {i}}}') for i in range(300)])
        tx.set_offsets({StreamPartition("s", 0): 300})
    snap = write_snapshot(t, files)
    name = snap.ref.url[len(files.url) + 1:]
    data = _stored(files, name)
    if damage == "flipped-byte":
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x10
        ref = files.put("bad.gz", bytes(bad))  # stored with a hash of its own: only ours tells
    else:
        text = gzip.decompress(data)
        if damage == "edited-document":
            text = text.replace(b'{"i": 17}', b'{"i": 71}')
        elif damage == "truncated":
            text = text[: text.rindex(b'{"end"')]
        else:
            text = b'{"hello": 1}\n'
        ref = files.put("bad.gz", gzip.compress(text))
    other = tables.create_table("other")
    other.put("keep", {"me": True})
    with pytest.raises(CorruptDataError, match="damaged"):
        restore_snapshot(files, ref, tables, table="other")
    assert dict(other.scan()) == {"keep": {"me": True}} and other.offsets() == {}


def test_no_snapshot_yet(files: FileStore) -> None:
    with pytest.raises(NotFoundError, match="millstream tables snapshot t"):
        latest_snapshot(files, "t")
