"""``files gc`` keeps everything the platform refers to, even with ``--older-than 0s``:
records (JSON or not, claim-check contents), table documents (SQLite and PostgreSQL),
snapshots and what they hold, checkpoints and their state objects, and objects a running
service has stored for a record it has not sent yet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import BinaryIO

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import millstream
from millstream._wellknown import CHECKPOINTS, EXCEPTIONS, ensure_platform_streams
from millstream.cli.main import cli
from millstream.codecs import ModelCodec
from millstream.errors import InvalidRequestError, UnavailableError
from millstream.files import ClaimCheck, FileRef, FileStore, claim_checked, open_files
from millstream.files._gc import run_gc
from millstream.files._local import LocalStore
from millstream.files._pins import Pins
from millstream.records import Record
from millstream.runtime._failures import describe_failure
from millstream.runtime._state import CheckpointStore
from millstream.streams._base import Streams
from millstream.tables import Tables, open_tables
from millstream.tables._snapshot import write_snapshot
from tests.files.gc_app import Stored, Upload, blob
from tests.support.children import REPO
from tests.support.s3_fixtures import S3Target
from tests.support.waiting import wait_until


def _urls(store: FileStore) -> set[str]:
    return {r.url for r in store.list()}


def _summary(output: str) -> str:
    return output.strip().splitlines()[-1]


def _pins(store: FileStore) -> list[FileRef]:
    return list(store.list("millstream.gc/pins/"))


def _platform_refs(store: FileStore, streams: Streams, tables: Tables,
                   stream: str = "events") -> dict[str, FileRef]:
    """One object per way the platform refers to objects, plus an orphan; returns them."""
    put = {n: store.put(f"obj/{n}", n.encode() * 10) for n in (
        "record", "raw", "header", "inner", "doc", "snapped", "state-ref", "state-inline",
        "html", "failed-value", "failed-key", "failed-header", "inner-raw", "orphan")}
    admin = streams.admin()
    admin.create_stream(stream, 2)
    ensure_platform_streams(admin)
    with streams.open_producer() as producer:
        producer.send(stream, json.dumps({"deep": [{"x": put["record"].model_dump()}]})
                      .encode(), key=b"1")
        # not JSON: the URL inside arbitrary bytes, and in a header
        producer.send(stream, b"\x00\x01src=" + put["raw"].url.encode() + b"\xff\xfe",
                      key=b"2")
        producer.send(stream, b"\x02\x03", key=b"3",
                      headers=[("x-source", put["header"].url.encode())])
    # a claim-checked value: a large JSON document that itself refers to an object
    big = json.dumps({"pad": "p" * 5000, "ref": put["inner"].model_dump()}).encode()
    checked = claim_checked(streams, ClaimCheck(store, threshold_bytes=1000))
    with checked.open_producer() as producer:  # (closing `checked` would close `streams`)
        producer.send(stream, big, key=b"4")
        # a large value that is not JSON (msgpack, say) naming an object
        producer.send(stream, b"\x82\xa3src" + put["inner-raw"].url.encode() + b"\x00" * 5000,
                      key=b"5")
    with streams.open_producer() as producer:
        # an object's URL inside a JSON string, not at its start
        producer.send(stream, json.dumps({"html": f"<img src='{put['html'].url}'>"})
                      .encode(), key=b"6")
        # an input kept only in millstream.exceptions (its stream gone): value, key and
        # headers are base64 in the exception record
        failed = Record(stream="gone", partition=0, offset=0, timestamp=0,
                        key=put["failed-key"].url.encode(),
                        value=json.dumps({"f": put["failed-value"].model_dump()}).encode(),
                        headers=(("x-src", put["failed-header"].url.encode()),))
        producer.send(EXCEPTIONS, describe_failure(
            {"app": "a", "service": "s", "group": "g", "instance": "i", "version": "1"},
            failed, "handle", RuntimeError("boom"), 3, None), key=b"g")
    # a table document, nested
    tables.ensure_table("media").put("m1", {"a": {"b": [put["doc"].model_dump()]}})
    # a snapshot whose document is gone from the live table
    snap = tables.ensure_table("snapped")
    snap.put("s1", {"file": put["snapped"].model_dump()})
    write_snapshot(snap, store)
    snap.delete("s1")
    # checkpoints: state kept in an object (it refers to another), and inline state
    with streams.open_producer() as producer:
        CheckpointStore(streams, "big-group", files=store, inline_limit=10).write(
            producer, 0, {stream: 3}, {"thumb": put["state-ref"].model_dump()}, 3)
        CheckpointStore(streams, "small-group", files=store).write(
            producer, 0, {stream: 3}, {"thumb": put["state-inline"].model_dump()}, 3)
    return put


def test_gc_with_no_age_grace_keeps_every_object_the_platform_refers_to() -> None:
    store = open_files()
    with millstream.open_streams() as streams, open_tables() as tables:
        put = _platform_refs(store, streams, tables)
    claims = {r.url for r in store.list("claim-check/")}
    assert len(claims) == 2
    snapshot = next(store.list("tables/snapped/snapshots/"))
    state = next(r for r in store.list("big-group/checkpoints/"))
    everything = {r.url for r in put.values()} | claims | {snapshot.url, state.url}
    assert _urls(store) == everything

    dry = CliRunner().invoke(cli, ["files", "gc", "--dry-run", "--older-than", "0s"])
    assert dry.exit_code == 0, dry.output
    assert f"would delete {put['orphan'].url} (60 bytes)" in dry.output
    assert _urls(store) == everything

    done = CliRunner().invoke(cli, ["files", "gc", "--older-than", "0s"])
    assert done.exit_code == 0, done.output
    assert _urls(store) == everything - {put["orphan"].url}
    assert _summary(done.output) == (
        "deleted 1 object(s), 60 bytes; kept 17 object(s): referred to by records 11, "
        "tables 1, snapshots 2, checkpoints 3; pinned by running writers 0; younger than 0s 0")
    # progress: every stream, table and snapshot scanned is named
    assert "scanned stream events: 6 record(s)" in done.output
    assert f"scanned stream {EXCEPTIONS}: 1 record(s)" in done.output
    assert f"scanned stream {CHECKPOINTS}: 2 record(s)" in done.output
    assert "scanned table media: 1 document(s)" in done.output
    assert "scanned table snapped: 0 document(s)" in done.output
    assert (f"scanned snapshot {snapshot.url.removeprefix(store.url + '/')}: 1 document(s)"
            in done.output)
    # nothing of gc's own is left behind
    assert list(store.list("millstream.gc/")) == []


def test_gc_keeps_objects_referred_to_by_postgresql_documents(pg_url: str) -> None:
    store = open_files()
    with millstream.open_streams() as streams, open_tables(pg_url) as tables:
        doc = store.put("pg/doc", b"d" * 7)
        snapped = store.put("pg/snapped", b"s" * 8)
        orphan = store.put("pg/orphan", b"o" * 9)
        tables.ensure_table("pgmedia").put("k", {"list": [{"ref": doc.model_dump()}]})
        snap = tables.ensure_table("pgsnap")
        snap.put("k", {"ref": snapped.model_dump()})
        write_snapshot(snap, store)
        snap.delete("k")
        report = run_gc(store, streams, tables, older_than_s=0)
    assert [r.url for r in report.deleted] == [orphan.url]
    assert report.kept == {"records": 0, "tables": 1, "snapshots": 2, "checkpoints": 0,
                           "pins": 0, "young": 0}
    assert {doc.url, snapped.url} <= _urls(store) and orphan.url not in _urls(store)


def _run_app(pause_file: Path, out: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), GC_APP_HOLD=str(pause_file))
    with open(out, "ab") as stdout:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", "tests.files.gc_app:app", "stash",
             "--metrics-interval", "60"], cwd=REPO, env=env, stdout=stdout, stderr=stdout)


def test_gc_keeps_what_a_running_service_stored_for_a_record_not_yet_sent(
        tmp_path: Path) -> None:
    store = open_files()
    upload = Upload(id=7, size=3000)
    with millstream.open_streams() as streams:
        streams.admin().ensure_stream("gc-uploads", 1)
        value, headers = ModelCodec(Upload).encode(upload)
        with streams.open_producer() as producer:
            producer.send("gc-uploads", value, key=b"7", headers=headers)
    pause, log = tmp_path / "release", tmp_path / "service.log"
    service = _run_app(pause, log)
    try:
        # the service stored its file; its record is not made yet
        wait_until(lambda: Path(f"{pause}.reached").exists() or service.poll() is not None,
                   60, "the service to store its file")
        assert service.poll() is None, log.read_text()
        stored = store.stat("gcapp.stash/gc-uploads/0/0/blob.bin")
        assert list(store.list("claim-check/")) == []

        done = CliRunner().invoke(cli, ["files", "gc", "--older-than", "0s"])
        assert done.exit_code == 0, done.output
        assert _summary(done.output) == (
            "deleted 0 object(s), 0 bytes; kept 1 object(s): referred to by records 0, "
            "tables 0, snapshots 0, checkpoints 0; pinned by running writers 1; younger "
            "than 0s 0")
        assert stored.url in _urls(store)
        assert len(_pins(store)) == 1

        pause.touch()  # let the service send its record and commit
        with millstream.open_streams() as streams:
            consumer = claim_checked(streams, ClaimCheck(store)).open_consumer()
            with consumer:
                consumer.subscribe(["gc-stored"])
                got: list[Stored] = []
                wait_until(lambda: got.extend(
                    Stored.model_validate_json(r.value or b"") for r in consumer.poll(
                        10, timeout=0.2)) or bool(got), 60, "the service's record")
        assert got[0].ref == stored
        assert store.read_bytes(got[0].ref) == blob(upload)
    finally:
        pause.touch()
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0, log.read_text()
    # the service's pins are gone: the record (a claim-check whose contents refer to the
    # stored file) keeps both objects now
    assert _pins(store) == []
    done = CliRunner().invoke(cli, ["files", "gc", "--older-than", "0s"])
    assert done.exit_code == 0, done.output
    assert _summary(done.output) == (
        "deleted 0 object(s), 0 bytes; kept 2 object(s): referred to by records 2, "
        "tables 0, snapshots 0, checkpoints 0; pinned by running writers 0; younger "
        "than 0s 0")


@pytest.fixture(autouse=True)
def _no_pause_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MILLSTREAM_FAULT_PAUSE", raising=False)
    monkeypatch.delenv("MILLSTREAM_FAULT_PAUSE_FILE", raising=False)


class _SnapshotsUnavailable(LocalStore):
    """A store whose snapshots cannot be read once, for a reason that is not damage (the
    disk, or an S3 server, gone a moment): ``UnavailableError`` is a ``ConnectionError``, an
    ``OSError``."""

    failed = False

    def open(self, ref: FileRef | str, *, start: int = 0, end: int | None = None,
             verify: bool = True) -> BinaryIO:
        name = ref if isinstance(ref, str) else ref.url
        if "/snapshots/" in name and not self.failed:
            self.failed = True
            raise UnavailableError(f"{name}: the store does not answer")
        return super().open(ref, start=start, end=end, verify=verify)


def test_a_snapshot_that_cannot_be_read_for_a_reason_other_than_damage_ends_the_gc_not_as_damage(
        tmp_path: Path) -> None:
    url = (tmp_path / "files").as_uri()
    store = open_files(url)
    snapped = store.put("obj/snapped", b"s" * 10)
    with millstream.open_streams() as streams, open_tables() as tables:
        table = tables.ensure_table("snapped")
        table.put("s1", {"file": snapped.model_dump()})
        write_snapshot(table, store)
        table.delete("s1")  # only the snapshot refers to the object now
        with pytest.raises(UnavailableError, match="does not answer"):
            run_gc(_SnapshotsUnavailable(tmp_path / "files"), streams, tables, older_than_s=0)
    assert snapped.url in _urls(store)


def test_gc_of_another_store_follows_the_platforms_claim_checks_and_checkpoint_states(
        tmp_path: Path) -> None:
    platform = open_files()  # where the claim-check and checkpoint states go
    media = open_files((tmp_path / "media").as_uri())
    in_claim, in_state = media.put("v/a.mp4", b"a" * 10), media.put("v/b.mp4", b"b" * 10)
    orphan = media.put("v/orphan.mp4", b"o" * 10)
    with millstream.open_streams() as streams, open_tables():
        streams.admin().create_stream("events", 1)
        ensure_platform_streams(streams.admin())
        big = json.dumps({"pad": "p" * 5000, "video": in_claim.model_dump()}).encode()
        with claim_checked(streams, ClaimCheck(platform, threshold_bytes=1000)
                           ).open_producer() as producer:
            producer.send("events", big)
        with streams.open_producer() as producer:
            CheckpointStore(streams, "grp", files=platform, inline_limit=10).write(
                producer, 0, {"events": 1}, {"last": in_state.model_dump()}, 1)
    done = CliRunner().invoke(cli, ["files", "--files", media.url, "gc", "--older-than", "0s"])
    assert done.exit_code == 0, done.output
    assert _summary(done.output) == (
        "deleted 1 object(s), 10 bytes; kept 2 object(s): referred to by records 1, "
        "tables 0, snapshots 0, checkpoints 1; pinned by running writers 0; younger than 0s 0")
    assert _urls(media) == {in_claim.url, in_state.url}
    assert f"deleted {orphan.url} (10 bytes)" in done.output


def test_gc_refuses_a_prefix_holding_another_stores_pins(s3_url: S3Target) -> None:
    parent = open_files(s3_url.child(), options=s3_url.options)
    child = open_files(parent.url + "/team2", options=s3_url.options)
    pins = Pins(child)
    pins.hold("claim-check/abc")  # a writer of the nested store: its record not sent yet
    held = child.put("claim-check/abc", b"C" * 100)
    with millstream.open_streams() as streams:
        with pytest.raises(InvalidRequestError, match=(
                f"{parent.url} holds another store, {parent.url}/team2 .*collect it on its "
                f"own \\(--files {parent.url}/team2\\)")):
            run_gc(parent, streams, None, older_than_s=0)
        assert [r.url for r in run_gc(parent, streams, None, older_than_s=0,
                                      prefix="other/").deleted] == []
    assert child.exists(held)
    pins.release()


def test_a_snapshot_written_to_another_store_keeps_its_objects_when_gc_is_told_of_it(
        tmp_path: Path) -> None:
    store = open_files()
    cover, orphan = store.put("media/cover.jpg", b"J" * 100), store.put("media/o", b"o" * 10)
    backups = (tmp_path / "backups").as_uri()
    with millstream.open_streams(), open_tables() as tables:
        tables.ensure_table("videos").put("v1", {"poster": cover.model_dump()})
    done = CliRunner().invoke(cli, ["tables", "snapshot", "videos", "--files", backups])
    assert done.exit_code == 0, done.output
    with open_tables() as tables:
        tables.table("videos").delete("v1")  # only the snapshot in `backups` names it now
    args = ["files", "gc", "--older-than", "0s", "--dry-run"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert f"would delete {cover.url} (100 bytes)" in done.output  # what the docs warn of
    done = CliRunner().invoke(cli, [*args[:-1], "--snapshots", backups])
    assert done.exit_code == 0, done.output
    assert f"snapshots in {backups}" in done.output
    snapshot = next(open_files(backups).list("tables/videos/snapshots/"))
    assert f"scanned snapshot {snapshot.url}: 1 document(s)" in done.output
    assert _summary(done.output) == (
        "deleted 1 object(s), 10 bytes; kept 1 object(s): referred to by records 0, "
        "tables 0, snapshots 1, checkpoints 0; pinned by running writers 0; younger than 0s 0")
    assert _urls(store) == {cover.url}
    assert orphan.url not in _urls(store)


class Media(BaseModel):
    poster: FileRef
    extra: list[FileRef] = []


class Video(BaseModel):
    id: int
    media: Media


@pytest.mark.parametrize(("files", "log"), [
    ("s3", "local"), pytest.param("file", "kafka", marks=pytest.mark.kafka)])
def test_gc_keeps_every_object_the_platform_refers_to_on_s3_and_on_kafka(
        files: str, log: str, request: pytest.FixtureRequest) -> None:
    if files == "s3":
        s3: S3Target = request.getfixturevalue("s3_url")
        store = open_files(s3.child(), options=s3.options)
    else:
        store = open_files()
    streams_url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}" if log == "kafka" \
        else None
    stream = f"gc-keeps-{uuid.uuid4().hex[:8]}"
    with millstream.open_streams(streams_url) as streams, open_tables() as tables:
        put = _platform_refs(store, streams, tables, stream)
        # a FileRef nested in a pydantic model, as a service's codec writes it
        poster, extra = store.put("obj/poster", b"p" * 10), store.put("obj/extra", b"e" * 10)
        value, headers = ModelCodec(Video).encode(
            Video(id=1, media=Media(poster=poster, extra=[extra])))
        with streams.open_producer() as producer:
            producer.send(stream, value, key=b"7", headers=headers)
        report = run_gc(store, streams, tables, older_than_s=0)
        if log == "kafka":
            streams.admin().delete_stream(stream)
    assert [r.url for r in report.deleted] == [put["orphan"].url]
    assert report.kept == {"records": 13, "tables": 1, "snapshots": 2, "checkpoints": 3,
                           "pins": 0, "young": 0}
    assert _urls(store) == ({r.url for r in put.values()} | {poster.url, extra.url}
                            | {r.url for r in store.list("claim-check/")}
                            | {r.url for r in store.list("tables/")}
                            | {r.url for r in store.list("big-group/")}) - {put["orphan"].url}
