"""The test Kafka itself (tests/support/kafka_cluster.py), checked with confluent_kafka alone.

Not a millstream test: it proves the broker the Kafka backend is tested against is real and
configured as documented — records flow through a group, topics come and go, the record size
limit is Kafka's default (and a topic can raise it, as millstream's streams do), and with three
nodes acks=all survives a killed node.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.support.kafka_cluster import (
    BROKER_DEFAULT_MESSAGE_MAX_BYTES,
    MAX_RECORD_BYTES,
    STREAM_MAX_MESSAGE_BYTES,
    KafkaCluster,
)
from tests.support.waiting import wait_until


def _topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _create(admin: AdminClient, name: str, partitions: int = 1, rf: int = 1,
            config: dict[str, str] | None = None) -> None:
    admin.create_topics([NewTopic(name, partitions, rf, config=config or {})],
                        operation_timeout=30)[name].result(60)


def _produce(bootstrap: str, topic: str, values: list[bytes], **config: object
             ) -> list[KafkaError | None]:
    """Produce ``values`` (key = value) and flush; the delivery error of each, in order."""
    errors: dict[int, KafkaError | None] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for i, value in enumerate(values):
        producer.produce(topic, value, key=value[:16],
                         on_delivery=lambda err, _msg, i=i: errors.__setitem__(i, err))
        producer.poll(0)
    assert producer.flush(120) == 0, "records still queued after 120 s"
    return [errors[i] for i in range(len(values))]


def _consume(bootstrap: str, topic: str, n: int, group: str | None = None,
             timeout: float = 60.0) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or _topic("g"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    out: list[Message] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < n:
            assert time.monotonic() < deadline, f"read {len(out)} of {n} records"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
        if group is not None:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return out


@pytest.mark.kafka
def test_the_broker_is_configured_as_documented(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    broker = str(min(admin.list_topics(timeout=10).brokers))
    resource = ConfigResource(ConfigResource.Type.BROKER, broker)
    configs = admin.describe_configs([resource])[resource].result(30)
    # Kafka's default, as on a broker nobody configured
    assert configs["message.max.bytes"].value == str(BROKER_DEFAULT_MESSAGE_MAX_BYTES) \
        == "1048588"
    assert configs["auto.create.topics.enable"].value == "false"
    assert configs["group.initial.rebalance.delay.ms"].value == "0"


@pytest.mark.kafka
def test_a_thousand_records_go_through_a_consumer_group(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = _topic()
    _create(admin, topic, partitions=3)
    values = [f"record-{i:04d}".encode() for i in range(1000)]
    assert _produce(kafka_bootstrap, topic, values, acks="all") == [None] * 1000

    group = _topic("g")
    msgs = _consume(kafka_bootstrap, topic, 1000, group=group)
    assert sorted(m.value() for m in msgs) == values
    for p in range(3):  # per partition: offsets dense and in order
        offsets = [m.offset() for m in msgs if m.partition() == p]
        assert offsets == list(range(len(offsets)))
    # the group's commit landed in __consumer_offsets: a new member of it reads nothing more
    _produce(kafka_bootstrap, topic, [b"record-after"])
    assert [m.value() for m in _consume(kafka_bootstrap, topic, 1, group=group)] == \
        [b"record-after"]


@pytest.mark.kafka
def test_topics_are_created_and_deleted_and_never_made_on_the_fly(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = _topic()
    _create(admin, topic, partitions=4)
    # created on the controller; the broker's metadata cache learns of it a moment later
    wait_until(lambda: topic in admin.list_topics(timeout=10).topics, 30,
               "the created topic to reach the metadata")
    assert len(admin.list_topics(timeout=10).topics[topic].partitions) == 4
    admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
    wait_until(lambda: topic not in admin.list_topics(timeout=10).topics, 30,
               "the deleted topic to leave the metadata")

    missing = _topic("missing")
    errors = _produce(kafka_bootstrap, missing, [b"x"], **{"message.timeout.ms": 3000})
    assert errors[0] is not None  # auto.create.topics.enable=false: nothing made the topic
    assert missing not in admin.list_topics(timeout=10).topics


#: Kafka's framing of a batch of one record with no key, no headers and a value of about
#: 1 MiB: the 61-byte batch header, and the record's length (3-byte varint), attributes,
#: timestamp delta, offset delta, key length, value length (3 bytes) and header count.
FRAMING_OF_ONE_VALUE = 61 + 3 + 1 + 1 + 1 + 1 + 3 + 1


@pytest.mark.kafka
def test_the_broker_takes_batches_up_to_its_limit_framing_included(
        kafka_bootstrap: str) -> None:
    """A topic with the broker's default takes a record whose batch is exactly 1,048,588
    bytes and refuses one byte more; a topic with ``max.message.bytes`` 1,114,112 (what
    millstream sets on the streams it creates) takes 1 MiB of key + value + headers and
    refuses 1 MiB + 100 KiB."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    default, raised = _topic(), _topic()
    _create(admin, default)
    _create(admin, raised, config={"max.message.bytes": str(STREAM_MAX_MESSAGE_BYTES)})
    # The client's own limit (librdkafka message.max.bytes, default 1_000_000) is raised far
    # above the broker's, so any refusal below comes from the broker.
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 4 << 20,
                         "compression.type": "none"})
    results: list[KafkaError | None] = []

    def send(topic: str, value: bytes, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> KafkaError | None:
        producer.produce(topic, value, key=key, headers=headers,
                         on_delivery=lambda err, _msg: results.append(err))
        assert producer.flush(60) == 0
        return results[-1]

    largest = BROKER_DEFAULT_MESSAGE_MAX_BYTES - FRAMING_OF_ONE_VALUE
    assert send(default, os.urandom(largest)) is None
    err = send(default, os.urandom(largest + 1))
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err

    whole_value = os.urandom(MAX_RECORD_BYTES)
    assert send(raised, whole_value) is None
    key, headers = os.urandom(1024), [("h1", os.urandom(2048)), ("h2", os.urandom(3000))]
    rest = MAX_RECORD_BYTES - len(key) - sum(len(k) + len(v) for k, v in headers)
    assert send(raised, os.urandom(rest), key=key, headers=headers) is None  # 1 MiB in all
    err = send(raised, os.urandom(MAX_RECORD_BYTES + 100 * 1024))
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    # and the records read back whole with the consumer's default fetch sizes
    assert [len(m.value() or b"") for m in _consume(kafka_bootstrap, default, 1)] == [largest]
    values = [m.value() for m in _consume(kafka_bootstrap, raised, 2)]
    assert values[0] == whole_value and len(values[1] or b"") == rest


@pytest.mark.kafka_cluster
def test_acks_all_survives_a_killed_node_and_the_isr_heals(kafka_cluster3: KafkaCluster) -> None:
    bootstrap = kafka_cluster3.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = _topic()
    _create(admin, topic, partitions=3, rf=3)

    def isr_sizes() -> list[int]:
        parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
        return [len(parts[p].isrs) for p in sorted(parts)]

    wait_until(lambda: isr_sizes() == [3, 3, 3], 60, "every replica in sync")
    before = [f"before-{i}".encode() for i in range(100)]
    assert _produce(bootstrap, topic, before, acks="all") == [None] * 100

    victim = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader - 1
    kafka_cluster3.kill_node(victim)  # the leader of partition 0
    during = [f"during-{i}".encode() for i in range(100)]
    assert _produce(bootstrap, topic, during, acks="all",
                    **{"message.timeout.ms": 90_000}) == [None] * 100
    assert all(n == 2 for n in isr_sizes())  # min.insync.replicas=2 was enough

    kafka_cluster3.restart_node(victim)
    kafka_cluster3.wait_ready(120)
    wait_until(lambda: isr_sizes() == [3, 3, 3], 120, "the restarted node back in every ISR")
    got = sorted(m.value() for m in _consume(bootstrap, topic, 200))
    assert got == sorted(before + during)
