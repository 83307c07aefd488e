"""Other fsspec stores (``memory://`` here): a put that fails leaves the previous version
readable, and an object without a sidecar is no object."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from millstream.errors import CorruptDataError
from millstream.files._fsspec import FsspecStore


class _MoveFails(FsspecStore):
    """A store whose move of an object onto its name fails, as a network filesystem's
    rename or an object store's copy can."""

    def _move(self, src: str, dst: str) -> None:
        if "/.meta/" not in dst:
            raise OSError(5, "Input/output error (injected)", dst)
        super()._move(src, dst)


def _url() -> str:
    return f"memory://millstream-tests/{uuid.uuid4().hex[:8]}"


def test_a_put_whose_move_fails_leaves_the_previous_version_readable() -> None:
    url = _url()
    store = FsspecStore(url)
    before = store.put("clip.bin", b"the previous version")
    with pytest.raises(OSError, match="injected"):
        _MoveFails(url).put("clip.bin", b"a new version that never lands, longer")
    assert store.stat("clip.bin") == before
    assert store.read_bytes("clip.bin") == b"the previous version"
    assert [r.url for r in store.list()] == [before.url]
    assert store.fs.find(f"{store.root}/.tmp") == []  # the failed put left nothing behind


def test_an_object_without_a_sidecar_is_refused_and_not_listed() -> None:
    store = FsspecStore(_url())
    kept = store.put("a.bin", b"written through the store")
    store.fs.pipe_file(f"{store.root}/b.bin", b"written by another tool")
    for call in (store.stat, store.read_bytes, store.local_path):
        with pytest.raises(CorruptDataError, match=r"/b\.bin: no SHA-256 recorded.*adopt"):
            call("b.bin")
    assert [r.url for r in store.list()] == [kept.url]
    assert hashlib.sha256(store.read_bytes("a.bin")).hexdigest() == kept.sha256
    store.delete("b.bin")
    assert not store.fs.exists(f"{store.root}/b.bin")
