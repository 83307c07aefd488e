"""K1 (/work/shared/notes/reliability.md): the safe producer settings are the default; weakening
them is allowed, and loud — a WARNING naming the setting each time a producer opens.

No broker is needed: a producer is created (confluent-kafka validates its configuration) but
never sends, so the bootstrap address is a port nothing listens on.
"""

from __future__ import annotations

import logging

import pytest

import millstream
from millstream import InvalidRequestError
from millstream.errors import ConfigError
from millstream.streams._kafka import KafkaOptions, parse_kafka_url

NOWHERE = "kafka://127.0.0.1:1"
LOGGER = "millstream.streams._kafka.options"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


def test_the_default_producer_is_acks_all_idempotent_and_murmur2(
        caplog: pytest.LogCaptureFixture) -> None:
    config = parse_kafka_url(NOWHERE).producer()
    assert config["acks"] == "all"
    assert config["enable.idempotence"] == "true"
    assert config["partitioner"] == "murmur2_random"
    assert config == KafkaOptions(bootstrap="127.0.0.1:1").producer()
    with caplog.at_level(logging.WARNING, logger=LOGGER), \
            millstream.open_streams(NOWHERE) as streams:
        streams.open_producer().close(timeout=1)
    assert _warnings(caplog) == []  # the safe default is quiet


@pytest.mark.parametrize(("query", "named"), [
    ("acks=1&enable.idempotence=false", ["acks=1", "enable.idempotence=false"]),
    ("acks=0&enable.idempotence=false", ["acks=0", "enable.idempotence=false"]),
    ("enable.idempotence=false", ["enable.idempotence=false"]),
    ("enable.idempotence=False", ["enable.idempotence=False"]),
    ("partitioner=consistent_random", ["partitioner=consistent_random"]),
    # shorter than librdkafka's 300 s: can expire in flight, and the idempotent producer's
    # epoch bump may then write records twice (tests/kafka/test_faults.py, impatient)
    ("message.timeout.ms=3000", ["message.timeout.ms=3000"]),
    ("delivery.timeout.ms=60000", ["delivery.timeout.ms=60000"]),
])
def test_an_unsafe_setting_is_honoured_and_warned_about_at_every_open(
        caplog: pytest.LogCaptureFixture, query: str, named: list[str]) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER), \
            millstream.open_streams(f"{NOWHERE}?{query}") as streams:
        for _ in range(2):
            producer = streams.open_producer()
            producer.close(timeout=1)
    warned = _warnings(caplog)
    assert len(warned) == 2 * len(named), warned  # once per setting per open
    for setting in named:
        assert sum(setting in w for w in warned) == 2, (setting, warned)
    assert all("may be lost" in w for w in warned)
    config = parse_kafka_url(f"{NOWHERE}?{query}").producer()  # what the producer was given
    for setting in named:
        name, value = setting.split("=")
        assert config[name] == value


def test_an_unsafe_setting_from_the_options_mapping_is_warned_about_too(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER), millstream.open_streams(
            NOWHERE, options={"enable.idempotence": "false", "acks": "1"}) as streams:
        streams.open_producer().close(timeout=1)
    warned = _warnings(caplog)
    assert any("acks=1" in w for w in warned) and \
        any("enable.idempotence=false" in w for w in warned), warned


def test_acks_1_alone_is_refused_clearly_because_idempotence_needs_acks_all(
        caplog: pytest.LogCaptureFixture) -> None:
    """librdkafka refuses acks≠all with the idempotent producer: the opt-out takes both."""
    with caplog.at_level(logging.WARNING, logger=LOGGER), \
            millstream.open_streams(f"{NOWHERE}?acks=1") as streams, \
            pytest.raises(InvalidRequestError, match=r"acks.*idempotence"):
        streams.open_producer()
    assert any("acks=1" in w for w in _warnings(caplog))


@pytest.mark.parametrize("query", ["acks=-1", "enable.idempotence=TRUE",
                                   "message.timeout.ms=300000", "message.timeout.ms=0",
                                   "delivery.timeout.ms=600000"])
def test_settings_as_safe_as_the_default_are_quiet(
        caplog: pytest.LogCaptureFixture, query: str) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER), \
            millstream.open_streams(f"{NOWHERE}?{query}") as streams:
        streams.open_producer().close(timeout=1)
    assert _warnings(caplog) == []


def test_a_port_or_timeout_in_digits_int_cannot_read_is_not_a_crash() -> None:
    """``"²".isdigit()`` is True but ``int("²")`` fails: such a port is refused naming it;
    such a timeout is not a number the safety check reads, and goes on to librdkafka, which
    refuses it when a producer opens."""
    with pytest.raises(ConfigError, match=r"broker '127.0.0.1:²' in .* has no valid port"):
        parse_kafka_url("kafka://127.0.0.1:²")
    options = parse_kafka_url(NOWHERE + "?message.timeout.ms=²")
    assert options.producer()["message.timeout.ms"] == "²"
