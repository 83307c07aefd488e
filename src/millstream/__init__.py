"""millstream: small Python services connected by named, durable, replayable streams.

The public API, in one place::

    import millstream

    with millstream.open_streams() as streams:           # local: by default
        streams.admin().ensure_stream("orders", partitions=4)
        with streams.open_producer() as producer:
            producer.send("orders", b'{"id": 1}', key=b"customer-7").wait()
        with streams.open_consumer(group="billing") as consumer:
            consumer.subscribe(["orders"])
            for record in consumer.poll(timeout=1.0):
                ...
            consumer.commit()
"""

from __future__ import annotations

from millstream.config import PlatformConfig, load_config
from millstream.errors import (
    AlreadyExistsError,
    ClosedError,
    ConfigError,
    CorruptDataError,
    DeliveryError,
    FencedError,
    InvalidRequestError,
    MillstreamError,
    MissingDependencyError,
    NotFoundError,
    OffsetOutOfRangeError,
    OperationTimeoutError,
    RecordTooLargeError,
    UnavailableError,
    UnknownStreamError,
)
from millstream.records import Headers, Position, Record, StreamPartition
from millstream.streams import open_streams
from millstream.streams._base import (
    Admin,
    BatchHandle,
    Consumer,
    GroupInfo,
    PartitionInfo,
    Producer,
    Retention,
    SendHandle,
    StreamInfo,
    Streams,
)

__version__ = "0.1.0"

__all__ = [
    "Admin",
    "AlreadyExistsError",
    "BatchHandle",
    "ClosedError",
    "ConfigError",
    "Consumer",
    "CorruptDataError",
    "DeliveryError",
    "FencedError",
    "GroupInfo",
    "Headers",
    "InvalidRequestError",
    "MillstreamError",
    "MissingDependencyError",
    "NotFoundError",
    "OffsetOutOfRangeError",
    "OperationTimeoutError",
    "PartitionInfo",
    "PlatformConfig",
    "Position",
    "Producer",
    "Record",
    "RecordTooLargeError",
    "Retention",
    "SendHandle",
    "StreamInfo",
    "StreamPartition",
    "Streams",
    "UnavailableError",
    "UnknownStreamError",
    "__version__",
    "load_config",
    "open_streams",
]
