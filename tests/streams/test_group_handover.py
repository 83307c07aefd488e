"""Embedded consumer groups: a partition handed to a member while that member is itself
handing partitions over is taken up, not left held and never polled.

Found by ``millstream verify``: with three members joining at once, partition 4 stayed with a
member that did not know it held it, and 727 records were never delivered. The race is reached
here through the fault point ``log.group.after_release``: member B has just released a
partition when member C releases one to B."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import millstream
from millstream.streams._base import Consumer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess

REPO = Path(__file__).resolve().parents[2]
GROUP = "handover"

#: Member B: polls until released from the fault point, then 3 s more; prints what it holds.
MEMBER_B = """
import os, sys, time, millstream
url, stream, release = sys.argv[1:4]
with millstream.open_streams(url) as streams:
    consumer = streams.open_consumer("handover", offset_reset="earliest")
    consumer.subscribe([stream])
    deadline = None
    while deadline is None or time.monotonic() < deadline:
        consumer.poll(100, 0.05)
        if deadline is None and os.path.exists(release):
            deadline = time.monotonic() + 3
    print("held", sorted(sp.partition for sp in consumer.assignment()), flush=True)
    consumer.close()
"""


def held(consumer: Consumer) -> list[int]:
    consumer.poll(100, 0.05)
    return sorted(sp.partition for sp in consumer.assignment())


def owners(streams: millstream.Streams) -> dict[int, str | None]:
    info = streams.admin().describe_group(GROUP)
    return {p.partition: p.owner for p in info.partitions}


def test_a_partition_handed_over_while_the_member_releases_one_is_taken_up(
        tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}"
    release = tmp_path / "release"
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("s", 3)
        with streams.open_producer() as producer:
            for p in range(3):
                for i in range(5):
                    producer.send("s", f"{p}:{i}".encode(), partition=p).wait()
        a = streams.open_consumer(GROUP, offset_reset="earliest")
        a.subscribe(["s"])
        wait_until(lambda: held(a) == [0, 1, 2], 10, "A to hold every partition")
        env = dict(os.environ, PYTHONPATH=str(REPO),
                   MILLSTREAM_FAULT_PAUSE="log.group.after_release",
                   MILLSTREAM_FAULT_PAUSE_FILE=str(release))
        b = subprocess.Popen([sys.executable, "-c", MEMBER_B, url, "s", str(release)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        c = streams.open_consumer(GROUP, offset_reset="earliest")
        try:
            # members sorted by join time, partition p to member p mod k: A 0 and 2, B 1
            wait_until(lambda: held(a) == [0, 2] and owners(streams)[1] is not None, 20,
                       "B to take partition 1 from A")
            c.subscribe(["s"])
            wait_until(lambda: held(a) == [0] and held(c) == [2], 20, "C to take partition 2")
            # A leaves: B is to hand 1 to C while C hands 2 to B
            a.close()
            wait_until(lambda: Path(f"{release}.reached").exists(), 20,
                       "B to stop right after releasing partition 1")
            wait_until(lambda: held(c) == [1], 20, "C to hand partition 2 to B, and take 1")
            release.touch()
            out, err = b.communicate(timeout=60)
        finally:
            release.touch()
            if b.poll() is None:
                b.kill()
                b.communicate()
            c.close()
        assert b.returncode == 0, err
        assert out.splitlines() == ["held [0, 2]"]  # 0 from A, which left; 2 from C
