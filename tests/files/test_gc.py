"""Garbage collection: find references in payloads, delete what none refers to."""

from __future__ import annotations

from pathlib import Path

import pytest

from millstream.errors import InvalidRequestError
from millstream.files import collect_garbage, find_references, open_files

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
    import os

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
