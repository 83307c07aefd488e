"""No broker answering: every call fails within ``millstream.timeout_ms`` plus a little, with a
millstream error that says to check the brokers — never a hang, never a confluent_kafka type.
(A broker that dies under a consumer that already reads is in ``test_broker_restart.py``.)

Two kinds of silence: a port nothing listens on (connection refused at once), and a listener
that accepts connections and never says a word (requests time out). Neither needs a broker.
The last test (marker ``kafka``) breaks the start-offset lookups of a group assignment on a
real broker: the consumer must report that as a retriable millstream error from ``poll`` and
then read every record, none dropped.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

import millstream
from millstream import (
    DeliveryError,
    InvalidRequestError,
    MillstreamError,
    OperationTimeoutError,
    StreamPartition,
    UnavailableError,
)
from millstream.streams._kafka.consumer import KafkaConsumer

TIMEOUT_S = 0.5
SLACK_S = 3.0  # what a call may take beyond millstream.timeout_ms
CLEAR = (UnavailableError, OperationTimeoutError, DeliveryError)


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """``host:port`` of a listener that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()
    for conn in accepted:
        conn.close()


@pytest.fixture(params=["refused", "silent"])
def dead_url(request: pytest.FixtureRequest) -> str:
    address = "127.0.0.1:1" if request.param == "refused" \
        else request.getfixturevalue("silent_broker")
    return f"kafka://{address}?millstream.timeout_ms={TIMEOUT_S * 1000:.0f}"


def _fails_clearly(what: str, call: Callable[[], Any]) -> MillstreamError:
    """Run ``call``; it must raise a clear, retriable millstream error within the bound."""
    t0 = time.monotonic()
    try:
        result = call()
    except BaseException as exc:  # anything at all: a foreign type is the failure
        elapsed = time.monotonic() - t0
        assert type(exc).__module__ == "millstream.errors", \
            f"{what} let {type(exc).__module__}.{type(exc).__name__} escape: {exc!r}"
        assert isinstance(exc, CLEAR), f"{what} raised {exc!r}"
        assert exc.retriable, f"{what}: {exc!r} is not marked retriable"
        assert "broker" in str(exc).lower(), f"{what}: {exc} does not say what to check"
        assert elapsed < TIMEOUT_S + SLACK_S, f"{what} took {elapsed:.1f} s to fail"
        return exc
    raise AssertionError(f"{what} returned {result!r} with no broker to talk to")


def test_every_call_fails_fast_and_clearly_when_no_broker_answers(dead_url: str) -> None:
    streams = millstream.open_streams(dead_url)  # opening talks to no one yet
    admin = streams.admin()
    seen: dict[str, MillstreamError] = {}
    for what, call in [
        ("list_streams", admin.list_streams),
        ("describe_stream", lambda: admin.describe_stream("s")),
        ("create_stream", lambda: admin.create_stream("s", 3)),
        ("ensure_stream", lambda: admin.ensure_stream("s")),
        ("delete_stream", lambda: admin.delete_stream("s")),
        ("list_groups", admin.list_groups),
        ("describe_group", lambda: admin.describe_group("g")),
        ("reset_offsets", lambda: admin.reset_offsets("g", "s", "earliest")),
    ]:
        seen[what] = _fails_clearly(what, call)

    producer = streams.open_producer()
    seen["send"] = _fails_clearly("send", lambda: producer.send("s", b"v", key=b"k"))
    seen["send_batch"] = _fails_clearly("send_batch", lambda: producer.send_batch("s", [b"v"]))
    t0 = time.monotonic()
    producer.flush()  # nothing was accepted, so nothing is owed
    producer.close()
    assert time.monotonic() - t0 < SLACK_S

    for group in ("g", None):
        consumer = streams.open_consumer(group)
        seen[f"subscribe({group})"] = _fails_clearly(
            f"subscribe with group {group}", lambda c=consumer: c.subscribe(["s"]))
        with pytest.raises(InvalidRequestError, match="poll before subscribe"):
            consumer.poll(timeout=0.1)
        if group is not None:
            seen["committed"] = _fails_clearly(
                "committed", lambda c=consumer: c.committed([StreamPartition("s", 0)]))
        t0 = time.monotonic()
        consumer.close()
        assert time.monotonic() - t0 < SLACK_S
    streams.close()
    print({what: type(exc).__name__ for what, exc in seen.items()})


@pytest.mark.kafka
def test_an_assignment_whose_start_cannot_be_found_is_retried_not_dropped(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookups of where assigned partitions start (committed offsets, watermarks) fail
    for 1.5 s, longer than millstream.timeout_ms (1 s): ``poll`` raises a retriable
    UnavailableError (before the fix, a bare confluent_kafka object escaped from inside the
    rebalance callback and the partitions were fetched but their records dropped); the next
    polls place the partitions and read every record from offset 0."""
    url = f"kafka://{kafka_bootstrap}?millstream.timeout_ms=1000"
    stream, group = f"outage-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream(stream, 2)
        with streams.open_producer() as producer:
            for i in range(100):
                producer.send(stream, str(i).encode(), key=str(i).encode())

        real = KafkaConsumer._starts
        broken_until: list[float] = []

        def flaky(self: KafkaConsumer, tps: Any, timeout: float) -> Any:
            if not broken_until:
                broken_until.append(time.monotonic() + 1.5)
            if time.monotonic() < broken_until[0]:
                time.sleep(min(timeout, 0.2))
                raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker went away"))
            return real(self, tps, timeout)

        monkeypatch.setattr(KafkaConsumer, "_starts", flaky)
        errors: list[MillstreamError] = []
        got: dict[tuple[int, int], bytes | None] = {}
        with streams.open_consumer(group) as consumer:
            consumer.subscribe([stream])
            deadline = time.monotonic() + 60
            while len(got) < 100:
                assert time.monotonic() < deadline, f"read {len(got)} of 100; errors {errors}"
                try:
                    for r in consumer.poll(100, timeout=0.2):
                        assert (r.partition, r.offset) not in got
                        got[(r.partition, r.offset)] = r.value
                except MillstreamError as exc:
                    errors.append(exc)
            consumer.commit()
            assert consumer.assignment() == [StreamPartition(stream, 0),
                                             StreamPartition(stream, 1)]
    assert broken_until, "the assignment never looked its partitions up"
    assert errors and all(isinstance(e, UnavailableError) and e.retriable for e in errors), \
        errors
    assert sorted(v or b"" for v in got.values()) == sorted(str(i).encode() for i in range(100))
    for p in (0, 1):
        offsets = sorted(o for q, o in got if q == p)
        assert offsets == list(range(len(offsets))), f"partition {p} skipped offsets"
