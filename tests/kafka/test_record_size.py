"""Record sizes on a Kafka broker left at its defaults (``message.max.bytes`` 1,048,588).

Streams millstream creates take every record millstream accepts (the contract test
``test_oversized_records_are_refused_and_nothing_is_appended[kafka]`` proves the boundary). A
topic made by another tool keeps the broker's default, which counts Kafka's framing (72 bytes
for one record with a value only): there a record millstream accepts can still be refused, at
delivery, with an error that says which limit and what to change.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import millstream
from millstream import InvalidRequestError
from tests.support.kafka_cluster import BROKER_DEFAULT_MESSAGE_MAX_BYTES

pytestmark = pytest.mark.kafka

#: a batch of one record with no key or headers and a value of about 1 MiB: the 61-byte batch
#: header and 11 bytes of varints and flags (see kafka/test_broker_setup.py)
FRAMING = 72


def test_a_topic_made_elsewhere_refuses_at_delivery_what_its_default_limit_does_not_take(
        kafka_bootstrap: str) -> None:
    topic = f"foreign-{uuid.uuid4().hex[:8]}"
    client = AdminClient({"bootstrap.servers": kafka_bootstrap})
    client.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30)[topic].result(60)
    largest = BROKER_DEFAULT_MESSAGE_MAX_BYTES - FRAMING
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        producer = streams.open_producer()
        assert producer.send(topic, b"v" * largest).wait(60).offset == 0
        refused = producer.send(topic, b"v" * (largest + 1))
        with pytest.raises(millstream.DeliveryError) as info:
            refused.wait(60)
        assert isinstance(info.value.__cause__, InvalidRequestError)
        assert "MSG_SIZE_TOO_LARGE" in str(info.value)
        assert "raise max.message.bytes on the topic, or send smaller records" in \
            str(info.value)
        with pytest.raises(millstream.DeliveryError, match="1 records could not be stored"):
            producer.close()
        info_after = streams.admin().describe_stream(topic)
        assert info_after.partitions[0].end == 1  # nothing of the refused record
        streams.admin().delete_stream(topic)
