"""Kafka answers a group-offsets commit per partition: a refused partition is raised.

``reset_offsets`` checks the stream before it commits, so Kafka refusing a partition needs the
stream to change between the check and the commit (deleted, or not there yet); the test drives
that commit step of the adapter directly, on a real broker. Before the fix the refusals were
dropped and the reset returned its offsets as if applied.
"""

from __future__ import annotations

import uuid

import pytest

import millstream
from millstream import NotFoundError, StreamPartition
from millstream.streams._kafka.admin import KafkaAdmin

pytestmark = pytest.mark.kafka


def test_a_partition_kafka_refuses_in_a_reset_is_raised_not_returned_as_applied(
        kafka_bootstrap: str) -> None:
    stream = f"reset-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        admin = streams.admin()
        assert isinstance(admin, KafkaAdmin)
        admin.create_stream(stream, 1)
        with pytest.raises(NotFoundError) as info:
            admin._alter_offsets(group, {StreamPartition(stream, 0): 0,
                                         StreamPartition(stream, 5): 0})
        assert str(info.value) == (
            f"stream {stream!r} has no partition 5 (it was deleted, or is not there yet); "
            f"group {group!r} was not reset on it")
        assert not info.value.retriable
        gone = f"gone-{uuid.uuid4().hex[:8]}"
        with pytest.raises(NotFoundError, match=rf"stream '{gone}' has no partition 0"):
            admin._alter_offsets(group, {StreamPartition(gone, 0): 0})
        admin.delete_stream(stream)
