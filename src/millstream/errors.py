"""Every error millstream raises, in one tree.

Catch the category you can act on; each error also subclasses the builtin it resembles, so
code that already catches ``ValueError`` or ``LookupError`` keeps working::

    MillstreamError                      root; ``retriable`` says whether trying again may help
    ├── ConfigError (ValueError)         a bad URL, option, configuration file or credentials
    │   └── MissingDependencyError (ImportError)   an optional extra is not installed
    ├── InvalidRequestError (ValueError) a call's arguments are wrong: names, offsets, sizes
    │   ├── RecordTooLargeError          a record exceeds the size limit
    │   └── OffsetOutOfRangeError        an offset below the retained start or past the end
    ├── NotFoundError (LookupError)      something named does not exist
    │   └── UnknownStreamError
    ├── AlreadyExistsError               creating something that is already there
    ├── FencedError                      a consumer commits for a partition it no longer owns
    ├── DeliveryError                    a producer could not store records it was given
    ├── CorruptDataError                 stored data fails its checks; names where
    ├── UnavailableError (ConnectionError)   a backend cannot be reached (retriable)
    ├── OperationTimeoutError (TimeoutError)  a bounded wait ran out (retriable)
    └── ClosedError                      the object was used after ``close()``

Adapters translate their client library's exceptions into these at the module boundary
(``raise ... from exc``); no foreign exception type leaves an adapter.

A public module; every error is also at the top level (``millstream.NotFoundError``).
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "ClosedError",
    "ConfigError",
    "CorruptDataError",
    "DeliveryError",
    "FencedError",
    "InvalidRequestError",
    "MillstreamError",
    "MissingDependencyError",
    "NotFoundError",
    "OffsetOutOfRangeError",
    "OperationTimeoutError",
    "RecordTooLargeError",
    "UnavailableError",
    "UnknownStreamError",
]


class MillstreamError(Exception):
    """Raised for every failure millstream reports; the root of the tree."""

    retriable: bool = False


class ConfigError(MillstreamError, ValueError):
    """Raised when a URL, an option, a configuration file or the credentials are not valid."""


class MissingDependencyError(ConfigError, ImportError):
    """Raised when a backend needs an optional extra that is not installed."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(
            f"{what} needs the optional dependency group {extra!r}; "
            f"install it with: pip install 'millstream[{extra}]'"
        )
        self.extra = extra


class InvalidRequestError(MillstreamError, ValueError):
    """Raised when a call's arguments are wrong (a bad name, offset, size or mode)."""


class RecordTooLargeError(InvalidRequestError):
    """Raised when a record's key + value + headers exceed the size limit; nothing is sent."""

    def __init__(self, size: int, limit: int, stream: str) -> None:
        super().__init__(
            f"record of {size} bytes (key + value + headers) for stream {stream!r} exceeds the "
            f"limit of {limit} bytes; send smaller records, raise max_record_bytes, or store "
            "the payload in the file store and send a reference"
        )
        self.size = size
        self.limit = limit


class OffsetOutOfRangeError(InvalidRequestError):
    """Raised when reading or seeking outside the retained range of a partition."""


class NotFoundError(MillstreamError, LookupError):
    """Raised when a named thing (a stream, a group) does not exist."""


class UnknownStreamError(NotFoundError):
    """Raised when a stream is used that does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"stream {name!r} does not exist; create it first "
            f"(`millstream streams create {name}` or admin.create_stream({name!r}))"
        )
        self.name = name


class AlreadyExistsError(MillstreamError):
    """Raised when creating something that already exists."""


class FencedError(MillstreamError):
    """Raised when a consumer commits for partitions its group has moved to another member."""


class DeliveryError(MillstreamError):
    """Raised when a producer could not durably store records; they were not acknowledged.

    ``undelivered`` is how many records that is, when the producer knows (``flush`` and
    ``close``), else None.
    """

    def __init__(self, message: str, undelivered: int | None = None) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class CorruptDataError(MillstreamError):
    """Raised when stored data fails its integrity checks; the message names where."""


class UnavailableError(MillstreamError, ConnectionError):
    """Raised when a backend cannot be reached or is busy beyond its timeout."""

    retriable = True


class OperationTimeoutError(MillstreamError, TimeoutError):
    """Raised when a bounded wait (flush, wait for acknowledgement) runs out."""

    retriable = True


class ClosedError(MillstreamError):
    """Raised when a producer, consumer or handle is used after it was closed."""
