"""K2 and R1 on Kafka (/work/shared/notes/reliability.md): a broker SIGKILLed mid-production.

A 3-node KRaft cluster (fixture ``kafka_cluster3``); a stream with replication factor 3 made
through millstream's admin (``millstream.replication_factor=3``) whose ``min.insync.replicas``
is the cluster's default, 2. A producer child (``tests.support.kafka_worker produce``) sends
100,000 keyed records (keys 0..999, value ``KEY:SEQ`` with a per-key sequence number) through
millstream's producer and prints, per record, what its handle said: acknowledged at a
position, or failed with an error. Two group members (``kafka_worker consume``) read and
commit. After the first acknowledgements one broker — the leader of some partition — is
SIGKILLed. Then:

* the producer accounted for every record (acknowledged + reported failed = sent): nothing is
  hidden; the failed ones are printed in the test output with whether they were stored anyway;
* every acknowledged record was consumed by the group, and stored at exactly the position its
  handle reported;
* per key, sequence numbers increase with the offset (no reordering, no duplicate writes: the
  idempotent producer), and in each member's consumption order they only go back for records
  consumed more than once (at-least-once redelivery);
* a fresh reader from offset 0 sees the same history as the group (R1);
* the killed broker, restarted, is back in the ISR of every partition within ``HEAL_S``.

Two producer settings: ``patient`` (librdkafka's 300 s delivery timeout outlasts the failover,
so every record should be acknowledged) and ``impatient`` (``message.timeout.ms=3000``: the
records of partitions led by the killed broker time out — they must be reported failed; a
few may be stored anyway, which only a timeout may do, never a definite failure). With the
short timeout, in-flight requests to the live brokers time out too (they wait for the dead
follower to leave the ISR), librdkafka bumps the idempotent producer's epoch and re-sends
them: records, acknowledged ones included, can be stored twice (librdkafka issue 4953; 1,488
acknowledged records in one run). That run asserts the adapter warned about the setting and
lists the duplicates; the default (patient) run allows none. A third, ``keyless``, is patient
and sends without keys: the producer then matches delivery reports to handles by order on a
shared callback, and every handle must still report the exact position its record got (the
per-key checks do not apply).

``MILLSTREAM_KAFKA_FAULT_RUNS`` (default 1; ``make reliability`` sets 5) repeats the whole
scenario, each run on a new stream and killing the leader of a different partition.
"""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

import millstream
from tests.support.kafka_cluster import KafkaCluster
from tests.support.kafka_worker import KafkaChild
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.kafka_cluster, pytest.mark.multiprocess]

RUNS = int(os.environ.get("MILLSTREAM_KAFKA_FAULT_RUNS", "1"))
RECORDS = 100_000
KEYS = 1000
PARTITIONS = 6
CONSUMERS = 2
KILL_AFTER_ACKS = 10_000  # the kill lands while most records are still to be sent
HEAL_S = 90.0  # restarted broker back in every ISR (includes its JVM start on a busy machine)
# Kafka's minimum classic-group session timeout is 6 s; heartbeats every second.
GROUP_OPTIONS = "session.timeout.ms=6000&heartbeat.interval.ms=1000"
# The producer's delivery timeout: librdkafka's default (300 s) outlasts the failover, so
# every record is delivered; 3 s does not, so records led by the killed broker fail — and
# must be reported failed, never hidden (some may be stored anyway: at-least-once).
# "keyless": patient, records sent without a key — the producer's shared-callback path, whose
# handles are matched to delivery reports by order (no per-key checks then)
DELIVERY = {"patient": "", "impatient": "&message.timeout.ms=3000", "keyless": ""}

Pos = tuple[int, int]  # partition, offset
Rec = tuple[int, int]  # key, seq


def _isr(admin: AdminClient, stream: str) -> list[int] | str:
    """The ISR size of every partition of ``stream``, by partition (describe_topics); or why
    not (a request sent to the broker just killed can time out: ask again)."""
    try:
        desc = admin.describe_topics(TopicCollection([stream]),
                                     request_timeout=5)[stream].result(10)
    except (KafkaException, TimeoutError) as exc:
        # it waits for the "controller" this client cached, which may be the broker killed:
        # fresh metadata names a live one
        with contextlib.suppress(KafkaException):
            admin.list_topics(timeout=5)
        return f"describe_topics failed: {exc!r}"
    return [len(p.isr) for p in sorted(desc.partitions, key=lambda p: p.id)]


def _wait_isr(admin: AdminClient, stream: str, size: int, timeout: float, what: str) -> None:
    """Wait until every partition's ISR has ``size`` replicas; fail showing what was seen."""
    seen: list[list[int] | str] = []

    def check() -> bool:
        seen.append(_isr(admin, stream))
        return seen[-1] == [size] * PARTITIONS

    try:
        wait_until(check, timeout, what, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; ISR sizes last seen: {seen[-3:]}") from None


def _leaders(admin: AdminClient, stream: str) -> dict[int, int]:
    desc = admin.describe_topics(TopicCollection([stream]))[stream].result(15)
    return {p.id: p.leader.id for p in desc.partitions}


def _key_ranges(recs: set[Rec]) -> str:
    """``{(0, 3), (0, 4), (0, 5), (0, 9), (1, 2)}`` → ``"0:3-5,9 1:2"``: records as key:seqs."""
    by_key: dict[int, list[int]] = defaultdict(list)
    for key, seq in sorted(recs):
        by_key[key].append(seq)
    out = []
    for key, seqs in by_key.items():
        runs: list[list[int]] = []
        for seq in seqs:
            if runs and seq == runs[-1][-1] + 1:
                runs[-1].append(seq)
            else:
                runs.append([seq])
        out.append(f"{key}:" + ",".join(
            f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs))
    return " ".join(out)


def _value(text: str) -> Rec:
    key, seq = text.split(":")
    return int(key), int(seq)


def _read_from_zero(streams: millstream.Streams, stream: str) -> dict[Pos, Rec]:
    """A fresh, groupless reader from offset 0 to each partition's current end."""
    ends = {p.partition: p.end for p in streams.admin().describe_stream(stream).partitions}
    out: dict[Pos, Rec] = {}
    with streams.open_consumer() as reader:
        reader.subscribe([stream])
        for sp in reader.assignment():
            reader.seek(sp, 0)
        deadline = time.monotonic() + 60
        while any(reader.position(sp) < ends[sp.partition] for sp in reader.assignment()):
            assert time.monotonic() < deadline, "the fresh reader did not reach the end in 60 s"
            for r in reader.poll(5000, timeout=0.5):
                assert (r.partition, r.offset) not in out, f"fresh reader got {r} twice"
                out[(r.partition, r.offset)] = _value((r.value or b"").decode())
    return out


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("delivery", DELIVERY)
def test_every_acknowledged_record_survives_a_killed_broker(
        kafka_cluster3: KafkaCluster, delivery: str, run: int, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cluster = kafka_cluster3
    for i, node in enumerate(cluster.nodes):  # a failed earlier run may have left one down
        if not node.running():
            cluster.restart_node(i)
    cluster.wait_ready(120)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap, "log_level": 0})
    url = f"kafka://{cluster.bootstrap}?millstream.replication_factor=3&{GROUP_OPTIONS}"
    stream, group = f"k2-{uuid.uuid4().hex[:8]}", f"k2g-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()

    with millstream.open_streams(url) as streams:
        streams.admin().create_stream(stream, PARTITIONS)
        desc = admin.describe_topics(TopicCollection([stream]))[stream].result(15)
        assert [len(p.replicas) for p in desc.partitions] == [3] * PARTITIONS
        resource = ConfigResource(ResourceType.TOPIC, stream)
        configs = admin.describe_configs([resource])[resource].result(15)
        assert configs["min.insync.replicas"].value == "2"  # the cluster default, not set
        _wait_isr(admin, stream, 3, 60, "every replica in sync")

        consumers = [KafkaChild("consume", url, stream, group, out=tmp_path / f"consumer{i}.out")
                     for i in range(CONSUMERS)]
        producer = KafkaChild("produce", url + DELIVERY[delivery], stream, str(RECORDS),
                              str(KEYS), *(["keyless"] if delivery == "keyless" else []),
                              out=tmp_path / "producer.out")
        children = [producer, *consumers]
        try:
            for c in consumers:
                c.wait_for("joined", timeout=60)
            producer.wait_for("ack", KILL_AFTER_ACKS, timeout=60)
            victim_partition = run % PARTITIONS
            victim = _leaders(admin, stream)[victim_partition] - 1  # node.id is index + 1
            t_kill = time.monotonic()
            cluster.kill_node(victim)
            acks_at_kill = producer.count("ack")

            assert producer.wait(120) == 0, f"producer failed:\n{producer.stderr()[-3000:]}"
            t_produced = time.monotonic()
            done = producer.fields("done")
            assert done, f"the producer printed no summary:\n{producer.stderr()[-3000:]}"
            # ISR without the killed broker: Kafka noticed, and min ISR 2 kept accepting.
            _wait_isr(admin, stream, 2, 60, "the killed broker to leave every ISR")
            # The handle opened before the kill still reaches a live controller (it used to
            # wait for the dead one it had cached until millstream.timeout_ms, every time).
            t_admin = time.monotonic()
            streams.admin().create_stream(f"{stream}-x", 1)
            streams.admin().delete_stream(f"{stream}-x")
            assert time.monotonic() - t_admin < 15

            def group_done() -> bool:
                info = streams.admin().describe_group(group)
                ends = {p.partition: p.end for p in info.partitions}
                return len(ends) == PARTITIONS and all(
                    p.committed == p.end for p in info.partitions)

            wait_until(group_done, 90, "the group to commit every partition's end")
            for c in consumers:
                c.signal(signal.SIGTERM)
            for c in consumers:
                assert c.wait(60) == 0, f"consumer {c.name} failed:\n{c.stderr()[-3000:]}"
            t_consumed = time.monotonic()
            fresh = _read_from_zero(streams, stream)
        finally:
            for c in children:
                c.__exit__(None, None, None)

    # --- what the producer reported ------------------------------------------------------------
    acked: dict[Rec, Pos] = {}
    for key, seq, p, o in producer.fields("ack"):
        acked[(int(key), int(seq))] = (int(p), int(o))
    failed: dict[Rec, str] = {}
    for tag in ("fail", "send-error"):
        for line in producer.texts(tag):
            key, seq, reason = line.split(" ", 2)
            failed[(int(key), int(seq))] = f"{tag}: {reason}"
    sent, n_acked, n_failed = map(int, done[0])
    assert (sent, n_acked, n_failed) == (RECORDS, len(acked), len(failed))
    everything = {(i % KEYS, i // KEYS) for i in range(RECORDS)}
    assert set(acked) | set(failed) == everything and not set(acked) & set(failed), \
        "the producer's handles did not account for every record sent"
    flush_close = producer.texts("flush") + producer.texts("close")
    if failed:  # flush() or close() must say so too
        assert any("DeliveryError" in line for line in flush_close), flush_close
    else:
        assert flush_close == ["ok", "ok"], flush_close

    # --- what the group consumed -----------------------------------------------------------------
    at: dict[Pos, Rec] = {}  # every stored record the group returned, by position
    times: Counter[Pos] = Counter()
    consumed: list[list[tuple[Pos, Rec]]] = []
    errors: list[str] = []
    for c in consumers:
        mine = []
        for p, o, value in c.fields("rec"):
            pos, rec = (int(p), int(o)), _value(value)
            assert at.setdefault(pos, rec) == rec, f"{pos} returned as {at[pos]} and as {rec}"
            times[pos] += 1
            mine.append((pos, rec))
        consumed.append(mine)
        errors += [f"{c.name}: {e}" for e in c.texts("err")]
    group_recs = set(at.values())
    missing = sorted(r for r in acked if r not in group_recs)
    assert not missing, f"{len(missing)} acknowledged records never consumed: {missing[:20]}"
    wrong = sorted(r for r, pos in acked.items() if at.get(pos) != r)
    assert not wrong, f"{len(wrong)} acknowledged records not at their acknowledged position: " \
        f"{[(r, acked[r], at.get(acked[r])) for r in wrong[:10]]}"
    not_retriable = [e for e in errors if e.split(" ")[2] != "1" and "FencedError" not in e]
    assert not not_retriable, f"non-retriable errors in the consumers: {not_retriable[:10]}"

    # per key in what is stored: one partition, sequence numbers increase with the offset
    stored = Counter(at.values())
    dup_writes = {r for r, n in stored.items() if n > 1}
    keyed = delivery != "keyless"
    if delivery in ("patient", "keyless"):  # the idempotent producer, default delivery timeout
        assert not dup_writes, f"{len(dup_writes)} records stored twice " \
            f"({len(dup_writes & set(acked))} acknowledged): {_key_ranges(dup_writes)[:500]}"
    else:  # librdkafka's epoch bump after in-flight timeouts (issue 4953): loud, not silent
        assert "message.timeout.ms=3000" in producer.stderr(), "no warning about the timeout"
    first: dict[Rec, Pos] = {}
    for pos, rec in sorted(at.items()):
        first.setdefault(rec, pos)
    by_key: dict[int, list[tuple[Pos, int]]] = defaultdict(list)
    for (key, seq), pos in first.items():  # a record written twice: its first copy
        by_key[key].append((pos, seq))
    for key, entries in by_key.items() if keyed else ():
        assert len({p for (p, _), _ in entries}) == 1, f"key {key} is on several partitions"
        seqs = [seq for _, seq in sorted(entries)]
        assert seqs == sorted(seqs), f"key {key} stored out of order: {seqs}"
    # per key in each member's consumption order: back only for a record consumed again (or
    # the second copy of a record written twice)
    redelivered = sum(n - 1 for n in times.values())
    for c, mine in zip(consumers, consumed, strict=True) if keyed else ():
        last: dict[int, int] = {}
        for pos, (key, seq) in mine:
            if key in last and seq <= last[key]:
                assert times[pos] > 1 or (key, seq) in dup_writes, \
                    f"{c.name} read key {key} seq {seq} at {pos} after seq {last[key]}"
            last[key] = seq

    # --- R1: a fresh reader from offset 0 sees the group's history -------------------------------
    unseen = sorted(r for r, pos in acked.items() if fresh.get(pos) != r)
    assert not unseen, f"the fresh reader misses {len(unseen)} acknowledged records: {unseen[:10]}"
    assert fresh == at, (
        f"the fresh reader and the group disagree: {len(set(fresh) ^ set(at))} positions differ, "
        f"e.g. {sorted(set(fresh) ^ set(at))[:10]}")

    # --- the restarted broker catches up -------------------------------------------------------
    cluster.restart_node(victim)
    t_restart = time.monotonic()
    _wait_isr(admin, stream, 3, HEAL_S,
              f"node {victim + 1}, restarted, back in the ISR of every partition of {stream}")
    t_healed = time.monotonic()
    cluster.wait_ready(60)

    stored_anyway = {r for r in failed if r in group_recs}
    certain = sorted(r for r in stored_anyway if "_MSG_TIMED_OUT" not in failed[r])
    assert not certain, f"records reported failed for sure were stored: " \
        f"{[(r, failed[r]) for r in certain[:5]]}"
    with capsys.disabled():
        print(f"\nK2 {delivery} run {run + 1}/{RUNS}: stream {stream}, killed node {victim + 1} "
              f"(leader of partition {victim_partition}) at {acks_at_kill} acks; "
              f"{len(acked)} acked, {len(failed)} reported failed "
              f"({len(stored_anyway)} of them stored anyway), {len(at)} stored, "
              f"{len(dup_writes)} stored twice ({len(dup_writes & set(acked))} acked), "
              f"{redelivered} redelivered, {len(errors)} consumer errors; "
              f"produce {t_produced - t0:.1f} s (kill at {t_kill - t0:.1f} s), "
              f"group done {t_consumed - t0:.1f} s, ISR healed {t_healed - t_restart:.1f} s "
              f"after restart")
        for reason, n in Counter(failed.values()).most_common():
            print(f"  {n} failed with: {reason.replace(stream, 'STREAM')}")
        for label, recs in (("failed, not stored", set(failed) - stored_anyway),
                            ("failed, stored anyway", stored_anyway),
                            ("stored twice", dup_writes)):
            if recs:
                print(textwrap.fill(_key_ranges(recs), 100, initial_indent=f"  {label}: ",
                                    subsequent_indent="    "))
        for e in errors[:20]:
            print(f"  consumer error: {e}")
