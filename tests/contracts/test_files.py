"""File store contract: the same tests for file://, s3:// (a real S3 API server) and memory://.

Only the ``FileStore`` Protocol is used, except where a test must reach under the store to
damage it (``StoreUnderTest.rewrite``) or to kill a writer (a child process).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from millstream.errors import ClosedError, CorruptDataError, InvalidRequestError, NotFoundError
from millstream.faults import FAULT_EXIT_CODE
from millstream.files import FileRef, FileStore, open_files
from tests.files.put_worker import pattern
from tests.support.s3_fixtures import S3Target

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class StoreUnderTest:
    name: str
    url: str
    options: dict[str, Any] | None
    store: FileStore
    # change an object's bytes behind the store's back, keeping all the backend lets us keep
    # (the inode on file://, the recorded size and SHA-256 metadata on S3)
    rewrite: Callable[[str, Callable[[bytes], bytes]], None]

    def corrupt(self, name: str, offset: int) -> None:
        """Flip the byte at ``offset`` of an object: same size, different bytes."""
        self.rewrite(name, lambda data: data[:offset] + bytes([data[offset] ^ 0xFF])
                     + data[offset + 1:])


def _local(tmp_path: Path) -> StoreUnderTest:
    root = tmp_path / "files"
    store = open_files(root.as_uri())

    def rewrite(name: str, change: Callable[[bytes], bytes]) -> None:
        with open(root / name, "r+b") as f:  # in place: the same inode
            new = change(f.read())
            f.seek(0)
            f.write(new)
            f.truncate()

    return StoreUnderTest("file", root.as_uri(), None, store, rewrite)


def _s3(target: S3Target) -> StoreUnderTest:
    import boto3
    from botocore.config import Config

    url = target.child()
    store = open_files(url, options=target.options)
    bucket, _, prefix = url.removeprefix("s3://").partition("/")

    def rewrite(name: str, change: Callable[[bytes], bytes]) -> None:
        client = boto3.client("s3", endpoint_url=target.endpoint,
                              aws_access_key_id=target.options["key"],
                              aws_secret_access_key=target.options["secret"],
                              region_name="us-east-1",
                              config=Config(**target.options["config_kwargs"]))
        try:
            key = f"{prefix}/{name}"
            got = client.get_object(Bucket=bucket, Key=key)
            client.put_object(Bucket=bucket, Key=key, Body=change(got["Body"].read()),
                              Metadata=got["Metadata"])  # the recorded SHA-256 kept
        finally:
            client.close()

    return StoreUnderTest("s3", url, target.options, store, rewrite)


def _memory() -> StoreUnderTest:
    import uuid

    url = f"memory://millstream-tests/{uuid.uuid4().hex[:8]}"
    store = open_files(url)

    def rewrite(name: str, change: Callable[[bytes], bytes]) -> None:
        from fsspec.implementations.memory import MemoryFileSystem

        fs = MemoryFileSystem()
        path = f"{url.removeprefix('memory:/')}/{name}"
        fs.pipe_file(path, change(fs.cat_file(path)))

    return StoreUnderTest("memory", url, None, store, rewrite)


def _fsspec_on_disk(tmp_path: Path) -> StoreUnderTest:
    """The generic fsspec store (sidecars, moves) over fsspec's local filesystem: what
    ``memory://`` runs, but seen by other processes too (for the crash tests)."""
    url = f"local://{tmp_path / 'fsspec'}"
    options = {"auto_mkdir": True}
    store = open_files(url, options=options)

    def rewrite(name: str, change: Callable[[bytes], bytes]) -> None:
        path = tmp_path / "fsspec" / name
        path.write_bytes(change(path.read_bytes()))

    return StoreUnderTest("fsspec", url, options, store, rewrite)


@pytest.fixture(params=["file", "s3", "memory"])
def sut(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    if request.param == "file":
        s = _local(tmp_path)
    elif request.param == "fsspec":
        s = _fsspec_on_disk(tmp_path)
    elif request.param == "s3":
        s = _s3(request.getfixturevalue("s3_url"))
    else:
        s = _memory()
    yield s
    s.store.close()


def test_put_bytes_records_size_and_hash_and_reads_back(sut: StoreUnderTest) -> None:
    data = b"hello, millstream\n" * 1000
    ref = sut.store.put("docs/hello.txt", data, content_type="text/plain")
    assert ref == FileRef(url=f"{sut.url}/docs/hello.txt", size=18_000, sha256=sha(data),
                          content_type="text/plain")
    assert sut.store.stat("docs/hello.txt") == ref
    assert sut.store.stat(ref) == ref
    assert sut.store.read_bytes(ref) == data
    assert sut.store.read_bytes("docs/hello.txt") == data
    assert sut.store.read_bytes(ref.url) == data


def test_an_empty_object_has_the_empty_hash(sut: StoreUnderTest) -> None:
    ref = sut.store.put("empty", b"")
    assert (ref.size, ref.sha256) == (0, sha(b""))
    assert sut.store.read_bytes("empty") == b""
    assert sut.store.stat("empty").size == 0


def test_put_from_a_path_and_a_stream_in_several_parts(sut: StoreUnderTest,
                                                       tmp_path: Path) -> None:
    data = pattern(19 * MiB + 123)  # over two S3 parts of 8 MiB
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    from_path = sut.store.put("big/from-path", src)
    from_stream = sut.store.put("big/from-stream", io.BytesIO(data))
    assert from_path.size == from_stream.size == len(data)
    assert from_path.sha256 == from_stream.sha256 == sha(data)
    with sut.store.open(from_stream) as f:
        chunks = []
        while chunk := f.read(3 * MiB + 7):
            chunks.append(chunk)
    assert [len(c) for c in chunks[:-1]] == [3 * MiB + 7] * (len(chunks) - 1)
    assert b"".join(chunks) == data


def test_byte_ranges(sut: StoreUnderTest) -> None:
    data = pattern(9 * MiB + 5)
    ref = sut.store.put("ranges.bin", data)
    cases = [(0, 10), (10, 11), (8 * MiB - 3, 8 * MiB + 3), (len(data) - 5, None),
             (len(data), None), (0, 0), (123, 9 * MiB)]
    for start, end in cases:
        with sut.store.open(ref, start=start, end=end) as f:
            got = f.read()
        assert got == data[start:end], (start, end)
    for start, end in [(-1, 4), (5, 4), (0, len(data) + 1), (len(data) + 1, None)]:
        with pytest.raises(InvalidRequestError, match="outside"):
            sut.store.open(ref, start=start, end=end)


def test_a_writer_commits_on_close_and_not_before(sut: StoreUnderTest) -> None:
    w = sut.store.writer("w/obj", content_type="application/x-test")
    w.write(b"abc")
    w.write(b"def" * 100_000)
    assert not sut.store.exists("w/obj")
    assert w.ref is None
    w.close()
    w.close()  # idempotent
    expected = b"abc" + b"def" * 100_000
    assert w.ref == FileRef(url=f"{sut.url}/w/obj", size=len(expected), sha256=sha(expected),
                            content_type="application/x-test")
    assert sut.store.read_bytes("w/obj") == expected
    with pytest.raises(ClosedError):
        w.write(b"more")


def test_a_failed_write_leaves_the_previous_object(sut: StoreUnderTest) -> None:
    old = sut.store.put("keep", b"old contents")
    with pytest.raises(RuntimeError, match="boom"), sut.store.writer("keep") as w:
        w.write(b"new contents that never land")
        raise RuntimeError("boom")
    assert w.ref is None
    assert sut.store.stat("keep") == old
    assert sut.store.read_bytes("keep") == b"old contents"
    aborted = sut.store.writer("never")
    aborted.write(b"x")
    aborted.abort()
    aborted.close()
    assert not sut.store.exists("never")
    assert [r.url for r in sut.store.list()] == [old.url]


def test_replacing_an_object_refuses_the_old_reference(sut: StoreUnderTest) -> None:
    old = sut.store.put("doc", b"version 1")
    new = sut.store.put("doc", b"version 2!")
    assert (new.size, new.sha256) == (10, sha(b"version 2!"))
    assert sut.store.stat("doc") == new
    assert sut.store.read_bytes(new) == b"version 2!"
    with pytest.raises(NotFoundError, match="changed since this reference"):
        sut.store.open(old)


def test_list_by_prefix_sorted_with_sizes_and_hashes(sut: StoreUnderTest) -> None:
    assert list(sut.store.list()) == []
    contents = {"b/2": b"bb", "a/1": b"a", "a/x/3": b"ccc", "ab": b"dddd", "c": b""}
    for name, data in contents.items():
        sut.store.put(name, data)
    listing = list(sut.store.list())
    assert [(r.url.removeprefix(sut.url + "/"), r.size, r.sha256) for r in listing] == [
        (name, len(contents[name]), sha(contents[name])) for name in sorted(contents)]
    names = lambda p: [r.url.removeprefix(sut.url + "/") for r in sut.store.list(p)]  # noqa: E731
    assert names("a/") == ["a/1", "a/x/3"]
    assert names("a") == ["a/1", "a/x/3", "ab"]
    assert names("a/x") == ["a/x/3"]
    assert names("zzz") == []


def test_delete(sut: StoreUnderTest) -> None:
    ref = sut.store.put("gone/soon", b"bye")
    sut.store.put("gone/stays", b"hi")
    assert sut.store.exists(ref) and sut.store.exists("gone/soon")
    sut.store.delete(ref)
    assert not sut.store.exists("gone/soon")
    with pytest.raises(NotFoundError, match="gone/soon"):
        sut.store.stat("gone/soon")
    with pytest.raises(NotFoundError):
        sut.store.delete("gone/soon")
    with pytest.raises(NotFoundError):
        sut.store.read_bytes("gone/soon")
    assert [r.url for r in sut.store.list()] == [f"{sut.url}/gone/stays"]


@pytest.mark.parametrize("name", ["", "/abs", "../up", "a/../b", "a//b", "a/", "./a",
                                  ".meta/x", ".tmp/x", "a\\b"])
def test_bad_names_are_refused(sut: StoreUnderTest, name: str) -> None:
    with pytest.raises(InvalidRequestError):
        sut.store.put(name, b"x")
    with pytest.raises(InvalidRequestError):
        sut.store.stat(name)


def test_a_url_of_another_store_is_refused(sut: StoreUnderTest) -> None:
    with pytest.raises(InvalidRequestError, match="not in the file store"):
        sut.store.stat("file:///elsewhere/x")


def test_references_travel_as_json(sut: StoreUnderTest) -> None:
    ref = sut.store.put("payload/ref", b"referenced bytes", content_type="text/plain")
    wire = json.dumps({"video": ref.model_dump()})
    back = FileRef.model_validate(json.loads(wire)["video"])
    assert back == ref
    assert sut.store.read_bytes(back) == b"referenced bytes"


def test_local_path_holds_the_bytes(sut: StoreUnderTest) -> None:
    data = pattern(3 * MiB)
    ref = sut.store.put("media/clip.bin", data)
    path = sut.store.local_path(ref)
    assert path.read_bytes() == data
    assert sut.store.local_path("media/clip.bin") == path  # cached / stable
    if sut.name == "file":
        assert path == Path(ref.url.removeprefix("file://"))


@pytest.mark.parametrize("sut", ["s3", "memory"], indirect=True)
def test_a_cache_copy_changed_in_place_is_fetched_again(sut: StoreUnderTest) -> None:
    data = pattern(MiB + 5)
    ref = sut.store.put("media/cached.bin", data)
    path = sut.store.local_path(ref)
    ino = path.stat().st_ino
    with open(path, "r+b") as f:  # the cache is a copy: damage there is repaired, not served
        f.seek(MiB)
        f.write(b"X")
    assert sut.store.local_path(ref) == path
    assert path.read_bytes() == data
    assert path.stat().st_ino != ino


def test_flipped_bytes_fail_a_full_read_naming_the_object(sut: StoreUnderTest) -> None:
    data = pattern(2 * MiB)
    ref = sut.store.put("victim.bin", data)
    sut.corrupt("victim.bin", MiB + 17)
    with pytest.raises(CorruptDataError, match=re.escape(ref.url) + ".*SHA-256 mismatch"):
        sut.store.read_bytes(ref)
    with pytest.raises(CorruptDataError, match=r"victim\.bin"), sut.store.open(ref) as f:
        while f.read(100_000):
            pass
    if sut.name == "file":  # its range reads are checked too (see test_damage.py)
        with pytest.raises(CorruptDataError, match=re.escape(ref.url)):
            sut.store.open(ref, start=MiB, end=MiB + 32)
    else:  # a range read cannot be verified here, and shows the damage
        with sut.store.open(ref, start=MiB, end=MiB + 32) as f:
            damaged = f.read()
        assert damaged != data[MiB:MiB + 32] and damaged[:17] == data[MiB:MiB + 17]
    with sut.store.open(ref, verify=False) as f:  # reading what is there, to salvage it
        assert len(f.read()) == len(data)


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[:len(data) // 2],
    "appended": lambda data: data + b"appended",
    "flipped": lambda data: data[:1000] + bytes([data[1000] ^ 1]) + data[1001:],
}


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_object_fails_every_full_read_and_local_path(sut: StoreUnderTest,
                                                              how: str) -> None:
    data = pattern(MiB + 3)
    ref = sut.store.put("media/damaged.bin", data)
    sut.rewrite("media/damaged.bin", DAMAGE[how])
    reads: list[Callable[[], object]] = [
        lambda: sut.store.read_bytes(ref), lambda: sut.store.read_bytes("media/damaged.bin"),
        lambda: sut.store.read_bytes(ref.url), lambda: sut.store.local_path(ref),
        lambda: sut.store.local_path("media/damaged.bin")]
    for read in reads:
        with pytest.raises(CorruptDataError, match=re.escape(ref.url) + ": .*put it again"):
            read()
    assert sut.store.stat("media/damaged.bin").sha256 == ref.sha256  # never re-recorded
    assert sut.store.put("media/damaged.bin", data) == ref  # a put heals it
    assert sut.store.local_path(ref).read_bytes() == data


# memory:// is per process: its code (sidecars, moves) is crashed over fsspec's local disk
@pytest.mark.parametrize("sut", ["file", "s3", "fsspec"], indirect=True)
def test_a_writer_killed_before_commit_leaves_no_partial_object(
        sut: StoreUnderTest) -> None:
    before = sut.store.put("video/big.bin", b"the previous version")
    size = 24 * MiB + 3
    env = dict(os.environ, MILLSTREAM_FAULT="files.put.before_commit",
               PYTHONPATH=str(REPO))
    args = [sys.executable, "-m", "tests.files.put_worker", sut.url, "video/big.bin",
            str(size)]
    if sut.options is not None:
        args.append(json.dumps(sut.options))
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == FAULT_EXIT_CODE, done.stderr
    assert done.stdout.splitlines() == ["started"]
    assert sut.store.stat("video/big.bin") == before
    assert sut.store.read_bytes("video/big.bin") == b"the previous version"
    assert [r.url for r in sut.store.list()] == [before.url]
    assert not sut.store.exists("video/big.bin.part")

    # without the fault the same child commits the whole object
    env.pop("MILLSTREAM_FAULT")
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    expected = sha(pattern(size))
    assert done.stdout.splitlines() == ["started", f"committed {expected}"]
    assert (sut.store.stat("video/big.bin").size, sut.store.stat("video/big.bin").sha256) == (
        size, expected)


@pytest.mark.parametrize("sut", ["file", "s3"], indirect=True)
def test_a_writer_sigkilled_mid_write_leaves_no_partial_object(sut: StoreUnderTest) -> None:
    size = 24 * MiB
    env = dict(os.environ, PYTHONPATH=str(REPO), MILLSTREAM_TEST_WRITE_PAUSE_S="0.05")
    env.pop("MILLSTREAM_FAULT", None)
    args = [sys.executable, "-m", "tests.files.put_worker", sut.url, "video/killed.bin",
            str(size)]
    if sut.options is not None:
        args.append(json.dumps(sut.options))
    child = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"  # 1 MiB of 24 written, more coming
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL
    child.stdout.close()
    assert not sut.store.exists("video/killed.bin")
    assert [r.url for r in sut.store.list("video/")] == []
