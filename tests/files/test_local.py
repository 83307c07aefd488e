"""The file:// store's own promises: layout, sidecars, adoption, configuration."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from millstream.errors import ConfigError
from millstream.files import open_files
from millstream.files.local import LocalStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_default_store_is_under_millstream_home(_isolated_home: Path) -> None:
    store = open_files()
    assert isinstance(store, LocalStore)
    assert store.url == (_isolated_home / "files").absolute().as_uri()
    ref = store.put("a/b.txt", b"hi")
    assert (_isolated_home / "files" / "a" / "b.txt").read_bytes() == b"hi"
    assert ref.url == store.url + "/a/b.txt"


def test_the_environment_and_argument_choose_the_store(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLSTREAM_FILES", (tmp_path / "env").as_uri())
    assert open_files().url == (tmp_path / "env").as_uri()
    assert open_files((tmp_path / "arg").as_uri()).url == (tmp_path / "arg").as_uri()


@pytest.mark.parametrize("url", ["/plain/path", "file://host/x", "file:///x?opt=1",
                                 "nosuchproto://x/y", "s3://"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_files(url)


def test_the_sidecar_records_hash_size_and_type(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    store.put("v/clip.mp4", b"12345", content_type="video/mp4")
    sidecar = json.loads((tmp_path / "files/.meta/v/clip.mp4.json").read_text())
    ino = os.stat(tmp_path / "files/v/clip.mp4").st_ino
    assert sidecar == {"sha256": sha(b"12345"), "size": 5, "content_type": "video/mp4",
                       "ino": ino}
    assert list((tmp_path / "files/.tmp").iterdir()) == []


def test_stat_reads_the_sidecar_not_the_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    store.put("x", b"original")
    with open(tmp_path / "files/x", "r+b") as f:  # damage in place: the record stands
        f.write(b"O")
    assert store.stat("x").sha256 == sha(b"original")


def test_a_file_copied_in_by_hand_is_hashed_once_and_recorded(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    (tmp_path / "files/manual").mkdir()
    (tmp_path / "files/manual/f.bin").write_bytes(b"by hand")
    ref = store.stat("manual/f.bin")
    assert (ref.size, ref.sha256) == (7, sha(b"by hand"))
    assert json.loads((tmp_path / "files/.meta/manual/f.bin.json").read_text())["sha256"] == (
        sha(b"by hand"))
    assert store.read_bytes("manual/f.bin") == b"by hand"


def test_a_sidecar_left_stale_by_a_crash_is_not_trusted(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    store.put("doc", b"version 1")
    # what a crash between the data rename and the sidecar rename leaves behind
    (tmp_path / "new").write_bytes(b"version 2")
    os.replace(tmp_path / "new", tmp_path / "files/doc")
    ref = store.stat("doc")
    assert (ref.size, ref.sha256) == (9, sha(b"version 2"))
    assert store.read_bytes("doc") == b"version 2"


def test_an_object_cannot_be_a_folder_too(tmp_path: Path) -> None:
    from millstream.errors import InvalidRequestError

    store = LocalStore(tmp_path / "files")
    store.put("a", b"1")
    with pytest.raises(InvalidRequestError, match="already an object"):
        store.put("a/b", b"2")
    assert [r.url.rsplit("/", 1)[1] for r in store.list()] == ["a"]
    assert list((tmp_path / "files/.tmp").iterdir()) == []


def test_delete_drops_empty_folders(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    store.put("deep/er/obj", b"1")
    store.delete("deep/er/obj")
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [".meta", ".tmp"]
    assert list((tmp_path / "files/.meta").iterdir()) == []
