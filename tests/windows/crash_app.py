"""The windowed app the crash tests run as ``millstream run tests.windows.crash_app:app
counts`` in child processes: hopping sums of clicks, exactly-once, names suffixed with
``$WINDOWS_SUFFIX`` (so runs sharing a Kafka broker do not meet).

Each record's event time is read through a function that takes 0.3 ms (``$WINDOWS_SLOW_S``),
so a run lasts long enough for many commits (and a fault point's N-th visit comes mid-run).
No idle timeout: the test's event times are in 1970 and the runs take wall-clock time.
"""

from __future__ import annotations

import os
import time

from millstream.service import App, Hopping, Sum, WindowRow
from tests.windows.apps import Click

SUFFIX = os.environ.get("WINDOWS_SUFFIX", "")
PROCESSING = os.environ.get("WINDOWS_PROCESSING", "exactly-once")

#: the window settings, in ms, as the reference model takes them
SETTINGS = {"kind": "hopping", "size": 30_000, "every": 10_000, "aggregate": "Sum",
            "lateness": 5_000, "grace": 5_000, "retention": 60_000}


#: seconds each record's event time takes to read (``$WINDOWS_SLOW_S``, default 0.3 ms)
SLOW_S = float(os.environ.get("WINDOWS_SLOW_S", "0.0003"))


def slow_time(click: Click) -> float:
    time.sleep(SLOW_S)
    return click.at


app = App(f"wcrash{SUFFIX}", partitions=2, processing=PROCESSING)  # type: ignore[arg-type]
clicks = app.stream(f"clicks{SUFFIX}", Click)
results = app.stream(f"results{SUFFIX}", WindowRow)
counts = app.windowed("counts", clicks, window=Hopping(30, 10), aggregate=Sum("amount"),
                      time=slow_time, lateness=5, grace=5, retention=60, idle_timeout=None,
                      output=results, table=f"counts{SUFFIX}", max_batch=50,
                      commit_interval=0.05, checkpoint_interval=0.3)
