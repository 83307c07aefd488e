"""Crash safety of the embedded log (docs: /work/shared/notes/reliability.md, L1 L3 L4 L9 G1 G3).

Producers and consumers run as child processes (``tests.support.log_worker``) that are killed
with SIGKILL at random moments or die at named fault points (``MILLSTREAM_FAULT``); files are
damaged between runs. Afterwards a fresh reader checks what must hold: every acknowledged
record present exactly once at the position it was acknowledged with, offsets dense, the next
append continuing at the right offset, damage reported as ``CorruptDataError`` naming where.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import millstream
from millstream import CorruptDataError, Retention, StreamPartition
from millstream.faults import FAULT_EXIT_CODE
from millstream.streams._local import _wakeup
from tests.support.children import Child
from tests.support.logread import by_partition, db_path, integrity, read_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess

KILL_ROUNDS = int(os.environ.get("MILLSTREAM_KILL_ROUNDS", "11"))
SEED = int(os.environ.get("MILLSTREAM_TEST_SEED", "0")) or random.randrange(1, 2**31)
SESSION_S = 2.0  # short, so that leases expire quickly; heartbeats are ten times as often
GROUP_URL_OPTIONS = f"?session_timeout_ms={SESSION_S * 1000:.0f}&heartbeat_interval_ms=200"


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    print(f"random choices from MILLSTREAM_TEST_SEED={SEED}")  # shown when a test fails
    return f"local:{tmp_path / 'log'}"


def acks_of(child: Child) -> list[tuple[str, int, int]]:
    return [(f[0], int(f[1]), int(f[2])) for f in child.fields("A")]


def check_dense(streams: millstream.Streams, stream: str) -> list[millstream.Record]:
    """Read everything; assert each partition holds offsets 0..end-1 exactly, and return it."""
    info = streams.admin().describe_stream(stream)
    records = read_all(streams, stream)
    parts = by_partition(records)
    for p in info.partitions:
        offsets = [r.offset for r in parts.get(p.partition, [])]
        assert p.start == 0
        assert offsets == list(range(p.end)), f"{stream}[{p.partition}] offsets not dense"
    return records


def check_next_append(streams: millstream.Streams, stream: str) -> None:
    """One more record per partition lands at the partition's end, and reads back."""
    info = streams.admin().describe_stream(stream)
    with streams.open_producer() as producer:
        handles = {p.partition: producer.send(stream, b"next", partition=p.partition)
                   for p in info.partitions}
        positions = {p: h.wait(10) for p, h in handles.items()}
    for p in info.partitions:
        assert positions[p.partition].offset == p.end
    after = streams.admin().describe_stream(stream)
    assert [p.end for p in after.partitions] == [p.end + 1 for p in info.partitions]
    tail = [r for r in read_all(streams, stream) if r.value == b"next"]
    assert sorted((r.partition, r.offset) for r in tail) == sorted(
        (p.partition, p.end) for p in info.partitions)


# -- L1: kill -9 of a producer in a loop --------------------------------------------------------


def test_l1_kill_loop_keeps_every_acknowledged_record_exactly_once(
        tmp_path: Path, log_url: str) -> None:
    rng = random.Random(SEED)
    with millstream.open_streams(log_url) as streams:
        streams.admin().create_stream("kills", partitions=3)
    plan = (["kill"] * KILL_ROUNDS + ["log.append.before_commit"] * 2
            + ["log.append.after_commit"] * 2)
    rng.shuffle(plan)
    acked: dict[str, tuple[int, int]] = {}
    acked_per_round: list[int] = []
    for rnd, how in enumerate(plan):
        env = {} if how == "kill" else {"MILLSTREAM_FAULT": f"{how}:{rng.randint(1, 40)}"}
        with Child("produce", "--url", log_url, "--stream", "kills", "--prefix", f"r{rnd}",
                   "--seed", str(rng.randrange(2**31)),
                   out=tmp_path / f"round{rnd}.out", env=env) as child:
            if how == "kill":
                child.wait_for("READY")
                child.wait_for("A", rng.randrange(0, 3000), timeout=60)
                assert child.kill() == -signal.SIGKILL, child.stderr()
            else:
                assert child.wait(60) == FAULT_EXIT_CODE, child.stderr()
                assert f"fault point {how.split(':')[0]!r} reached" in child.stderr()
            acks = acks_of(child)
        ids = [rid for rid, _, _ in acks]
        # acknowledgements come in send order: a prefix of the round's sequence numbers
        assert ids == [f"r{rnd}-{i}" for i in range(len(ids))], f"round {rnd} ({how})"
        for rid, p, off in acks:
            assert rid not in acked
            acked[rid] = (p, off)
        acked_per_round.append(len(acks))

    assert sum(acked_per_round) > 0, f"no round acknowledged anything: {plan}"
    with millstream.open_streams(log_url) as streams:
        records = check_dense(streams, "kills")
        found = Counter((r.value or b"").decode() for r in records)
        twice = [rid for rid, n in found.items() if n > 1]
        assert twice == [], f"ids stored twice: {twice[:10]}"
        where = {(r.value or b"").decode(): (r.partition, r.offset) for r in records}
        missing = [rid for rid in acked if rid not in where]
        assert missing == [], f"{len(missing)} acknowledged ids lost, e.g. {missing[:10]}"
        moved = [rid for rid, pos in acked.items() if where[rid] != pos]
        assert moved == [], f"acknowledged ids found elsewhere than acknowledged: {moved[:10]}"
        for r in records:  # keys and values agree: no record is a mix of two sends
            assert r.key == r.value
        # what is stored of each round is a prefix of what it sent (stored ⊆ sent, in order)
        per_round: dict[str, list[int]] = defaultdict(list)
        for rid in found:
            rnd_name, _, seq = rid.partition("-")
            per_round[rnd_name].append(int(seq))
        for rnd, n_acked in enumerate(acked_per_round):
            seqs = sorted(per_round.get(f"r{rnd}", []))
            assert seqs == list(range(len(seqs))), f"round {rnd} stored a non-prefix"
            assert len(seqs) >= n_acked
        check_next_append(streams, "kills")
    assert integrity(db_path(log_url)) == "ok"


def test_l1_kill_inside_retention_keeps_a_consistent_retained_range(
        tmp_path: Path, log_url: str) -> None:
    """A producer that dies while its writer thread applies retention (after the delete,
    before COMMIT): the retained range stays consistent with the stored batches."""
    rng = random.Random(SEED)
    url = log_url + "?retention_check_ms=1"  # retention after every append
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("bounded", retention=Retention(max_bytes=4000))
    acked: dict[str, tuple[int, int]] = {}
    for rnd in range(3):
        with Child("produce", "--url", url, "--stream", "bounded", "--prefix", f"r{rnd}",
                   "--seed", str(rnd), out=tmp_path / f"retention{rnd}.out",
                   env={"MILLSTREAM_FAULT": f"log.retention.before_commit:"
                                            f"{rng.randint(2, 20)}"}) as child:
            assert child.wait(60) == FAULT_EXIT_CODE, child.stderr()
            assert "'log.retention.before_commit' reached" in child.stderr()
            acked.update((rid, (p, off)) for rid, p, off in acks_of(child))
        with millstream.open_streams(url) as streams:
            info = streams.admin().describe_stream("bounded").partitions[0]
            assert 0 < info.start < info.end
            records = read_all(streams, "bounded")
            assert [r.offset for r in records] == list(range(info.start, info.end))
            stored = {(r.value or b"").decode(): (r.partition, r.offset) for r in records}
            kept = {rid: pos for rid, pos in acked.items() if pos[1] >= info.start}
            assert kept == {rid: pos for rid, pos in stored.items() if rid in acked}
            assert set(kept) <= set(stored) and len(kept) > 0
    with millstream.open_streams(url) as streams:
        end = streams.admin().describe_stream("bounded").partitions[0].end
        with streams.open_producer() as producer:
            assert producer.send("bounded", b"next").wait(10).offset == end
    assert integrity(db_path(url)) == "ok"


# -- L3: torn tail of the WAL -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncate"])
def test_l3_torn_wal_tail_keeps_acknowledged_records(
        tmp_path: Path, log_url: str, damage: str) -> None:
    rng = random.Random(f"{SEED}-{damage}")
    n = 100
    with millstream.open_streams(log_url) as streams:
        streams.admin().create_stream("torn", partitions=2)
    # n acknowledged one-record commits, then one more commit that dies before COMMIT; for
    # "truncate" it is 40 MB, so SQLite spills uncommitted pages into the -wal file
    tail = 40_000_000 if damage == "truncate" else 1_000
    with Child("produce", "--url", log_url, "--stream", "torn", "--prefix", "t", "--sync",
               "--count", str(n), "--tail-bytes", str(tail), out=tmp_path / "torn.out",
               env={"MILLSTREAM_FAULT": f"log.append.before_commit:{n + 1}"}) as child:
        assert child.wait(60) == FAULT_EXIT_CODE, child.stderr()
        lines = child.fields("A")
    assert len(lines) == n
    assert "TAIL-FLUSHED" not in child.lines()
    sizes = [int(f[3]) for f in lines]
    assert sizes == sorted(set(sizes)), "the -wal file was reset mid-run; test assumes it grows"
    synced = sizes[-1]  # the -wal file's size at the last acknowledged commit
    wal = db_path(log_url).with_name("streams.db-wal")
    size = wal.stat().st_size
    if damage == "garbage":
        junk = rng.randbytes(rng.randint(1, 3 * 4120))
        with open(wal, "ab") as f:
            f.write(junk)
        assert wal.stat().st_size == size + len(junk)
    else:
        assert size > synced + 4120, "the dying transaction wrote nothing into the -wal file"
        cut = rng.randint(synced + 1, size - 1)
        os.truncate(wal, cut)

    acked = {f[0]: (int(f[1]), int(f[2])) for f in lines}
    with millstream.open_streams(log_url) as streams:
        records = check_dense(streams, "torn")
        assert {(r.value or b"").decode(): (r.partition, r.offset) for r in records} == acked
        assert len(records) == n
        info = streams.admin().describe_stream("torn")
        per_partition = Counter(p for p, _ in acked.values())
        assert {p.partition: p.end for p in info.partitions} == {
            p: per_partition[p] for p in (0, 1)}
        check_next_append(streams, "torn")
    assert integrity(db_path(log_url)) == "ok"


# -- L4: flipped bits in synced data ------------------------------------------------------------


def _write_and_checkpoint(url: str, stream: str, batches: int, per_batch: int,
                          partitions: int = 1) -> Path:
    """Write ``batches`` stored batches of ``per_batch`` records per partition (value
    ``p<partition>-rec-<offset>-…``), then checkpoint so that everything lives in the main
    database file."""
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream(stream, partitions=partitions)
        with streams.open_producer() as producer:
            for p in range(partitions):
                for k in range(batches):
                    positions = producer.send_batch(
                        stream, [_value(p, k * per_batch + i) for i in range(per_batch)],
                        partition=p).wait(10)
                    assert positions[0].offset == k * per_batch  # one stored batch per call
    path = db_path(url)
    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()
    wal = path.with_name("streams.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    return path


def _value(partition: int, offset: int) -> bytes:
    return b"p%d-rec-%06d-" % (partition, offset) + b"v" * 40


def _flip(path: Path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    assert data.count(needle) == 1
    data[data.index(needle) + len(needle) - 3] ^= 0x04
    path.write_bytes(bytes(data))


def test_l4_flipped_byte_in_a_batch_payload_is_reported_with_its_position(
        log_url: str) -> None:
    path = _write_and_checkpoint(log_url, "rot", batches=10, per_batch=100)
    _flip(path, b"p0-rec-000350-")

    with millstream.open_streams(log_url) as streams:
        read: list[millstream.Record] = []
        with streams.open_consumer() as consumer:
            consumer.subscribe(["rot"])
            with pytest.raises(CorruptDataError) as caught:
                for _ in range(100):
                    read.extend(consumer.poll(max_records=130, timeout=0))
            message = str(caught.value)
            assert "'rot'" in message and "partition 0" in message
            assert "300..399" in message and "CRC" in message
            # everything before the damaged batch was returned, nothing after it
            assert [r.offset for r in read] == list(range(300))
            assert all(r.value == _value(0, r.offset) for r in read)
            # the reader stays stuck at the damage: polling again raises again
            with pytest.raises(CorruptDataError, match=r"300\.\.399"):
                consumer.poll(timeout=0)
            assert consumer.position(StreamPartition("rot", 0)) == 300
        # a reader that starts inside the damaged batch fails the same way
        with streams.open_consumer() as consumer:
            consumer.subscribe(["rot"])
            consumer.seek(StreamPartition("rot", 0), 350)
            with pytest.raises(CorruptDataError, match=r"300\.\.399"):
                consumer.poll(timeout=0)
            # past the damaged batch, records are intact (an explicit seek, not a skip)
            consumer.seek(StreamPartition("rot", 0), 400)
            after = consumer.poll(max_records=1000, timeout=0)
            assert [r.offset for r in after] == list(range(400, 1000))


def test_l4_damage_in_one_partition_does_not_swallow_records_read_from_another(
        log_url: str) -> None:
    path = _write_and_checkpoint(log_url, "rot", batches=3, per_batch=100, partitions=2)
    _flip(path, b"p1-rec-000050-")
    with millstream.open_streams(log_url) as streams, streams.open_consumer() as consumer:
        consumer.subscribe(["rot"])
        read: list[millstream.Record] = []
        with pytest.raises(CorruptDataError, match=r"partition 1.*0\.\.99"):
            for _ in range(10):
                read.extend(consumer.poll(max_records=1000, timeout=0))
        # partition 0 was read whole and returned; partition 1 stops at its damaged batch
        assert [(r.partition, r.offset) for r in read] == [(0, o) for o in range(300)]
        assert consumer.position(StreamPartition("rot", 0)) == 300
        assert consumer.position(StreamPartition("rot", 1)) == 0


@pytest.mark.parametrize("page", ["batches", "schema"])
def test_l4_damaged_btree_page_header_raises_corrupt_data_naming_the_file(
        log_url: str, page: str) -> None:
    path = _write_and_checkpoint(log_url, "rot", batches=40, per_batch=100)
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name='batches'").fetchone()[0]
    finally:
        conn.close()
    data = bytearray(path.read_bytes())
    # the batches table's root page, or page 1 (the schema table, after the file header)
    header = (root - 1) * page_size if page == "batches" else 100
    assert data[header] in (0x02, 0x05, 0x0A, 0x0D)  # a b-tree page type
    data[header] = 0x6B
    data[header + 3:header + 5] = b"\xff\xff"  # and an impossible cell count
    path.write_bytes(bytes(data))

    got: list[millstream.Record] = []
    with pytest.raises(CorruptDataError) as caught, \
            millstream.open_streams(log_url) as streams, streams.open_consumer() as consumer:
        consumer.subscribe(["rot"])  # opening may raise already
        for _ in range(50):
            got.extend(consumer.poll(max_records=1000, timeout=0))
    message = str(caught.value)
    assert str(path) in message and "is damaged" in message
    # the schema page fails at open; the batches page when records are read
    assert ("while opening it" if page == "schema" else "while reading records") in message
    assert got == []  # never garbage records


# -- L9: disk full ------------------------------------------------------------------------------


def test_l9_disk_full_refuses_and_never_acknowledges_unstored_records(
        tmp_path: Path, log_url: str) -> None:
    with millstream.open_streams(log_url) as streams:
        streams.admin().create_stream("full", partitions=2)
    with Child("fill", "--url", log_url, "--stream", "full", "--room", str(1024 * 1024),
               out=tmp_path / "fill.out") as child:
        assert child.wait(120) == 0, child.stderr()
        errors = {f[0]: " ".join(f[1:]) for f in child.fields("E")}
        acks = acks_of(child)
    assert len(acks) > 100, "the limit left no room for any write"
    # the first failed write shows on the handles and on flush, and every later send refuses
    assert errors["wait"].startswith("DeliveryError")
    assert errors["flush"].startswith("DeliveryError")
    assert errors["send"].startswith("DeliveryError")
    assert "stopped after a failed write" in errors["send"]
    assert int(child.fields("FAILED-WAITS")[0][0]) > 0
    assert any(word in errors["wait"] for word in ("full", "I/O", "disk"))

    with millstream.open_streams(log_url) as streams:
        records = check_dense(streams, "full")
        stored = {(r.value or b"").split(b" ")[0].decode(): (r.partition, r.offset)
                  for r in records}
        assert stored == {rid: (p, off) for rid, p, off in acks}
        check_next_append(streams, "full")
    assert integrity(db_path(log_url)) == "ok"


# -- G1 / G3: group members killed or paused ----------------------------------------------------


def _fill_work(url: str, partitions: int, per_partition: int, stream: str = "work") -> None:
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream(stream, partitions=partitions)
        with streams.open_producer() as producer:
            for p in range(partitions):
                producer.send_batch(
                    stream, [f"w-{p}-{i}".encode() for i in range(per_partition)], partition=p)


def test_g1_member_killed_between_processing_and_commit_rereads_from_last_commit(
        tmp_path: Path, log_url: str) -> None:
    url = log_url + GROUP_URL_OPTIONS
    _fill_work(url, partitions=2, per_partition=200)
    with Child("consume", "--url", url, "--stream", "work", "--group", "g1",
               "--max-records", "30", out=tmp_path / "dies.out",
               env={"MILLSTREAM_FAULT": "log.commit_offsets.before_commit:3"}) as child:
        assert child.wait(60) == FAULT_EXIT_CODE, child.stderr()
        lines = child.lines()
    # three polls processed, two commits made; the third commit died before COMMIT
    processed = [(int(f[1]), int(f[2])) for f in (ln.split(" ") for ln in lines)
                 if f[0] == "R"]
    commits = [ln.split(" ") for ln in lines if ln.startswith("C ")]
    assert len(processed) == 90 and len(commits) == 4  # two commits × two partitions
    last_commit = {int(c[1]): int(c[2]) for c in commits[-2:]}
    assert sum(last_commit.values()) == 60
    uncommitted = [(p, off) for p, off in processed[60:]]

    with millstream.open_streams(url) as streams:
        info = streams.admin().describe_group("g1")
        assert {lag.partition: lag.committed for lag in info.partitions} == last_commit
        reread: dict[int, list[int]] = defaultdict(list)
        with streams.open_consumer(group="g1") as consumer:
            consumer.subscribe(["work"])

            def caught_up() -> bool:
                for r in consumer.poll(max_records=500, timeout=0.1):
                    reread[r.partition].append(r.offset)
                return all(len(reread[p]) + last_commit[p] >= 200 for p in (0, 1))

            wait_until(caught_up, 20, "the restarted member to read to the end")
            # it starts exactly at the last commit: nothing skipped, the uncommitted poll
            # is delivered again (at least once)
            for p in (0, 1):
                assert reread[p] == list(range(last_commit[p], 200))
            assert set(uncommitted) <= {(p, o) for p in (0, 1) for o in reread[p]}
            consumer.commit()
        # a clean shutdown after commit: the next member sees only new records, no duplicates
        with streams.open_producer() as producer:
            for p in (0, 1):
                producer.send_batch("work", [b"late"] * 5, partition=p)
        fresh: list[millstream.Record] = []
        with streams.open_consumer(group="g1") as consumer:
            consumer.subscribe(["work"])
            wait_until(lambda: fresh.extend(consumer.poll(timeout=0.1)) or len(fresh) >= 10,
                       20, "the late records")
            assert consumer.poll(timeout=0.2) == []
        assert sorted((r.partition, r.offset) for r in fresh) == [
            (p, o) for p in (0, 1) for o in range(200, 205)]


def test_g1_partition_handed_over_by_a_leaving_member_is_read_at_once(
        log_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a member leaves, the partition it gives up is read by the member polling at that
    moment within the same poll call, not only after some later commit to the database."""
    # the recheck of a notified wait stretched from 1 s past the 5 s poll below: the poll
    # returns early only if the leave's ring woke it, and the bound can leave a loaded
    # machine seconds
    monkeypatch.setattr(_wakeup, "RECHECK_S", 10.0)
    url = log_url + "?heartbeat_interval_ms=10000&session_timeout_ms=30000"  # no heartbeats
    _fill_work(url, partitions=2, per_partition=10)
    rng = random.Random(SEED)
    with millstream.open_streams(url) as streams:
        for rnd in range(6):
            leaving = streams.open_consumer(group=f"handover-{rnd}")
            staying = streams.open_consumer(group=f"handover-{rnd}")
            leaving.subscribe(["work"])
            staying.subscribe(["work"])

            def split(leaving: millstream.Consumer = leaving,
                      staying: millstream.Consumer = staying) -> bool:
                leaving.poll(timeout=0.01)
                staying.poll(timeout=0.01)
                return len(leaving.assignment()) == len(staying.assignment()) == 1

            wait_until(split, 10, "the two members to own one partition each")
            staying.seek_to_end()  # its own partition holds nothing more to read
            moved = leaving.assignment()
            assert staying.assignment() != moved
            closer = threading.Timer(rng.uniform(0.05, 0.25), leaving.close)
            closer.start()
            started = time.monotonic()
            got = staying.poll(timeout=5)
            waited = time.monotonic() - started
            closer.join()
            staying.close()
            assert [(r.partition, r.offset) for r in got] == [
                (moved[0].partition, o) for o in range(10)]
            # the leave comes after 0.05-0.25 s; a missed ring would have the poll sleep to
            # its end (5 s)
            assert waited < 3.0, f"round {rnd}: the handed-over partition was read after {waited} s"


def test_g3_paused_member_is_fenced_after_its_partitions_moved(
        tmp_path: Path, log_url: str) -> None:
    url = log_url + GROUP_URL_OPTIONS
    _fill_work(url, partitions=2, per_partition=100)
    go = tmp_path / "go"
    with Child("zombie", "--url", url, "--stream", "work", "--group", "g3",
               "--max-records", "30", "--go", str(go), out=tmp_path / "zombie.out") as zombie:
        zombie.wait_for("POLLED")
        assert zombie.fields("ASSIGNED") == [["0,1"]]
        first_commit = {int(f[0]): int(f[1]) for f in zombie.fields("C")}
        assert sum(first_commit.values()) == 30
        zombie.signal(signal.SIGSTOP)
        # the zombie's lease runs SESSION_S from its last heartbeat, which came before the
        # stop: by up to a heartbeat interval, or longer when a loaded machine starved its
        # heartbeat thread — so the lease it holds now is the bound, not the time of the stop
        with sqlite3.connect(db_path(log_url)) as db:
            (lease_ends_ms,), = db.execute(
                "SELECT deadline_ms FROM group_members WHERE group_name='g3'").fetchall()
        db.close()
        try:
            with millstream.open_streams(url) as streams, \
                    streams.open_consumer(group="g3") as member:
                member.subscribe(["work"])
                got: dict[int, list[int]] = defaultdict(list)

                def took_over() -> bool:
                    for r in member.poll(max_records=500, timeout=0.1):
                        got[r.partition].append(r.offset)
                    return (member.assignment() == [StreamPartition("work", 0),
                                                    StreamPartition("work", 1)]
                            and all(len(got[p]) + first_commit[p] >= 100 for p in (0, 1)))

                wait_until(took_over, 20, "the live member to take both partitions")
                # not before the zombie's lease ran out
                assert time.time_ns() // 1_000_000 >= lease_ends_ms
                # it reads from the zombie's last commit: the zombie's second poll again
                for p in (0, 1):
                    assert got[p] == list(range(first_commit[p], 100))
                zombie.signal(signal.SIGCONT)
                go.touch()
                assert zombie.wait(30) == 0, zombie.stderr()
                errors = zombie.fields("E")
                assert len(errors) == 1 and errors[0][:2] == ["commit", "FencedError"]
                # refused for the partitions that moved, or for the expired membership if
                # its heartbeat thread rejoined the group before the commit
                assert ("moved work[0], work[1]" in " ".join(errors[0])
                        or "membership of group 'g3' expired" in " ".join(errors[0]))
                assert "COMMITTED" not in zombie.lines()
                info = streams.admin().describe_group("g3")
                # the zombie's commit changed nothing
                assert {lag.partition: lag.committed for lag in info.partitions} == first_commit
                member.commit()
                info = streams.admin().describe_group("g3")
                assert {lag.partition: lag.committed for lag in info.partitions} == {
                    0: 100, 1: 100}
        finally:
            if zombie.proc.poll() is None:
                zombie.signal(signal.SIGCONT)


def test_g3_paused_member_whose_partition_came_back_after_rejoining_is_still_fenced(
        tmp_path: Path, log_url: str) -> None:
    """The zombie's partition moves to another member and, once the zombie's heartbeat
    rejoined the group under a new member id, back to the zombie: a commit of positions it
    read before the pause must still be refused (they predate the move)."""
    url = log_url + GROUP_URL_OPTIONS
    _fill_work(url, partitions=2, per_partition=100)
    go = tmp_path / "go"
    with millstream.open_streams(url) as streams, \
            streams.open_consumer(group="g3") as member:
        member.subscribe(["work"])  # joins first: holds both partitions, then gives up work[1]
        with Child("zombie", "--url", url, "--stream", "work", "--group", "g3",
                   "--max-records", "30", "--go", str(go), out=tmp_path / "zombie.out") as zombie:
            wait_until(lambda: member.poll(timeout=0.05) is not None and zombie.count("POLLED"),
                       20, "the zombie to take work[1] and poll it twice")
            assert zombie.fields("ASSIGNED") == [["1"]], zombie.stderr()
            assert zombie.fields("C") == [["1", "30"]], zombie.stderr()
            zombie.signal(signal.SIGSTOP)
            try:
                got: list[int] = []

                def took_over() -> bool:
                    got.extend(r.offset for r in member.poll(max_records=500, timeout=0.1)
                               if r.partition == 1)
                    return (StreamPartition("work", 1) in member.assignment()
                            and bool(got) and got[-1] == 99)

                wait_until(took_over, 20, "the live member to take work[1] and read it")
                assert got == list(range(30, 100))
                member.commit()
                zombie.signal(signal.SIGCONT)

                def zombie_holds_it_again() -> bool:
                    member.poll(timeout=0.05)  # gives work[1] back to the rejoined zombie
                    info = streams.admin().describe_group("g3")
                    return any(m.client.endswith(f":{zombie.pid}")
                               and m.partitions == (StreamPartition("work", 1),)
                               for m in info.members)

                wait_until(zombie_holds_it_again, 20, "the rejoined zombie to hold work[1]")
                go.touch()
                assert zombie.wait(30) == 0, zombie.stderr()
                errors = zombie.fields("E")
                assert "COMMITTED" not in zombie.lines(), zombie.stderr()
                assert len(errors) == 1 and errors[0][:2] == ["commit", "FencedError"]
                info = streams.admin().describe_group("g3")
                assert {lag.partition: lag.committed for lag in info.partitions} == {
                    0: member.committed()[StreamPartition("work", 0)], 1: 100}
            finally:
                if zombie.proc.poll() is None:
                    zombie.signal(signal.SIGCONT)


# -- compaction ---------------------------------------------------------------------------------


def test_compaction_keeps_latest_value_per_key_and_drops_old_tombstones(
        log_url: str) -> None:
    rng = random.Random(SEED)
    tombstone_ms = 300
    keys = [f"k{i:02d}".encode() for i in range(40)]
    deleted = set(keys[:10])
    with millstream.open_streams(log_url) as streams:
        admin = streams.admin()
        admin.create_stream("table", partitions=2,
                            retention=Retention(compact=True, tombstone_age=tombstone_ms / 1000))
        latest: dict[bytes, tuple[millstream.Position, bytes | None]] = {}
        with streams.open_producer() as producer:
            for version in range(12):  # many batches, each updating every key
                order = keys[:]
                rng.shuffle(order)
                values = [b"%s=v%d" % (k, version) for k in order]
                positions = producer.send_batch("table", values, keys=order).wait(10)
                for k, v, pos in zip(order, values, positions, strict=True):
                    latest[k] = (pos, v)
            for k in sorted(deleted):
                latest[k] = (producer.send("table", None, key=k).wait(10), None)
            written_at = time.time_ns() // 1_000_000
            # a last update of the live keys, so no tombstone sits in a partition's newest
            # batch (compaction leaves that batch as written, like Kafka's active segment)
            live = keys[10:]
            values = [b"%s=final" % k for k in live]
            positions = producer.send_batch("table", values, keys=live).wait(10)
            assert {pos.partition for pos in positions} == {0, 1}
            for k, v, pos in zip(live, values, positions, strict=True):
                latest[k] = (pos, v)
        before = admin.describe_stream("table")
        assert before.records == 40 * 12 + 10 + 30

        def expected(with_tombstones: bool) -> list[tuple[int, int, bytes, bytes | None]]:
            return sorted((pos.partition, pos.offset, k, v) for k, (pos, v) in latest.items()
                          if v is not None or with_tombstones)

        def stored() -> list[tuple[int, int, bytes | None, bytes | None]]:
            return sorted((r.partition, r.offset, r.key, r.value)
                          for r in read_all(streams, "table"))

        # at once: the latest record per key is kept, tombstones too (they are young)
        assert admin.enforce_retention(force_compact=True) > 0
        assert stored() == expected(with_tombstones=True)
        # once tombstone_age has passed, the tombstones go as well
        wait_until(lambda: time.time_ns() // 1_000_000 > written_at + tombstone_ms + 50,
                   5, "the tombstones to age")
        admin.enforce_retention(force_compact=True)
        assert stored() == expected(with_tombstones=False)
        after = admin.describe_stream("table")
        assert [p.end for p in after.partitions] == [p.end for p in before.partitions]
        # compacting again changes nothing; the next append continues after the old end
        admin.enforce_retention(force_compact=True)
        assert stored() == expected(with_tombstones=False)
        with streams.open_producer() as producer:
            pos = producer.send("table", b"again", key=keys[0]).wait(10)
        assert pos.offset == before.partitions[pos.partition].end
        assert (pos.partition, pos.offset, keys[0], b"again") in stored()


def test_compaction_of_a_partitions_newest_records_leaves_readers_able_to_reach_the_end(
        log_url: str) -> None:
    with millstream.open_streams(log_url) as streams:
        admin = streams.admin()
        admin.create_stream("tail", retention=Retention(compact=True, tombstone_age=0))
        with streams.open_producer() as producer:
            for key, value in ((b"a", b"1"), (b"b", b"2"), (b"b", None)):
                producer.send("tail", value, key=key).wait(10)  # one batch each
        admin.enforce_retention(force_compact=True)
        assert admin.describe_stream("tail").partitions[0].end == 3
        with streams.open_consumer(group="reader") as consumer:
            consumer.subscribe(["tail"])
            got = wait_until(lambda: consumer.poll(timeout=0.1), 10, "the kept records")
            # b's first value is gone; the newest batch (b's tombstone) stays as written
            assert [(r.offset, r.key, r.value) for r in got] == [(0, b"a", b"1"),
                                                                  (2, b"b", None)]
            assert consumer.position(StreamPartition("tail", 0)) == 3
            assert consumer.lag() == {StreamPartition("tail", 0): 0}
            consumer.commit()
        assert admin.describe_group("reader").lag == 0
