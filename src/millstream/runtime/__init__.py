"""The runtime: the loop that runs one service's instance — polling, handling, delivering
outputs, committing offsets and checkpointing state — and what it writes about itself: a
``MetricsRecord`` per instance and interval to ``METRICS_STREAM``, an ``ExceptionRecord`` per
input given up on to ``EXCEPTIONS_STREAM``; creating the streams an app runs on
(``ensure_app_streams``); running an app's services in threads of one process
(``ServiceThreads``)."""

from __future__ import annotations

from millstream._wellknown import EXCEPTIONS as EXCEPTIONS_STREAM
from millstream._wellknown import METRICS as METRICS_STREAM
from millstream.runtime._clock import SYSTEM_CLOCK, Clock, SystemClock
from millstream.runtime._failures import ExceptionRecord, parse_exception
from millstream.runtime._metrics import Statistics
from millstream.runtime._metrics_record import (
    Counters,
    MetricsRecord,
    ProcessingSummary,
    ProcessingTotal,
    RecordedHistogram,
)
from millstream.runtime._runner import ServiceRunner
from millstream.runtime._state import CheckpointStore
from millstream.runtime._streams import ensure_app_streams
from millstream.runtime._threads import ServiceError, ServiceThreads

__all__ = ["EXCEPTIONS_STREAM", "METRICS_STREAM", "SYSTEM_CLOCK", "CheckpointStore", "Clock",
           "Counters", "ExceptionRecord", "MetricsRecord", "ProcessingSummary",
           "ProcessingTotal", "RecordedHistogram", "ServiceError", "ServiceRunner",
           "ServiceThreads", "Statistics", "SystemClock", "ensure_app_streams",
           "parse_exception"]
