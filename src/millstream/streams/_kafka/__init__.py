"""The Kafka backend (``kafka://host:9092[,host2:9092]?property=value`` URLs).

Speaks to Apache Kafka, and anything with its protocol (Redpanda, MSK, HPE Data Fabric
Streams), through confluent-kafka — the only Kafka client millstream uses. Client properties
pass through from the URL query or an ``options`` mapping (see ``options.py`` for the safe
defaults and millstream's own ``millstream.*`` options). Needs the ``kafka`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping

from millstream.errors import (
    ClosedError,
    MillstreamError,
    MissingDependencyError,
    UnavailableError,
)
from millstream.streams._base import OffsetReset

try:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("the Kafka backend (kafka:// URLs)", "kafka") from exc

from millstream.streams._kafka.admin import KafkaAdmin
from millstream.streams._kafka.consumer import KafkaConsumer
from millstream.streams._kafka.errors import translate
from millstream.streams._kafka.options import KafkaOptions, parse_kafka_url
from millstream.streams._kafka.producer import KafkaProducer
from millstream.streams._kafka.transaction import KafkaTransactionalProducer

__all__ = ["KafkaOptions", "KafkaStreams", "check", "parse_kafka_url"]


class KafkaStreams:
    """An open Kafka backend; see ``millstream.streams._base.Streams``."""

    def __init__(self, url: str, options: Mapping[str, str] | None = None) -> None:
        self._url = url
        self.options = parse_kafka_url(url, options)
        try:
            config: dict[str, str | int | float | bool] = dict(self.options.common())
            self._admin: AdminClient | None = AdminClient(config)
        except KafkaException as exc:
            raise translate(exc, "connecting to Kafka") from exc

    @property
    def url(self) -> str:
        return self._url

    def admin(self) -> KafkaAdmin:
        if self._admin is None:
            raise ClosedError(f"the streams handle for {self._url} is closed")
        return KafkaAdmin(self._admin, self.options)

    def open_producer(self) -> KafkaProducer:
        return KafkaProducer(self.options)

    def open_consumer(self, group: str | None = None, *,
                      offset_reset: OffsetReset = "earliest") -> KafkaConsumer:
        return KafkaConsumer(self.options, group, offset_reset)

    def open_transactional_producer(self, transactional_id: str) -> KafkaTransactionalProducer:
        return KafkaTransactionalProducer(self.options, transactional_id)

    def close(self) -> None:
        self._admin = None

    def __enter__(self) -> KafkaStreams:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check(url: str, options: Mapping[str, str] | None = None) -> str:
    """List the cluster's streams (``millstream doctor``): proves a broker answers within
    ``millstream.timeout_ms`` and accepts the client's settings. A broker that does not
    answer raises a retriable error that names the brokers tried."""
    streams = KafkaStreams(url, options)
    try:
        names = streams.admin().list_streams()
    except MillstreamError as exc:
        if not exc.retriable:
            raise
        raise UnavailableError(
            f"no Kafka broker answered at {streams.options.bootstrap} within "
            f"{streams.options.timeout_s:g} s: check that the brokers are up and that the "
            f"streams URL names them ({exc})") from exc
    finally:
        streams.close()
    return f"brokers {streams.options.bootstrap} answer, {len(names)} stream(s)"
