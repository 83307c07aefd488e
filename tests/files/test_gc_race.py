"""``files gc`` racing a writer that reuses an old, unreferenced object (the claim-check sends
a value whose object already exists): gc runs in a child process held at a fault point while
the writer acts, on ``file://`` and ``s3://``. The object must survive, or be stored again,
and the record's reference must read back byte-exact."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import millstream
from millstream.codecs import ModelCodec
from millstream.files import ClaimCheck, FileRef, FileStore, open_files
from millstream.files._gc import run_gc
from millstream.files._pin_area import Limits
from millstream.files._pins import Pins
from millstream.runtime import ServiceRunner
from millstream.service import App, Context
from millstream.streams._base import Streams
from millstream.tables import open_tables
from tests.files.gc_app import Upload, blob
from tests.service.test_runtime import run_until
from tests.support.children import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess


@dataclass
class Target:
    url: str
    options: dict[str, Any] | None
    store: FileStore


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "file":
        url, options = (tmp_path / "files").as_uri(), None
    else:
        s3 = request.getfixturevalue("s3_url")
        url, options = s3.child(), s3.options
    store = open_files(url, options=options)
    yield Target(url, options, store)
    store.close()


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[Streams]:
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as s:
        s.admin().create_stream("big", 1)
        yield s


def _value(seed: int) -> bytes:
    return bytes((i * seed) % 251 for i in range(300_000))


def _start_gc(target: Target, tmp_path: Path, point: str, streams_url: str | None = None,
              tag: str = "", limits: Limits | None = None) -> tuple[subprocess.Popen[str], Path]:
    release = tmp_path / f"release-{point}{tag}"
    env = dict(os.environ, PYTHONPATH=str(REPO), MILLSTREAM_FAULT_PAUSE=point,
               MILLSTREAM_FAULT_PAUSE_FILE=str(release),
               GC_WORKER_LIMITS=json.dumps(dataclasses.asdict(limits) if limits else {}))
    env.pop("MILLSTREAM_FAULT", None)
    args = [sys.executable, "-m", "tests.files.gc_worker", target.url,
            streams_url or f"local:{tmp_path / 'log'}"]
    if target.options is not None:
        args.append(json.dumps(target.options))
    gc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    wait_until(lambda: Path(f"{release}.reached").exists() or gc.poll() is not None, 120,
               f"gc to reach {point}")
    assert gc.poll() is None, gc.communicate()
    return gc, release


def _finish(gc: subprocess.Popen[str], release: Path) -> dict[str, Any]:
    release.touch()
    out, err = gc.communicate(timeout=120)
    assert gc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _read_back(streams: Streams, claim: ClaimCheck, stream: str = "big") -> list[bytes]:
    with claim.wrap_consumer(streams.open_consumer()) as consumer:
        consumer.subscribe([stream])
        values: list[bytes] = []
        wait_until(lambda: values.extend(r.value or b"" for r in consumer.poll(10, 0.2))
                   or bool(values), 30, "the record")
    return values


def _old_object(store: FileStore, value: bytes) -> FileRef:
    """What an expired claim-check leaves: its object, no record referring to it."""
    return store.put(f"claim-check/{hashlib.sha256(value).hexdigest()}", value,
                     content_type="application/octet-stream")


def test_an_object_reused_between_the_scan_and_the_deletes_survives(
        target: Target, streams: Streams, tmp_path: Path) -> None:
    value = _value(7)
    old = _old_object(target.store, value)
    gc, release = _start_gc(target, tmp_path, "files.gc.before_delete")
    try:
        # gc has scanned every stream and found nothing referring to the object; a writer
        # now sends the same value: the claim-check reuses the object
        claim = ClaimCheck(target.store, threshold_bytes=1000)
        with claim.wrap_producer(streams.open_producer()) as producer:
            producer.send("big", value, key=b"k")
        assert [r.url for r in target.store.list("claim-check/")] == [old.url]
        # its record is durable, but a gc is running: the writer keeps its pin until it ends
        assert len(list(target.store.list("millstream.gc/pins/"))) == 1
    finally:
        result = _finish(gc, release)
    assert result["deleted"] == []
    assert result["kept"] == {"records": 1, "tables": 0, "snapshots": 0, "checkpoints": 0,
                              "pins": 0, "young": 0}
    assert target.store.stat(old.url) == old
    assert _read_back(streams, claim) == [value]
    assert list(target.store.list("millstream.gc/condemned/")) == []
    assert list(target.store.list("millstream.gc/running/")) == []


def test_a_writer_waits_for_a_condemned_object_and_stores_it_again(
        target: Target, streams: Streams, tmp_path: Path) -> None:
    value = _value(11)
    old = _old_object(target.store, value)
    # gc has condemned the object, found no pin and no new record: it will delete it
    gc, release = _start_gc(target, tmp_path, "files.gc.condemned")
    claim = ClaimCheck(target.store, threshold_bytes=1000)
    sent = threading.Event()
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with claim.wrap_producer(streams.open_producer()) as producer:
                producer.send("big", value, key=b"k")
            sent.set()
        except BaseException as exc:  # reported to the test below
            failed.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert not sent.wait(1.0), "the writer reused an object being deleted"
        assert len(list(target.store.list("millstream.gc/pins/"))) == 1
    finally:
        result = _finish(gc, release)
        writer.join(60)
    assert not failed, failed
    assert sent.is_set()
    assert result["deleted"] == [old.url]
    # stored again after the delete, under the same name and content
    again = target.store.stat(old.url)
    assert (again.url, again.size, again.sha256) == (old.url, old.size, old.sha256)
    assert _read_back(streams, claim) == [value]
    assert list(target.store.list("millstream.gc/condemned/")) == []
    assert list(target.store.list("millstream.gc/running/")) == []


def test_two_gcs_condemning_one_object_each_hold_back_a_writer_until_both_are_done(
        target: Target, streams: Streams, tmp_path: Path) -> None:
    value = _value(17)
    old = _old_object(target.store, value)
    first, release_first = _start_gc(target, tmp_path, "files.gc.condemned", tag="-a")
    second, release_second = _start_gc(target, tmp_path, "files.gc.condemned", tag="-b")
    # both condemned the object and found no pin; the first deletes it and ends
    result_first = _finish(first, release_first)
    assert result_first["deleted"] == [old.url]
    claim = ClaimCheck(target.store, threshold_bytes=1000)
    sent = threading.Event()
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with claim.wrap_producer(streams.open_producer()) as producer:
                producer.send("big", value, key=b"k")
            sent.set()
        except BaseException as exc:  # reported to the test below
            failed.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # the second gc still condemns the object: the writer must not store it yet
        assert not sent.wait(1.0), "the writer stored an object a gc was about to delete"
    finally:
        result_second = _finish(second, release_second)
        writer.join(60)
    assert not failed, failed
    assert result_second["deleted"] == []  # already gone when its turn came
    again = target.store.stat(old.url)
    assert (again.size, again.sha256) == (old.size, old.sha256)
    assert _read_back(streams, claim) == [value]


def test_a_table_row_written_while_gc_runs_keeps_its_object_by_the_writers_pin(
        target: Target, streams: Streams, tmp_path: Path) -> None:
    app = App("gcrows", partitions=1)

    @app.service(inputs={"gc-rows-in": Upload})
    def keep(upload: Upload, ctx: Context) -> None:
        ref = ctx.files.put("blob.bin", blob(upload))
        ctx.tables.ensure_table("gc_rows").put(str(upload.id), {"file": ref.model_dump()})

    upload = Upload(id=3, size=5000)
    # the object the service is about to write again, same bytes: listed and unreferenced
    old = target.store.put("gcrows.keep/gc-rows-in/0/0/blob.bin", blob(upload))
    streams.admin().create_stream("gc-rows-in", 1)
    value, headers = ModelCodec(Upload).encode(upload)
    with streams.open_producer() as producer:
        producer.send("gc-rows-in", value, key=b"3", headers=headers)
    gc, release = _start_gc(target, tmp_path, "files.gc.before_delete")
    try:
        # gc scanned the tables before the row exists; no record will ever refer to the
        # object: only the service's pin, kept while a gc runs, protects it
        with open_tables() as tables:
            runner = ServiceRunner(app, "keep", streams, metrics_interval_s=60,
                                   files=target.store, tables=tables)
            run_until(runner, lambda r: r.metrics.records_in >= 1)
            row = tables.table("gc_rows").get("3")
        assert len(list(target.store.list("millstream.gc/pins/"))) == 1
    finally:
        result = _finish(gc, release)
    assert result["deleted"] == []
    assert result["kept"]["pins"] == 1
    assert row is not None and FileRef.model_validate(row["file"]) == old
    assert target.store.read_bytes(row["file"]["url"]) == blob(upload)


def test_on_kafka_a_record_sent_after_the_scan_keeps_the_object_it_reuses(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    url = (tmp_path / "files").as_uri()
    target = Target(url, None, open_files(url))
    stream = f"gc-race-{uuid.uuid4().hex[:8]}"
    value = _value(13)
    old = _old_object(target.store, value)
    kept = target.store.put("obj/kept", b"k" * 10)
    orphan = target.store.put("obj/orphan", b"o" * 20)
    streams_url = f"kafka://{kafka_bootstrap}"
    with millstream.open_streams(streams_url) as streams:
        streams.admin().create_stream(stream, 2)
        with streams.open_producer() as producer:
            producer.send(stream, json.dumps({"f": kept.model_dump()}).encode(), key=b"a")
        gc, release = _start_gc(target, tmp_path, "files.gc.before_delete", streams_url)
        try:
            claim = ClaimCheck(target.store, threshold_bytes=1000)
            with claim.wrap_producer(streams.open_producer()) as producer:
                producer.send(stream, value, key=b"k")
        finally:
            result = _finish(gc, release)
        assert result["deleted"] == [orphan.url]
        assert result["kept"]["records"] == 2 and result["kept"]["pins"] == 0
        # the writer closed while gc ran: its pin, released for that gc, is still there
        assert {r.url for r in target.store.list()} - {old.url, kept.url} == {
            p.url for p in target.store.list("millstream.gc/pins/")}
        assert len(list(target.store.list("millstream.gc/pins/"))) == 1
        got = _read_back(streams, claim, stream)
        # the next gc removes it, and keeps the same objects
        gc, release = _start_gc(target, tmp_path, "files.gc.before_delete", streams_url)
        again = _finish(gc, release)
        streams.admin().delete_stream(stream)
    assert sorted(got, key=len) == [json.dumps({"f": kept.model_dump()}).encode(), value]
    assert again["deleted"] == [] and again["kept"]["records"] == 2
    assert {r.url for r in target.store.list()} == {old.url, kept.url}


def test_a_producer_shared_by_threads_keeps_the_pin_of_a_send_not_yet_handed_over(
        target: Target, streams: Streams) -> None:
    # thread A's send has pinned and found the old object it reuses, and has not handed its
    # record to the producer yet; thread B flushes the same producer meanwhile, then a gc runs
    value = _value(29)
    old = _old_object(target.store, value)
    claim = ClaimCheck(target.store, threshold_bytes=1000)
    producer = claim.wrap_producer(streams.open_producer())
    inner = producer._inner  # type: ignore[attr-defined]
    real_send = inner.send
    checked_in, go_on = threading.Event(), threading.Event()

    def send_when_told(*args: Any, **kwargs: Any) -> Any:  # A, between check-in and send
        checked_in.set()
        go_on.wait(60)
        return real_send(*args, **kwargs)

    inner.send = send_when_told
    a = threading.Thread(target=lambda: producer.send("big", value, key=b"a"))
    a.start()
    try:
        assert checked_in.wait(30)
        producer.flush()  # B: its own records (none) are durable; A's is not sent yet
        assert len(list(target.store.list("millstream.gc/pins/"))) == 1
        report = run_gc(target.store, streams, None, older_than_s=0)
        assert report.deleted == [] and report.kept["pins"] == 1
    finally:
        go_on.set()
        a.join(60)
    producer.flush()
    assert list(target.store.list("millstream.gc/pins/")) == []
    producer.close()
    assert target.store.stat(old.url) == old
    assert _read_back(streams, claim) == [value]
    assert run_gc(target.store, streams, None, older_than_s=0).deleted == []


def test_a_gc_stopped_past_the_marker_limit_deletes_nothing_a_writer_then_wrote(
        target: Target, streams: Streams, tmp_path: Path) -> None:
    short = Limits(marker_s=4.0)
    name = "grp/in/0/5/thumb.jpg"
    old = target.store.put(name, b"T" * 50)  # a previous attempt's object, unreferenced
    gc, release = _start_gc(target, tmp_path, "files.gc.before_delete", limits=short)
    try:
        os.kill(gc.pid, signal.SIGSTOP)  # the whole gc process stopped, heartbeat included
        time.sleep(short.marker_s + 0.5)  # its marker now looks expired to writers
        pins = Pins(target.store, limits=short)
        pins.hold(name, sent=True)  # the retry writes the object again...
        ref = target.store.put(name, b"T" * 50)
        with open_tables() as tables:  # ...and a row gc's scan, done already, never saw
            tables.ensure_table("thumbs").put("5", {"thumb": ref.model_dump()})
        pins.release()  # seeing no running gc: the pin goes at once
        assert list(target.store.list("millstream.gc/pins/")) == []
    finally:
        os.kill(gc.pid, signal.SIGCONT)
        result = _finish(gc, release)
    assert "held up" in result["error"] and result["deleted"] == []
    assert target.store.stat(name) == old == ref
    assert list(target.store.list("millstream.gc/condemned/")) == []


def test_a_writer_whose_clock_is_ahead_still_waits_for_a_condemnation(
        target: Target, streams: Streams, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    value = _value(23)
    old = _old_object(target.store, value)
    gc, release = _start_gc(target, tmp_path, "files.gc.condemned")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 150)  # this host's clock: 150 s ahead
    claim = ClaimCheck(target.store, threshold_bytes=1000)
    sent = threading.Event()
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with claim.wrap_producer(streams.open_producer()) as producer:
                producer.send("big", value, key=b"k")
            sent.set()
        except BaseException as exc:  # reported to the test below
            failed.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert not sent.wait(1.0), "the writer reused an object being deleted"
    finally:
        result = _finish(gc, release)
        writer.join(60)
    assert not failed, failed
    assert result["deleted"] == [old.url]
    again = target.store.stat(old.url)
    assert (again.size, again.sha256) == (old.size, old.sha256)
    assert _read_back(streams, claim) == [value]


def test_a_pin_that_cannot_be_read_keeps_every_object(tmp_path: Path) -> None:
    root = tmp_path / "files"
    store = open_files(root.as_uri())
    orphan = store.put("obj/orphan", b"o" * 30)
    pins = Pins(store)
    pins.hold("obj/orphan", sent=True)
    [pin] = [r.url.removeprefix(store.url + "/") for r in store.list("millstream.gc/pins/")]
    path = root / pin
    data = path.read_bytes()
    path.write_bytes(data.replace(b"orphan", b"0rphan"))  # changed in place, same size
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        report = run_gc(store, streams, None, older_than_s=0)
    assert report.deleted == [] and report.kept["pins"] == 1
    assert store.stat(orphan.url) == orphan


def test_each_hold_writes_one_small_pin_and_a_batch_one_pin_for_all_its_values(
        tmp_path: Path, streams: Streams) -> None:
    store = open_files((tmp_path / "files").as_uri())
    pins = Pins(store)
    for i in range(300):
        pins.hold(f"svc.group/uploads/0/{i}/thumb-{i}.jpg", sent=True)
    pin_refs = list(store.list("millstream.gc/pins/"))
    assert len(pin_refs) == 300 and max(r.size for r in pin_refs) < 200
    pins.release()
    assert list(store.list("millstream.gc/pins/")) == []
    claim = ClaimCheck(store, threshold_bytes=1000)
    producer = claim.wrap_producer(streams.open_producer())
    values = [_value(s)[:5000] for s in (3, 5, 7)]
    producer.send_batch("big", values)
    [pin] = list(store.list("millstream.gc/pins/"))
    assert sorted(json.loads(store.read_bytes(pin))["what"]) == sorted(
        ClaimCheck.name_of(v) for v in values)
    producer.close()
    assert list(store.list("millstream.gc/pins/")) == []
