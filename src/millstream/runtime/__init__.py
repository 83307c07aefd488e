"""The runtime: the loop that runs one service's instance — polling, handling, delivering
outputs, committing offsets and checkpointing state — and what it writes about itself
(metrics, exception records)."""

from __future__ import annotations

from millstream.runtime._clock import SYSTEM_CLOCK, Clock, SystemClock
from millstream.runtime._failures import ExceptionRecord, parse_exception
from millstream.runtime._metrics import Statistics
from millstream.runtime._runner import ServiceRunner
from millstream.runtime._state import CheckpointStore

__all__ = ["SYSTEM_CLOCK", "CheckpointStore", "Clock", "ExceptionRecord", "ServiceRunner",
           "Statistics", "SystemClock", "parse_exception"]
