"""The file:// store's own promises: layout, records, configuration (damage: test_damage)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from millstream.errors import ConfigError
from millstream.files import open_files
from millstream.files._local import LocalStore


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
    assert sidecar == {"name": "v/clip.mp4", "sha256": sha(b"12345"), "size": 5,
                       "content_type": "video/mp4", "ino": ino}
    assert list((tmp_path / "files/.tmp").iterdir()) == []


def test_stat_reads_the_sidecar_not_the_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    store.put("x", b"original")
    with open(tmp_path / "files/x", "r+b") as f:  # damage in place: the record stands
        f.write(b"O")
    assert store.stat("x").sha256 == sha(b"original")


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
