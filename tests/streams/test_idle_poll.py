"""An idle consumer of the embedded log costs little CPU: after IDLE_AFTER_S without a record
its poll checks for new data every IDLE_SLEEP_S instead of every millisecond — and a record
that then arrives is still read within about that long."""

from __future__ import annotations

import threading
import time

import pytest

import millstream
import millstream.streams._local.consumer as consumer_module
from millstream.streams._local.consumer import IDLE_AFTER_S, IDLE_SLEEP_S


def _count_naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every sleep the consumer's poll takes from now on."""
    naps: list[float] = []
    real_sleep = time.sleep

    def nap(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            naps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(consumer_module.time, "sleep", nap)
    return naps


def test_an_idle_poll_sleeps_longer_and_still_sees_a_new_record_soon(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with millstream.open_streams() as streams:
        streams.admin().ensure_stream("quiet", 1)
        with streams.open_consumer(group="idle") as consumer:
            consumer.subscribe(["quiet"])
            assert consumer.poll(timeout=IDLE_AFTER_S + 0.2) == []  # idle from here on
            naps = _count_naps(monkeypatch)
            assert consumer.poll(timeout=1.0) == []
            # at most 1 / IDLE_SLEEP_S = 200 checks a second (at 1 ms it was 600–1,000)
            assert 20 <= len(naps) <= 1 / IDLE_SLEEP_S + 5
            assert min(naps[:-1]) == IDLE_SLEEP_S

            sent_at: list[float] = []

            def send_later() -> None:
                time.sleep(0.3)
                with streams.open_producer() as producer:
                    producer.send("quiet", b"wake up").wait(5)
                    sent_at.append(time.monotonic())

            monkeypatch.undo()
            sender = threading.Thread(target=send_later)
            sender.start()
            records = consumer.poll(timeout=5.0)
            received_at = time.monotonic()
            sender.join(5)
    assert [r.value for r in records] == [b"wake up"]
    assert received_at - sent_at[0] < IDLE_SLEEP_S + 0.05
