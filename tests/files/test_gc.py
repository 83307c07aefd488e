"""Garbage collection: find references in payloads, delete what none refers to."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import millstream
from millstream.errors import InvalidRequestError, UnavailableError
from millstream.faults import FAULT_EXIT_CODE
from millstream.files import collect_garbage, find_references, open_files
from millstream.files._pins import MARKER_S, Pins, gc_running, running_marker
from millstream.files.gc import run_gc
from millstream.tables import open_tables
from millstream.tables.snapshot import write_snapshot
from tests.support.children import REPO

H = "ab" * 32


def test_find_references_in_nested_values() -> None:
    value = {
        "video": {"url": "file:///f/a.mp4", "size": 10, "sha256": H, "content_type": None},
        "thumbs": [{"url": "s3://b/t1.jpg", "size": 1, "sha256": H},
                   ({"url": "s3://b/t2.jpg", "size": 0, "sha256": H},)],
        "inner": {"ref": {"url": "s3://b/nested", "size": 3, "sha256": H,
                          "more": {"url": "s3://b/deeper", "size": 4, "sha256": H}}},
        "not-refs": [
            {"url": "s3://b/short-hash", "size": 1, "sha256": "abc"},
            {"url": "s3://b/bool-size", "size": True, "sha256": H},
            {"url": "s3://b/no-size", "sha256": H},
            {"url": 5, "size": 1, "sha256": H},
            "s3://b/plain-string",
        ],
    }
    assert find_references(value) == {"file:///f/a.mp4", "s3://b/t1.jpg", "s3://b/t2.jpg",
                                      "s3://b/nested", "s3://b/deeper"}
    assert find_references([1, "x", None]) == set()


def test_collect_garbage_keeps_referenced_and_young_objects(tmp_path: Path) -> None:
    store = open_files((tmp_path / "files").as_uri())
    kept = store.put("a/kept", b"1")
    old = store.put("a/old", b"22")
    young = store.put("b/young", b"333")
    written = {ref.url: store.modified(ref) for ref in (kept, old, young)}  # type: ignore[attr-defined]
    now = written[young.url] + 10

    os.utime(Path(old.url.removeprefix("file://")), (now - 7200, now - 7200))
    referenced = find_references({"payload": kept.model_dump()})

    assert collect_garbage(store, referenced, dry_run=True, older_than_s=3600,
                           clock=lambda: now) == [old]
    assert store.exists(old)
    assert collect_garbage(store, referenced, older_than_s=3600, clock=lambda: now) == [old]
    assert [r.url for r in store.list()] == [kept.url, young.url]
    assert collect_garbage(store, referenced, older_than_s=0) == [young]
    assert [r.url for r in store.list()] == [kept.url]
    with pytest.raises(InvalidRequestError):
        collect_garbage(store, referenced, older_than_s=-1)


def test_collect_garbage_keeps_table_snapshots_and_what_they_refer_to(tmp_path: Path) -> None:
    store = open_files((tmp_path / "files").as_uri())
    snapped, orphan = store.put("a/snapped", b"s" * 3), store.put("a/orphan", b"o" * 4)
    with open_tables(f"sqlite:///{tmp_path}/t.db") as tables:
        table = tables.ensure_table("videos")
        table.put("v", {"file": snapped.model_dump()})
        write_snapshot(table, store)
    snapshot = next(store.list("tables/videos/snapshots/"))
    assert collect_garbage(store, set(), older_than_s=0) == [orphan]
    assert {r.url for r in store.list()} == {snapped.url, snapshot.url}


def test_what_a_killed_gc_leaves_expires_and_the_next_gc_removes_it(tmp_path: Path) -> None:
    url = (tmp_path / "files").as_uri()
    store = open_files(url)
    orphan = store.put("obj/orphan", b"o" * 5)
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        streams.admin().create_stream("s", 1)
        env = dict(os.environ, PYTHONPATH=str(REPO), MILLSTREAM_FAULT="files.gc.condemned")
        done = subprocess.run([sys.executable, "-m", "tests.files.gc_worker", url,
                               f"local:{tmp_path / 'log'}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == FAULT_EXIT_CODE, done.stderr
        left = sorted(r.url.removeprefix(url + "/").split("/")[1]
                      for r in store.list("millstream.gc/"))
        assert left == ["condemned", "running"]
        # a writer waits for a fresh condemnation, not for one over two minutes old
        Pins(store, clock=lambda: time.time() + 121).hold("obj/orphan")
        with pytest.raises(UnavailableError, match="condemned by `millstream files gc`"):
            Pins(store, wait_s=0.2).hold("obj/orphan")
        # a gc ten minutes later removes what the killed one left, and the writers' pins of
        # that test are a day old by then
        report = run_gc(store, streams, older_than_s=0,
                        clock=lambda: time.time() + 24 * 3600 + 1)
    assert [r.url for r in report.deleted] == [orphan.url]
    assert list(store.list("millstream.gc/")) == []


def test_a_gc_held_up_longer_than_writers_wait_for_it_deletes_nothing_more(
        tmp_path: Path) -> None:
    store = open_files((tmp_path / "files").as_uri())
    now = [1000.0]
    with running_marker(store, monotonic=lambda: now[0]) as marker:
        assert gc_running(store)
        now[0] += MARKER_S / 10 + 1
        marker.refresh()  # rewritten: fresh again
        now[0] += MARKER_S / 2 - 1
        marker.check()
        now[0] += 2  # over half the time writers give it, since its last rewrite
        with pytest.raises(UnavailableError, match="deleted nothing more — run it again"):
            marker.check()
    assert not gc_running(store)
