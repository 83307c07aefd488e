"""The file:// store refuses an object changed in place, on every read path (F3).

Each damage keeps the file's inode (the file is opened ``r+b`` and written or truncated), as
a stray tool, an editor saving in place or a bad disk would. Every way of reading the object
must then raise ``CorruptDataError`` naming it; only a ``put`` may give a name a new hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from millstream.errors import CorruptDataError, NotFoundError
from millstream.faults import FAULT_EXIT_CODE
from millstream.files import FileRef
from millstream.files._local import LocalStore

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
NAME = "videos/ab12/source.mp4"
DATA = bytes(range(256)) * (3 * MiB // 256) + b"end"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def truncate(f: object, size: int) -> None:
    f.truncate(size // 2)  # type: ignore[attr-defined]


def append(f: object, size: int) -> None:
    f.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
    f.write(b"appended")  # type: ignore[attr-defined]


def flip(f: object, size: int) -> None:
    f.seek(size // 2)  # type: ignore[attr-defined]
    byte = f.read(1)  # type: ignore[attr-defined]
    f.seek(size // 2)  # type: ignore[attr-defined]
    f.write(bytes([byte[0] ^ 0x01]))  # type: ignore[attr-defined]


DAMAGE: dict[str, Callable[[object, int], None]] = {
    "truncated": truncate, "appended": append, "flipped": flip}


def damage_in_place(path: Path, how: str) -> None:
    before = os.stat(path)
    with open(path, "r+b") as f:
        DAMAGE[how](f, before.st_size)
    assert os.stat(path).st_ino == before.st_ino  # the same file, changed


def read_to_end(store: LocalStore, what: FileRef | str) -> bytes:
    with store.open(what) as f:
        chunks = []
        while chunk := f.read(100_000):
            chunks.append(chunk)
    return b"".join(chunks)


def read_range(store: LocalStore, what: FileRef | str) -> bytes:
    with store.open(what, start=10, end=1000) as f:
        return f.read()


READS: dict[str, Callable[[LocalStore, FileRef], object]] = {
    "read_bytes by reference": lambda s, ref: s.read_bytes(ref),
    "read_bytes by name": lambda s, ref: s.read_bytes(NAME),
    "read_bytes by URL": lambda s, ref: s.read_bytes(ref.url),
    "open to the end by reference": read_to_end,
    "open to the end by name": lambda s, ref: read_to_end(s, NAME),
    "a range by reference": read_range,
    "a range by name": lambda s, ref: read_range(s, NAME),
    "local_path by reference": lambda s, ref: s.local_path(ref),
    "local_path by name": lambda s, ref: s.local_path(NAME),
}


def assert_refused_everywhere(store: LocalStore, ref: FileRef) -> None:
    for read in READS.values():
        with pytest.raises(CorruptDataError) as caught:
            read(store, ref)
        message = str(caught.value)
        assert message.startswith(ref.url + ": "), message
        assert "put it again" in message, message


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "files")


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("how", DAMAGE)
def test_an_object_changed_in_place_is_refused_by_every_read_path(
        store: LocalStore, how: str, read: str) -> None:
    ref = store.put(NAME, DATA, content_type="video/mp4")
    damage_in_place(store.root / NAME, how)
    with pytest.raises(CorruptDataError, match=re.escape(ref.url) + ": .*put it again"):
        READS[read](store, ref)


@pytest.mark.parametrize("how", DAMAGE)
def test_damage_in_place_never_replaces_the_recorded_hash(store: LocalStore, how: str) -> None:
    ref = store.put(NAME, DATA)
    sidecar = store.meta_path(NAME).read_text()
    damage_in_place(store.root / NAME, how)
    for _ in range(2):  # the second round would see a hash recorded by the first
        assert_refused_everywhere(store, ref)
        assert store.stat(NAME) == ref
        assert [r for r in store.list("videos/")] == [ref]
    assert store.meta_path(NAME).read_text() == sidecar
    # putting the object again is what heals it
    assert store.put(NAME, DATA) == ref
    assert store.read_bytes(ref) == DATA
    assert store.local_path(NAME) == store.root / NAME
    with store.open(NAME, start=10, end=1000) as f:
        assert f.read() == DATA[10:1000]


def _wait_until_not_racy(path: Path) -> None:
    """A change within the timestamp granularity of the last one may keep the ctime, so a
    check is recorded only for a file whose last change is older than ``RACY_S``."""
    from millstream.files._verify import RACY_S

    left = os.stat(path).st_ctime + RACY_S - time.time()
    if left > 0:
        time.sleep(left + 0.05)


def test_a_flip_keeping_size_and_mtime_is_refused_after_a_recorded_check(
        store: LocalStore) -> None:
    ref = store.put(NAME, DATA)
    path = store.root / NAME
    _wait_until_not_racy(path)
    assert store.local_path(ref) == path  # verified: its stat signature is recorded
    recorded = json.loads(store.meta_path(NAME).read_text())
    before = os.stat(path)
    assert recorded["verified"] == [before.st_ino, before.st_size, before.st_mtime_ns,
                                    before.st_ctime_ns]
    damage_in_place(path, "flipped")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    assert_refused_everywhere(store, ref)
    assert store.stat(ref) == ref


def test_a_verified_object_is_not_hashed_again_until_it_changes(store: LocalStore) -> None:
    ref = store.put(NAME, DATA)
    path = store.root / NAME
    _wait_until_not_racy(path)
    store.local_path(ref)
    first = store.meta_path(NAME).stat().st_mtime_ns
    for _ in range(3):
        assert store.local_path(ref) == path
        with store.open(ref, start=0, end=10) as f:
            assert f.read() == DATA[:10]
    assert store.meta_path(NAME).stat().st_mtime_ns == first  # nothing re-recorded
    os.utime(path)  # a new signature, the same bytes: hashed again and accepted
    assert store.local_path(ref) == path


def test_a_copy_with_new_inodes_is_accepted_when_its_bytes_match(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    ref = store.put(NAME, DATA)
    damaged = store.put("other", b"other bytes")
    # a restore from a backup gives every file a new inode
    subprocess.run(["cp", "-a", str(tmp_path / "files"), str(tmp_path / "restored")],
                   check=True)
    with open(tmp_path / "restored/other", "r+b") as f:
        f.write(b"O")
    restored = LocalStore(tmp_path / "restored")
    assert restored.read_bytes(NAME) == DATA
    assert restored.local_path(NAME) == tmp_path / "restored" / NAME
    assert restored.stat(NAME).sha256 == ref.sha256
    with pytest.raises(CorruptDataError, match=r"/restored/other: .*SHA-256"):
        restored.local_path("other")
    assert restored.stat("other").sha256 == damaged.sha256


def test_a_file_without_a_record_is_not_an_object(store: LocalStore) -> None:
    (store.root / "manual").mkdir()
    (store.root / "manual/f.bin").write_bytes(b"by hand")
    for call in (store.stat, store.read_bytes, store.local_path):
        with pytest.raises(CorruptDataError, match=r"/manual/f\.bin: no SHA-256 recorded"):
            call("manual/f.bin")
    assert list(store.list()) == []
    assert not store.meta_path("manual/f.bin").exists()
    store.delete("manual/f.bin")
    assert not (store.root / "manual").exists()


def test_a_put_killed_between_its_two_renames_is_completed_on_the_next_read(
        tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    store.put("video/big.bin", b"the previous version")
    env = dict(os.environ, MILLSTREAM_FAULT="files.put.between_renames",
               PYTHONPATH=str(REPO))
    size = 2 * MiB + 3
    done = subprocess.run(
        [sys.executable, "-m", "tests.files.put_worker", store.url, "video/big.bin",
         str(size)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == FAULT_EXIT_CODE, done.stderr
    from tests.files.put_worker import pattern

    expected = pattern(size)
    reopened = LocalStore(tmp_path / "files")
    assert reopened.stat("video/big.bin").sha256 == sha(expected)
    assert reopened.read_bytes("video/big.bin") == expected
    assert reopened.local_path("video/big.bin").read_bytes() == expected
    assert list((tmp_path / "files/.tmp").iterdir()) == []


def test_a_reader_waits_for_a_put_between_its_two_renames(store: LocalStore) -> None:
    store.put(NAME, b"version 1")
    new = b"version 2, longer"
    # what a live writer holds between its renames: the data in place, its record in .tmp/
    tmp = store.root / ".tmp" / "in-flight.part"
    tmp.write_bytes(new)
    ino = tmp.stat().st_ino
    record = {"name": NAME, "sha256": sha(new), "size": len(new), "content_type": None,
              "ino": ino}
    seen: list[FileRef] = []
    reader = threading.Thread(target=lambda: seen.append(store.stat(NAME)))
    with store.lock():
        store.pending_path(ino).write_text(json.dumps(record))
        os.replace(tmp, store.root / NAME)
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and seen == []  # it waits rather than report a mismatch
        os.replace(store.pending_path(ino), store.meta_path(NAME))
    reader.join(10)
    assert seen == [FileRef(url=f"{store.url}/{NAME}", size=len(new), sha256=sha(new))]
    assert store.read_bytes(NAME) == new


def test_readers_racing_puts_of_the_same_name_get_one_version_whole(store: LocalStore) -> None:
    versions = {b"a" * 200_000, b"b" * 300_000}
    store.put(NAME, b"a" * 200_000)
    done = threading.Event()
    got: list[bytes] = []
    errors: list[Exception] = []

    def write() -> None:
        for i in range(400):
            store.put(NAME, sorted(versions)[i % 2])
        done.set()

    def read() -> None:
        while not done.is_set():
            try:
                got.append(store.read_bytes(NAME))
                with store.open(NAME, start=0, end=100) as f:
                    got.append(f.read() * 2000)
                got.append(store.local_path(NAME).read_bytes()[:1] * len(got[-1]))
            except Exception as exc:  # collected, asserted below
                errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(got) >= 3
    assert {g[:1] for g in got} <= {b"a", b"b"}
    assert all(g in versions for g in got[0::3])


def test_readers_racing_deletes_see_the_object_or_nothing(store: LocalStore) -> None:
    done = threading.Event()
    seen: list[str] = []
    errors: list[Exception] = []

    def churn() -> None:
        for _ in range(300):
            store.put(NAME, DATA[:1000])
            store.delete(NAME)
        done.set()

    def look() -> None:
        while not done.is_set():
            try:
                seen.append("there" if store.exists(NAME) else "gone")
                store.stat(NAME)
                assert store.read_bytes(NAME) == DATA[:1000]
                store.local_path(NAME)
            except NotFoundError:
                seen.append("gone")
            except Exception as exc:  # collected, asserted below
                errors.append(exc)

    threads = [threading.Thread(target=churn), threading.Thread(target=look)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert set(seen) <= {"there", "gone"} and len(seen) > 0


def test_a_check_that_cannot_be_recorded_still_serves_the_object(store: LocalStore) -> None:
    ref = store.put(NAME, DATA)
    _wait_until_not_racy(store.root / NAME)
    (store.root / ".tmp").rmdir()
    (store.root / ".tmp").write_bytes(b"")  # nothing can be written there now
    record = store.meta_path(NAME).read_text()
    for _ in range(2):
        assert store.local_path(ref) == store.root / NAME
        with store.open(ref, start=5, end=10) as f:
            assert f.read() == DATA[5:10]
    assert store.meta_path(NAME).read_text() == record  # checked each time, not recorded
    damage_in_place(store.root / NAME, "flipped")
    with pytest.raises(CorruptDataError, match=re.escape(ref.url)):
        store.local_path(ref)


# Three versions: the first and the last of one size with other bytes, the middle one longer.
# ext4 hands a freed inode to the next file at once, so the third put usually gets the
# first one's inode: a reader holding the first version's record must not take the third
# version's file for it (a false CorruptDataError on a healthy object).
VERSIONS = (b"A" * 300_000, b"B" * 500_000, b"C" * 300_000)


def _worker(store: LocalStore, how: str, *extra: str, pause: Path | None = None
            ) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if pause is not None:
        env.update(MILLSTREAM_FAULT_PAUSE="files.read.after_record",
                   MILLSTREAM_FAULT_PAUSE_FILE=str(pause))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.files.read_worker", store.url, NAME, how, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("how", ["full", "range", "local_path"])
def test_a_reader_whose_file_was_replaced_by_one_reusing_its_inode_gets_the_new_version(
        store: LocalStore, tmp_path: Path, how: str) -> None:
    first, second, third = VERSIONS
    store.put(NAME, first)
    last = first
    ino = os.stat(store.root / NAME).st_ino
    pause = tmp_path / "release"
    reader = _worker(store, how, pause=pause)
    deadline = time.monotonic() + 60
    while not Path(f"{pause}.reached").exists():
        assert reader.poll() is None and time.monotonic() < deadline, reader.stderr
        time.sleep(0.01)
    for i in range(400):  # the reader holds the first version's record meanwhile
        last = (second, third)[i % 2]
        # 0-2 empty files taking inodes first, so that the data file, not its record, lands
        # on the freed inode (ext4 hands out the lowest free one of the folder's group)
        spacers = [store.root / ".tmp" / f"spacer-{i}-{j}" for j in range(i % 3)]
        for spacer in spacers:
            spacer.write_bytes(b"")
        store.put(NAME, last)
        for spacer in spacers:
            spacer.unlink()
        if os.stat(store.root / NAME).st_ino == ino:
            break
    else:
        reader.kill()
        reader.communicate()
        pytest.skip("this filesystem does not reuse a freed inode at once")
    pause.touch()
    out, err = reader.communicate(timeout=60)
    expected = last[:100] if how == "range" else last
    assert out.split("\n")[0] == f"ok {sha(expected)} {len(expected)}", err


def test_readers_in_other_processes_racing_puts_of_three_versions_see_no_false_alarm(
        store: LocalStore) -> None:
    store.put(NAME, VERSIONS[0])
    readers = [_worker(store, "loop", "8") for _ in range(2)]
    puts = 0
    inodes: set[int] = set()
    while any(r.poll() is None for r in readers):
        store.put(NAME, VERSIONS[puts % 3])
        inodes.add(os.stat(store.root / NAME).st_ino)
        puts += 1
    outputs = [r.communicate(timeout=60) for r in readers]
    lines = [line for out, _ in outputs for line in out.splitlines()]
    assert [line for line in lines if line.startswith("error")] == []
    reads = [int(line.split()[1]) for line in lines if line.startswith("reads")]
    assert len(reads) == 2 and min(reads) > 0, outputs
    assert puts > 30, puts


def test_a_check_that_cannot_be_recorded_is_remembered_and_warned_about_once(
        store: LocalStore, caplog: pytest.LogCaptureFixture) -> None:
    ref = store.put(NAME, DATA)
    other = store.put("other.bin", DATA[:1000])
    _wait_until_not_racy(store.root / NAME)
    _wait_until_not_racy(store.root / "other.bin")
    (store.root / ".tmp").rmdir()
    (store.root / ".tmp").write_bytes(b"")  # nothing can be written there now
    with caplog.at_level("WARNING", logger="millstream.files._local"):
        for _ in range(5):
            with store.open(ref, start=100, end=200) as f:
                assert f.read() == DATA[100:200]
            assert store.local_path(ref) == store.root / NAME
            assert store.local_path(other) == store.root / "other.bin"
    assert store.hashed == 2  # once per object, not once per read
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"cannot record checks in {store.url} (") and "make the store writable" in warnings[0]
    damage_in_place(store.root / NAME, "flipped")  # a new signature: hashed, and refused
    with pytest.raises(CorruptDataError, match=re.escape(ref.url)):
        store.local_path(ref)
    assert store.hashed == 3


def test_threads_checking_one_fresh_file_at_once_hash_it_once(store: LocalStore) -> None:
    big = DATA * 40  # 120 MiB: each hash takes long enough for every thread to ask meanwhile
    ref = store.put(NAME, big)  # changed just now: no check of it can be recorded yet
    start = threading.Barrier(6)
    got: list[object] = []

    def use() -> None:
        start.wait()
        try:
            got.append(store.local_path(ref))
        except Exception as exc:  # collected, asserted below
            got.append(exc)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got == [store.root / NAME] * 6
    assert store.hashed == 1
