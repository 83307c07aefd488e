"""The claim-check: oversized values travel through the file store, transparently."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import millstream
from millstream import Record, Streams
from millstream.errors import CorruptDataError, RecordTooLargeError
from millstream.files import ClaimCheck, FileRef, FileStore, claim_checked, open_files
from millstream.files._claimcheck import HEADER

MiB = 1024 * 1024


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[Streams]:
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as s:
        s.admin().create_stream("big", 1)
        s.admin().create_stream("other", 1)
        yield s


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return open_files((tmp_path / "files").as_uri())


def read(streams: Streams, stream: str, n: int, claim: ClaimCheck | None = None
         ) -> list[Record]:
    consumer = streams.open_consumer()
    if claim is not None:
        consumer = claim.wrap_consumer(consumer)
    with consumer:
        consumer.subscribe([stream])
        out: list[Record] = []
        for _ in range(50):
            out.extend(consumer.poll(100, timeout=0.2))
            if len(out) >= n:
                break
    return out


def test_a_large_value_is_sent_as_a_reference_and_read_back(streams: Streams,
                                                            store: FileStore) -> None:
    claim = ClaimCheck(store, threshold_bytes=1000)
    big = bytes(range(256)) * 20  # 5120 bytes
    digest = hashlib.sha256(big).hexdigest()
    with claim.wrap_producer(streams.open_producer()) as producer:
        producer.send("big", big, key=b"k", headers=(("trace", b"t1"),)).wait(10)
        producer.send("big", b"small", key=b"k").wait(10)
        producer.send("big", None, key=b"k").wait(10)

    raw = read(streams, "big", 3)
    assert raw[0].headers == (("trace", b"t1"), (HEADER, b"1"))
    ref = FileRef.model_validate_json(raw[0].value or b"")
    assert ref == FileRef(url=f"{store.url}/claim-check/{digest}", size=5120, sha256=digest,
                          content_type="application/octet-stream")
    assert (raw[1].value, raw[1].headers) == (b"small", ())
    assert raw[2].value is None

    resolved = read(streams, "big", 3, claim)
    assert [(r.key, r.value, r.headers) for r in resolved] == [
        (b"k", big, (("trace", b"t1"),)), (b"k", b"small", ()), (b"k", None, ())]
    assert [r.offset for r in resolved] == [0, 1, 2]


def test_a_resend_stores_nothing_new(streams: Streams, store: FileStore) -> None:
    claim = ClaimCheck(store, threshold_bytes=10)
    with claim.wrap_producer(streams.open_producer()) as producer:
        for _ in range(3):
            producer.send("big", b"x" * 100).wait(10)
        producer.send_batch("big", [b"y" * 50, b"x" * 100, b"short"]).wait(10)
    names = [r.url.rsplit("/", 1)[1] for r in store.list("claim-check/")]
    assert sorted(names) == sorted([hashlib.sha256(b"x" * 100).hexdigest(),
                                    hashlib.sha256(b"y" * 50).hexdigest()])
    values = [r.value for r in read(streams, "big", 6, claim)]
    assert values == [b"x" * 100] * 3 + [b"y" * 50, b"x" * 100, b"short"]


def test_only_the_chosen_streams_are_claim_checked(streams: Streams, store: FileStore) -> None:
    claim = ClaimCheck(store, threshold_bytes=10, streams={"big"})
    with claim.wrap_producer(streams.open_producer()) as producer:
        producer.send("big", b"z" * 20).wait(10)
        producer.send("other", b"z" * 20).wait(10)
    assert read(streams, "other", 1)[0].value == b"z" * 20
    assert read(streams, "big", 1)[0].headers == ((HEADER, b"1"),)


def test_over_the_limit_fails_without_and_passes_with_the_claim_check(
        streams: Streams, store: FileStore) -> None:
    huge = b"v" * (2 * MiB)
    with streams.open_producer() as producer, pytest.raises(RecordTooLargeError):
        producer.send("big", huge)
    checked = claim_checked(streams, ClaimCheck(store))
    with checked.open_producer() as producer:
        producer.send("big", huge).wait(10)
    with checked.open_consumer() as consumer:
        consumer.subscribe(["big"])
        records = consumer.poll(10, timeout=2.0)
    assert [len(r.value or b"") for r in records] == [2 * MiB]
    assert records[0].value == huge
    wire = read(streams, "big", 1)[0]
    assert json.loads(wire.value or b"")["size"] == 2 * MiB


def test_a_claim_check_object_whose_record_was_lost_is_stored_again(
        streams: Streams, store: FileStore, tmp_path: Path) -> None:
    claim = ClaimCheck(store, threshold_bytes=10)
    with claim.wrap_producer(streams.open_producer()) as producer:
        producer.send("big", b"precious payload").wait(10)
    (record,) = (tmp_path / "files" / ".meta" / "claim-check").iterdir()
    record.unlink()  # the file is no object without it: the next send of the value puts it
    with claim.wrap_producer(streams.open_producer()) as producer:
        producer.send("big", b"precious payload").wait(10)
    assert [r.value for r in read(streams, "big", 2, claim)] == [b"precious payload"] * 2


def test_a_damaged_claim_check_object_fails_the_poll(streams: Streams, store: FileStore,
                                                     tmp_path: Path) -> None:
    claim = ClaimCheck(store, threshold_bytes=10)
    with claim.wrap_producer(streams.open_producer()) as producer:
        producer.send("big", b"precious payload").wait(10)
    (path,) = (tmp_path / "files" / "claim-check").iterdir()
    path.write_bytes(b"PRECIOUS PAYLOAD")  # same size, in place (same inode)
    with pytest.raises(CorruptDataError, match="claim-check/"):
        read(streams, "big", 1, claim)


@pytest.mark.parametrize("how", ["flipped", "appended"])
def test_a_damaged_claim_check_object_is_stored_again_when_its_value_is_sent_again(
        streams: Streams, store: FileStore, tmp_path: Path, how: str) -> None:
    claim = ClaimCheck(store, threshold_bytes=10)
    value = b"precious payload" * 10
    with claim.wrap_producer(streams.open_producer()) as producer:
        producer.send("big", value).wait(10)
    (path,) = (tmp_path / "files" / "claim-check").iterdir()
    assert store.local_path(f"claim-check/{path.name}") == path  # checked, and recorded so
    with open(path, "r+b") as f:  # in place: same inode
        if how == "flipped":
            f.seek(5)
            f.write(b"P")
        else:
            f.seek(0, 2)
            f.write(b"!")
    with claim.wrap_producer(streams.open_producer()) as producer:
        producer.send("big", value).wait(10)
    assert path.read_bytes() == value  # put again: both records refer to intact bytes
    assert [r.value for r in read(streams, "big", 2, claim)] == [value, value]


def test_write_and_poll_batch_go_through_the_claim_check_as_send_and_poll_do(
        streams: Streams, store: FileStore) -> None:
    claim = ClaimCheck(store, threshold_bytes=1000)
    big = bytes(range(256)) * 20  # 5120 bytes
    with claim.wrap_producer(streams.open_producer()) as producer:
        producer.write("big", big, key=b"k", headers=(("trace", b"t1"),))
        producer.write("big", b"small", key=b"k")
        producer.write("big", None, key=b"k")
        producer.flush(10)
    raw = read(streams, "big", 3)
    assert raw[0].headers == (("trace", b"t1"), (HEADER, b"1"))
    assert FileRef.model_validate_json(raw[0].value or b"").size == 5120
    with claim.wrap_consumer(streams.open_consumer()) as consumer:
        consumer.subscribe(["big"])
        batch = consumer.poll_batch(10, timeout=5)
    assert [(r.key, r.value, r.headers) for r in batch] == [
        (b"k", big, (("trace", b"t1"),)), (b"k", b"small", ()), (b"k", None, ())]
    assert batch.values() == [big, b"small", None]
    assert batch.headers() == [(("trace", b"t1"),), (), ()]
    assert batch.offsets() == [0, 1, 2]
    assert batch.ends() == {millstream.StreamPartition("big", 0): 3}
