"""Kafka client options: parsing ``kafka://`` URLs, safe defaults, and unsafe settings made loud.

Everything in the URL query (or the ``options`` mapping) is a librdkafka property and passes
through unchanged, except the few ``millstream.*`` options below, which belong to this
adapter. Defaults are the safe ones: ``acks=all``, the idempotent producer and Kafka's
``murmur2_random`` partitioner (keys land where the Java client and the embedded log put them).
Weakening them is allowed, and logged as a warning each time a producer opens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from millstream.errors import ConfigError

__all__ = ["FRAMING_BYTES", "KafkaOptions", "parse_kafka_url"]

log = logging.getLogger(__name__)

#: What Kafka adds around one record's key + value + headers: the 61-byte batch header and a
#: few varints per record and header; 64 KiB covers thousands of headers. Streams created by
#: millstream take records of ``max_record_bytes`` plus this (topic ``max.message.bytes``), so
#: a record millstream accepts is never refused by the broker, whatever its defaults.
FRAMING_BYTES = 64 * 1024

PRODUCER_DEFAULTS = {
    "acks": "all",
    "enable.idempotence": "true",
    "partitioner": "murmur2_random",
    "linger.ms": "5",
}
CONSUMER_DEFAULTS = {
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    "partition.assignment.strategy": "range",
    "session.timeout.ms": "10000",
    "heartbeat.interval.ms": "3000",
    # librdkafka's 1,000 ms default pauses fetching for a second after every ~100k
    # prefetched messages, which a consumer reading a backlog measures as a stall
    "fetch.queue.backoff.ms": "20",
    # the end-of-partition event carries the fetch position past transaction markers, so a
    # reader of a transactional stream sees its position reach the end
    "enable.partition.eof": "true",
}
_UNSAFE: dict[str, Callable[[str], bool]] = {
    "acks": lambda v: v not in ("all", "-1"),
    "enable.idempotence": lambda v: v.lower() != "true",
    "partitioner": lambda v: v != "murmur2_random",
    # A delivery timeout shorter than librdkafka's default (300 s) can expire while batches
    # are in flight during a broker failover; librdkafka then bumps the idempotent producer's
    # epoch and may write in-flight records twice, acknowledged ones included (librdkafka
    # issue 4953; seen in tests/kafka/test_faults.py with 3 s). 0 means no timeout.
    "message.timeout.ms": lambda v: v.isdecimal() and 0 < int(v) < 300_000,
    "delivery.timeout.ms": lambda v: v.isdecimal() and 0 < int(v) < 300_000,
}
# Producer-only and consumer-only librdkafka properties, so one mapping can serve both.
_PRODUCER_ONLY = {"acks", "enable.idempotence", "partitioner", "linger.ms", "batch.size",
                  "batch.num.messages", "compression.type", "message.timeout.ms",
                  "delivery.timeout.ms", "retries", "queue.buffering.max.messages",
                  "queue.buffering.max.kbytes", "max.in.flight.requests.per.connection",
                  "request.timeout.ms", "transactional.id", "message.send.max.retries"}
_CONSUMER_ONLY = {"enable.auto.commit", "enable.auto.offset.store", "group.id",
                  "partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms",
                  "fetch.message.max.bytes", "max.poll.interval.ms", "auto.offset.reset",
                  "fetch.min.bytes", "fetch.wait.max.ms", "isolation.level", "group.instance.id",
                  "max.partition.fetch.bytes", "fetch.max.bytes", "queued.min.messages",
                  "enable.partition.eof", "group.protocol", "check.crcs",
                  "fetch.queue.backoff.ms"}


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """The adapter's own settings and the client properties for producers and consumers."""

    bootstrap: str
    client: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    max_record_bytes: int = 1024 * 1024
    replication_factor: int = -1

    def common(self) -> dict[str, str]:
        base = {k: v for k, v in self.client.items()
                if k not in _PRODUCER_ONLY and k not in _CONSUMER_ONLY}
        base["bootstrap.servers"] = self.bootstrap
        return base

    @property
    def batch_bytes(self) -> int:
        """The largest batch of one record of ``max_record_bytes``, framing included: the
        producer's ``message.max.bytes`` and the ``max.message.bytes`` of streams millstream
        creates."""
        return self.max_record_bytes + FRAMING_BYTES

    def producer(self) -> dict[str, str]:
        config = {**PRODUCER_DEFAULTS, "message.max.bytes": str(self.batch_bytes),
                  **self.common()}
        config.update({k: v for k, v in self.client.items() if k in _PRODUCER_ONLY})
        for name, unsafe in _UNSAFE.items():
            if name in config and unsafe(config[name]):
                log.warning("Kafka producer runs with %s=%s: acknowledged records may be lost, "
                            "duplicated or placed on other partitions than the embedded log "
                            "would choose (opted in by configuration)", name, config[name])
        return config

    def consumer(self) -> dict[str, str]:
        config = {**CONSUMER_DEFAULTS, "fetch.message.max.bytes": str(self.batch_bytes),
                  **self.common()}
        config.update({k: v for k, v in self.client.items() if k in _CONSUMER_ONLY})
        return config


_OWN = {"millstream.timeout_ms", "millstream.max_record_bytes", "millstream.replication_factor"}


def parse_kafka_url(url: str, options: Mapping[str, str] | None = None) -> KafkaOptions:
    """``kafka://host:9092[,host2:9092]?prop=value`` plus ``options`` → ``KafkaOptions``."""
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ConfigError(f"{url!r} is not a kafka:// URL")
    hosts = unquote(parts.netloc)
    if not hosts or any(not h.strip() or ":" not in h for h in hosts.split(",")):
        raise ConfigError(
            f"{url!r} names no brokers as host:port; write kafka://host:9092[,host2:9092]"
        )
    for host in hosts.split(","):
        port = host.rsplit(":", 1)[1]
        if not port.isdecimal() or not 0 < int(port) < 65536:
            raise ConfigError(f"broker {host!r} in {url!r} has no valid port (1-65535)")
    props: dict[str, str] = dict(parse_qsl(parts.query, keep_blank_values=True))
    props.update({str(k): str(v) for k, v in (options or {}).items()})
    own = {k: props.pop(k) for k in list(props) if k.startswith("millstream.")}
    unknown = set(own) - _OWN
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(sorted(unknown))} in {url!r}; millstream's own "
            f"Kafka options are {', '.join(sorted(_OWN))}"
        )
    if "bootstrap.servers" in props:
        raise ConfigError("give the brokers in the URL (kafka://host:port), not bootstrap.servers")

    def number(name: str, default: int) -> int:
        value = own.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} in {url!r} must be an integer") from None

    timeout_ms = number("millstream.timeout_ms", 30_000)
    if timeout_ms <= 0:
        raise ConfigError(f"millstream.timeout_ms={timeout_ms} must be positive")
    return KafkaOptions(
        bootstrap=hosts,
        client=props,
        timeout_s=timeout_ms / 1000,
        max_record_bytes=number("millstream.max_record_bytes", 1024 * 1024),
        replication_factor=number("millstream.replication_factor", -1),
    )
