"""The upgrade path for files without a record: ``files ls --unrecorded`` shows them and
``files adopt PREFIX`` records them explicitly, one line each; nothing is adopted silently,
and an object that has a record is never re-recorded."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from millstream.cli.files import files_group
from millstream.cli.main import _Group
from millstream.errors import CorruptDataError, InvalidRequestError
from millstream.files._fsspec import FsspecStore
from millstream.files._local import LocalStore


@click.group(cls=_Group)
def cli() -> None:
    """The top-level group with only `files` in it."""


cli.add_command(files_group)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files(store: LocalStore, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, ["files", "--files", store.url, *args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_files_copied_in_by_hand_are_listed_unrecorded_and_adopted_one_by_one(
        tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    kept = store.put("videos/a.mp4", b"written by the store", content_type="video/mp4")
    record = store.meta_path("videos/a.mp4").read_text()
    (store.root / "videos/b.mp4").write_bytes(b"copied in by hand")
    (store.root / "other").mkdir()
    (store.root / "other/c.txt").write_bytes(b"not under the prefix")

    assert [r.url for r in store.list()] == [kept.url]  # not objects yet
    listed = files(store, "ls", "--unrecorded")
    assert listed.stdout == "other/c.txt\nvideos/b.mp4\n"
    assert "2 file(s) without a record" in listed.stderr

    done = files(store, "adopt", "videos/")
    assert done.stdout == f"adopted videos/b.mp4 17 {sha(b'copied in by hand')}\n"
    assert done.stderr == "adopted 1 file(s) under 'videos/', 0 not adopted\n"
    assert store.read_bytes("videos/b.mp4") == b"copied in by hand"
    assert store.stat("videos/b.mp4").content_type == "video/mp4"
    assert store.meta_path("videos/a.mp4").read_text() == record  # never touched
    assert files(store, "ls", "--unrecorded").stdout == "other/c.txt\n"
    assert files(store, "adopt", "videos/").stdout == ""
    with pytest.raises(InvalidRequestError, match="already an object"):
        store.adopt("videos/a.mp4")


def _old_leftover(store: LocalStore, name: str, data: bytes, recorded: bytes) -> Path:
    """What a write of the previous version killed between its renames left: the file in
    place, its record (no name in it) in .tmp/<random>.json, a day old."""
    (store.root / name).parent.mkdir(parents=True, exist_ok=True)
    (store.root / name).write_bytes(data)
    leftover = store.root / ".tmp" / f"{uuid.uuid4().hex}.json"
    leftover.write_text(json.dumps({
        "sha256": sha(recorded), "size": len(recorded), "content_type": "video/x-old",
        "ino": os.stat(store.root / name).st_ino}))
    old = time.time() - 2 * 24 * 3600
    os.utime(leftover, (old, old))
    return leftover


def test_an_older_versions_interrupted_write_is_adopted_against_its_record(
        tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    good = _old_leftover(store, "v/good.bin", b"whole", b"whole")
    bad = _old_leftover(store, "v/bad.bin", b"damaged", b"written")
    store = LocalStore(tmp_path / "files")  # opening reaps day-old temporaries, not these
    assert good.exists() and bad.exists()

    result = files(store, "adopt", "v/", code=1)
    assert result.stdout == f"adopted v/good.bin 5 {sha(b'whole')}\n"
    assert f"not adopted v/bad.bin: {store.url}/v/bad.bin: the interrupted write" in (
        result.stderr)
    assert result.stderr.endswith("adopted 1 file(s) under 'v/', 1 not adopted\n")
    assert store.stat("v/good.bin").content_type == "video/x-old"
    assert not good.exists() and bad.exists()
    with pytest.raises(CorruptDataError, match="no SHA-256 recorded"):
        store.read_bytes("v/bad.bin")


def test_an_fsspec_object_without_a_sidecar_is_adopted_explicitly() -> None:
    store = FsspecStore(f"memory://millstream-tests/{uuid.uuid4().hex[:8]}")
    store.put("a.bin", b"by the store")
    store.fs.pipe_file(f"{store.root}/b.bin", b"by another tool")
    assert list(store.unrecorded()) == ["b.bin"]
    ref = store.adopt("b.bin", content_type="application/x-test")
    assert (ref.size, ref.sha256, ref.content_type) == (
        15, sha(b"by another tool"), "application/x-test")
    assert store.read_bytes("b.bin") == b"by another tool"
    assert list(store.unrecorded()) == []
    assert store.fs.find(f"{store.root}/.tmp") == []
    with pytest.raises(InvalidRequestError, match="already an object"):
        store.adopt("a.bin")
