"""On three brokers, a stream is usable the moment ``create_stream`` returns it.

Brokers learn of a new topic one after the other; until one has, it answers
UNKNOWN_TOPIC_OR_PART (ListOffsets) or leaves the topic out of its metadata. Before the
adapter waited that out, one create in five to ten of a 12-partition stream failed with
``NotFoundError``/``UnknownStreamError`` (found by ``millstream verify`` on three nodes)."""

from __future__ import annotations

import secrets

import pytest

import millstream
from millstream.errors import UnknownStreamError
from tests.support.kafka_cluster import KafkaCluster
from tests.support.waiting import wait_until

pytestmark = pytest.mark.kafka_cluster

ROUNDS = 20


def test_a_stream_is_described_and_deleted_at_once_after_creation(
        kafka_cluster3: KafkaCluster) -> None:
    with millstream.open_streams(f"kafka://{kafka_cluster3.bootstrap}") as streams:
        admin = streams.admin()
        for _ in range(ROUNDS):
            name = f"settling-{secrets.token_hex(4)}"
            info = admin.create_stream(name, 12)
            assert [(p.partition, p.start, p.end) for p in info.partitions] == [
                (i, 0, 0) for i in range(12)]
            assert admin.describe_stream(name).partition_count == 12
            admin.delete_stream(name)
        # a deletion, too, reaches the brokers one after the other (not waited out here)
        wait_until(lambda: not [s for s in admin.list_streams() if s.startswith("settling-")],
                   30, "every broker to forget the deleted streams")
        with pytest.raises(UnknownStreamError, match="'settling-never-created' does not exist"):
            admin.delete_stream("settling-never-created")
