"""Streams: named, partitioned, durable logs of records, and the Protocols to use them.

``open_streams(url)`` opens a backend by URL — ``local:`` (the default) is the embedded log,
``kafka://host:9092`` Kafka — and ``check_streams(url)`` checks that it works (``millstream
doctor``); both go through one table of backends. A ``Streams`` gives a ``Producer``, a
``Consumer`` and an ``Admin``; every backend passes the same contract suite
(``tests/contracts/``).
"""

from __future__ import annotations

from millstream.streams._base import (
    Admin,
    BatchHandle,
    Consumer,
    GroupInfo,
    MemberInfo,
    OffsetReset,
    PartitionInfo,
    PartitionLag,
    Producer,
    RebalanceCallback,
    RecordBatch,
    Retention,
    SendHandle,
    StreamInfo,
    Streams,
    SupportsTransactions,
    TransactionalProducer,
)
from millstream.streams._open import check_streams, open_streams

__all__ = [
    "Admin",
    "BatchHandle",
    "Consumer",
    "GroupInfo",
    "MemberInfo",
    "OffsetReset",
    "PartitionInfo",
    "PartitionLag",
    "Producer",
    "RebalanceCallback",
    "RecordBatch",
    "Retention",
    "SendHandle",
    "StreamInfo",
    "Streams",
    "SupportsTransactions",
    "TransactionalProducer",
    "check_streams",
    "open_streams",
]
