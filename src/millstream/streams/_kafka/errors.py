"""Translating confluent-kafka exceptions and error codes into millstream errors.

Nothing from ``confluent_kafka`` leaves the adapter: every call that can raise goes through
``translate`` (``raise translate(exc, doing) from exc``). Retriable Kafka errors become
``UnavailableError`` (retriable) unless a more precise category applies.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from millstream.errors import (
    AlreadyExistsError,
    DeliveryError,
    FencedError,
    InvalidRequestError,
    MillstreamError,
    NotFoundError,
    OffsetOutOfRangeError,
    OperationTimeoutError,
    UnavailableError,
)

__all__ = ["error_of", "translate"]

_UNAVAILABLE = {
    KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE,
    KafkaError.BROKER_NOT_AVAILABLE, KafkaError.NETWORK_EXCEPTION,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._WAIT_COORD,
}
_FENCED = {
    KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.FENCED_INSTANCE_ID,
    KafkaError._ASSIGNMENT_LOST, KafkaError.STALE_MEMBER_EPOCH, KafkaError.FENCED_MEMBER_EPOCH,
}
_TIMEOUT = {KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT_QUEUE}
_NOT_FOUND = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
              KafkaError._UNKNOWN_PARTITION, KafkaError.GROUP_ID_NOT_FOUND}
_INVALID = {KafkaError.INVALID_PARTITIONS, KafkaError.INVALID_REPLICATION_FACTOR,
            KafkaError.INVALID_CONFIG, KafkaError.INVALID_REQUEST, KafkaError.POLICY_VIOLATION,
            KafkaError.NON_EMPTY_GROUP, KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
            KafkaError.RECORD_LIST_TOO_LARGE, KafkaError._INVALID_ARG}


def error_of(err: KafkaError, doing: str) -> MillstreamError:
    """The millstream error for one ``KafkaError`` (from a callback or an exception)."""
    code = err.code()
    text = f"Kafka error while {doing}: {err.name()}: {err.str()}"
    result: MillstreamError
    if code in _UNAVAILABLE:
        result = UnavailableError(text + " — check the brokers are up and reachable")
    elif code in _FENCED:
        result = FencedError(text + " — the group moved on; poll again for the new assignment")
    elif code in _TIMEOUT:
        result = OperationTimeoutError(text + " — check the brokers are up and reachable, or "
                                       "raise millstream.timeout_ms")
    elif code == KafkaError.TOPIC_ALREADY_EXISTS:
        result = AlreadyExistsError(text)
    elif code in _NOT_FOUND:
        result = NotFoundError(text)
    elif code in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET):
        result = OffsetOutOfRangeError(text)
    elif code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
        result = InvalidRequestError(
            text + " — the broker refused it as larger than the stream's max.message.bytes "
            "(the broker's default is 1,048,588 bytes with Kafka's framing; streams millstream "
            "creates take millstream.max_record_bytes plus 64 KiB): raise max.message.bytes on "
            "the topic, or send smaller records")
    elif code in _INVALID:
        result = InvalidRequestError(text)
    elif code == KafkaError._MSG_TIMED_OUT:
        result = DeliveryError(text + " — the record was not acknowledged in time; it may "
                               "still have been stored (sending it again may duplicate it)")
    else:
        result = DeliveryError(text) if "produc" in doing else UnavailableError(text)
    if err.retriable() and not isinstance(result, UnavailableError | OperationTimeoutError):
        result.retriable = True
    return result


def translate(exc: Exception, doing: str) -> MillstreamError:
    """The millstream error for an exception raised by confluent-kafka."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return error_of(exc.args[0], doing)
    if isinstance(exc, BufferError):
        return UnavailableError(f"the Kafka producer's queue stayed full while {doing}")
    return UnavailableError(f"Kafka client failed while {doing}: {exc!r}")
