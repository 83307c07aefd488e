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
from millstream.files._gc import run_gc
from millstream.files._gc_marks import condemn, gc_running, running_marker
from millstream.files._pin_area import Limits
from millstream.files._pins import Pins
from millstream.files._references import References
from millstream.tables import open_tables
from millstream.tables._snapshot import write_snapshot
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
        # a writer waits for a fresh condemnation, not for one older than the limit
        short = Limits(lease_s=6.0, marker_s=6.0, condemn_s=4.0)
        with pytest.raises(UnavailableError, match="condemned by `millstream files gc`"):
            Pins(store, wait_s=0.2, limits=short).hold("obj/orphan")
        time.sleep(short.condemn_s + 0.2)
        # a writer that honoured the expired condemnation would wait all of its wait_s (60 s)
        # and fail; one that aged it from its own first look would wait condemn_s: the bound
        # is that, and leaves a loaded machine seconds (not 1 s) for the pin's write
        t0 = time.monotonic()
        Pins(store, wait_s=60.0, limits=short).hold("obj/orphan")
        assert time.monotonic() - t0 < short.condemn_s
        # a gc after the marker and the pins expired removes what the killed one left, and
        # the pins of the writers above
        time.sleep(short.lease_s + 0.2)
        report = run_gc(store, streams, older_than_s=0, limits=short)
    assert [r.url for r in report.deleted] == [orphan.url]
    assert list(store.list("millstream.gc/")) == []


def test_a_gc_busy_in_one_long_call_still_shows_as_running(tmp_path: Path) -> None:
    store = open_files((tmp_path / "files").as_uri())
    # marker_s large enough that a loaded 2-core machine never holds the heartbeat thread
    # up for marker_s / 2 (then the marker would rightly go late and stop refreshing)
    limits = Limits(marker_s=5.0)
    with running_marker(store, limits) as marker:
        time.sleep(limits.marker_s + 1.0)  # one long call (an S3 listing): no refresh by gc
        marker.check()  # not late: the heartbeat rewrote it all along
        assert gc_running(store, limits=limits)  # and so the marker is fresh
    assert not gc_running(store)


def test_the_condemnation_window_starts_before_the_first_mark_is_written(
        tmp_path: Path) -> None:
    store = open_files((tmp_path / "files").as_uri())
    names = [f"obj/{i}" for i in range(200)]
    before = time.monotonic()
    started = condemn(store, names, "gc1")
    took = time.monotonic() - before
    assert before <= started < before + took / 10
    assert len(list(store.list("millstream.gc/condemned/"))) == 200


def test_an_object_is_kept_when_any_mention_holds_its_url_wherever_it_appears(
        tmp_path: Path) -> None:
    store = open_files((tmp_path / "files").as_uri())
    refs = References(store)
    base = store.url + "/"
    refs.add_bytes("records", b"\x00first " + f"{base}a/1 then {base}b/2".encode() + b"\xff")
    assert [refs.reason(base + n) for n in ("a/1", "b/2", "a/2", "b", "c/1")] == [
        "records", "records", None, "records", None]  # "b" is where "b/2" starts: kept
    # a mention added after a lookup is seen by the next one
    refs.add_bytes("checkpoints", b"\x01" + f"{base}c/1".encode())
    assert refs.reason(base + "c/1") == "checkpoints"
    refs.add_bytes("records", b"\x02" + f"{base}c/1".encode())
    assert refs.reason(base + "c/1") == "records"
    assert refs.reason("s3://elsewhere/a/1") is None
