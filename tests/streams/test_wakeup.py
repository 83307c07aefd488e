"""An idle consumer of the embedded log sleeps until a writer commits what it waits for.

Writers ring a doorbell after each commit and an idle consumer's poll waits on it (inotify on
Linux), so while nothing comes the consumer's thread does not wake — not for other streams'
records nor for its group's heartbeats — and a record from another process still arrives at
once, every time. Where notification is unavailable, or ``wakeup=poll`` is set, the poll
checks every ``IDLE_SLEEP_S`` instead. Wake-ups are counted as the polling thread's voluntary
context switches (each one a sleep that ended, or a wait for the GIL, which a loaded machine
makes a few more of).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import millstream
from millstream.records import StreamPartition
from millstream.streams._local import _wakeup
from millstream.streams._local._wakeup import RECHECK_S
from millstream.streams._local.consumer import IDLE_AFTER_S, IDLE_SLEEP_S

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="inotify and /proc are Linux's")

ROUND_TRIPS = 150
#: the round-trip test stretches the recheck (RECHECK_S, 1 s) to this in both processes, so
#: that a lost ring (a side asleep until its recheck) stands far apart from a thread a loaded
#: machine held up for a second or two
LONG_RECHECK_S = 10.0
#: a round trip whose ring was lost takes LONG_RECHECK_S; every one must be well under it
ROUND_TRIP_BOUND_S = LONG_RECHECK_S / 2


def wakeups() -> int:
    """Voluntary context switches of the calling thread so far."""
    status = Path(f"/proc/self/task/{threading.get_native_id()}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith("voluntary_ctxt_switches"))


def idle_poll_wakeups(url: str, seconds: float = 2.0) -> tuple[int, list[bytes]]:
    """How often an idle group member's poll woke in ``seconds`` while another stream got
    records and the group's heartbeats ran every 50 ms; and what the poll returned."""
    with millstream.open_streams(url) as streams:
        streams.admin().ensure_stream("quiet", 2)
        streams.admin().ensure_stream("busy", 1)
        stop = threading.Event()

        def others() -> None:  # records for another stream: not this consumer's concern
            with streams.open_producer() as producer:
                while not stop.wait(0.05):
                    producer.send("busy", b"not for you").wait(5)

        with streams.open_consumer(group="idle") as consumer:
            consumer.subscribe(["quiet"])
            assert consumer.poll(timeout=IDLE_AFTER_S + 0.2) == []  # idle from here on
            writer = threading.Thread(target=others)
            writer.start()
            try:
                before = wakeups()
                records = consumer.poll(timeout=seconds)
                woke = wakeups() - before
            finally:
                stop.set()
                writer.join(10)
    return woke, [r.value for r in records]


def test_an_idle_consumer_sleeps_through_heartbeats_and_other_streams_records(
        tmp_path: Path) -> None:
    woke, records = idle_poll_wakeups(f"local:{tmp_path}?heartbeat_interval_ms=50")
    assert records == []
    # 2 s: a recheck every RECHECK_S (1 s); polling would wake 1 / IDLE_SLEEP_S = 200 times a
    # second, and a wake per heartbeat or per record of "busy" would be 40 each. The slack
    # (12) is for waits on the GIL, which the heartbeat and writer threads hold now and then
    # and a loaded machine makes longer (10 wake-ups were seen under four busy processes)
    assert woke <= 2 / RECHECK_S + 12


def test_with_wakeup_poll_an_idle_consumer_checks_every_idle_sleep(tmp_path: Path) -> None:
    woke, records = idle_poll_wakeups(f"local:{tmp_path}?heartbeat_interval_ms=50&wakeup=poll")
    assert records == []
    # one sleep per check: at most 1 / IDLE_SLEEP_S a second (200), and polling, not waiting
    assert 2 * 20 <= woke <= 2 / IDLE_SLEEP_S + 40


def test_wakeup_is_auto_or_poll() -> None:
    with pytest.raises(millstream.ConfigError, match=r"wakeup='inotify'.*'auto'.*'poll'"):
        millstream.open_streams("local:?wakeup=inotify")


#: the other process: answers each "ping" on stream pongs with the same number on pings
#: after a pause of 0–3 ms (so some answers land between the test's look and its wait)
PINGER = textwrap.dedent("""
    import random, sys, time, millstream
    from millstream.streams._local import _wakeup
    url, n = sys.argv[1], int(sys.argv[2])
    _wakeup.RECHECK_S = float(sys.argv[3])
    with millstream.open_streams(url) as streams:
        producer = streams.open_producer()
        consumer = streams.open_consumer(group="pinger")
        consumer.subscribe(["pongs"])
        print("ready", flush=True)
        for i in range(n):
            time.sleep(random.random() * 0.003)
            producer.send("pings", str(i).encode()).wait(30)
            got = []
            while not got:
                got = consumer.poll(timeout=30)
            assert [r.value for r in got] == [str(i).encode()], got
        producer.close()
        consumer.close()
""")


def ping_pong(url: str) -> list[float]:
    """``ROUND_TRIPS`` exchanges with a process that writes a ping, waits for this process's
    pong, and pings again; the time from each pong to the next ping seen here."""
    with millstream.open_streams(url) as streams:
        streams.admin().ensure_stream("pings", 1)
        streams.admin().ensure_stream("pongs", 1)
        child = subprocess.Popen([sys.executable, "-c", PINGER, url, str(ROUND_TRIPS),
                                  str(_wakeup.RECHECK_S)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            trips = []
            with streams.open_consumer(group="ponger") as consumer, \
                    streams.open_producer() as producer:
                consumer.subscribe(["pings"])
                sent = time.monotonic()
                for i in range(ROUND_TRIPS):
                    records = []
                    while not records and time.monotonic() - sent < 30:
                        records = consumer.poll(timeout=30)
                    trips.append(time.monotonic() - sent)
                    assert [r.value for r in records] == [str(i).encode()]
                    assert consumer.position(StreamPartition("pings", 0)) == i + 1
                    producer.send("pongs", str(i).encode()).wait(30)
                    sent = time.monotonic()
            assert child.wait(60) == 0
        finally:
            child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
    return trips


@pytest.mark.parametrize("wakeup", ["auto", "poll"])
def test_records_from_another_process_wake_an_idle_consumer_every_time(
        tmp_path: Path, wakeup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wakeup, "RECHECK_S", LONG_RECHECK_S)  # here and in the pinger
    trips = ping_pong(f"local:{tmp_path}?durability=process&wakeup={wakeup}")
    assert len(trips) == ROUND_TRIPS
    # a lost ring would leave one side asleep until its recheck (LONG_RECHECK_S)
    assert max(trips[1:]) < ROUND_TRIP_BOUND_S, sorted(trips)[-5:]
    assert statistics.median(trips) < 0.05


def test_an_idle_member_hands_its_partitions_over_as_soon_as_another_joins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the recheck stretched from 1 s to 4 s (still under the first member's 5 s poll, which
    # the join must cut short), so that the bound, half of it, leaves a loaded machine 2 s
    recheck = 4.0
    monkeypatch.setattr(_wakeup, "RECHECK_S", recheck)
    url = f"local:{tmp_path}"
    with millstream.open_streams(url) as streams:
        streams.admin().ensure_stream("shared", 2)
        with streams.open_consumer(group="pair") as first:
            first.subscribe(["shared"])
            assert first.poll(timeout=IDLE_AFTER_S + 0.2) == []
            assert len(first.assignment()) == 2
            polling = threading.Thread(target=first.poll, kwargs={"timeout": 5.0})
            polling.start()  # idle, in a wait that the join must cut short
            try:
                time.sleep(0.2)
                with streams.open_consumer(group="pair") as second:
                    joined = time.monotonic()
                    second.subscribe(["shared"])
                    while not second.assignment() and time.monotonic() - joined < 10:
                        second.poll(timeout=0.05)
                    took = time.monotonic() - joined
                    assert second.assignment() == [StreamPartition("shared", 1)]
            finally:
                polling.join(10)
    # the first member released partition 1 when the join rang the group's bell, not at
    # its next recheck
    assert took < recheck / 2
