"""millstream: small Python services connected by named, durable, replayable streams.

The top level opens the platform's three stores — ``open_streams``, ``open_files``,
``open_tables``, each by URL (default: the configured one, see ``millstream.config``) — and
holds the types of the streams API, the record types (``millstream.records``) and every error
(``millstream.errors``). The rest lives in subpackages, each exporting its public names from
its ``__init__``: ``millstream.streams``, ``.files``, ``.tables``, ``.service`` (writing
services), ``.runtime`` (running them), ``.operations`` (what the CLI drives), ``.observe``
(health, metrics, topology), ``.testing`` (the test kit), and the public modules
``millstream.codecs`` and ``millstream.faults``. A module or package whose name starts with
``_`` is internal; ``millstream.cli`` is the command line, not an API::

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

import typing as _typing  # as _typing: the namespace holds the public names only

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
from millstream.streams import (
    Admin,
    BatchHandle,
    Consumer,
    GroupInfo,
    PartitionInfo,
    Producer,
    RecordBatch,
    Retention,
    SendHandle,
    StreamInfo,
    Streams,
    open_streams,
)

if _typing.TYPE_CHECKING:
    from millstream.files import open_files
    from millstream.tables import open_tables

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
    "RecordBatch",
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
    "open_files",
    "open_streams",
    "open_tables",
]


def __getattr__(name: str) -> _typing.Any:
    """``open_files`` and ``open_tables``, imported at first use: the file store and tables
    bring pydantic and their backends' machinery, which a program that only uses streams
    need not load (``import millstream`` stays about 45 ms, not 185)."""
    if name == "open_files":
        from millstream.files import open_files

        return open_files
    if name == "open_tables":
        from millstream.tables import open_tables

        return open_tables
    raise AttributeError(f"module 'millstream' has no attribute {name!r}")
