"""Writing services: plain functions declared on an ``App`` and run on streams.

Declare streams (``Stream`` handles), the tables services write (``App.table``) and the
services on an ``App``; run them with ``millstream run`` / ``millstream up`` (or a
``millstream.runtime.ServiceRunner`` in your own process); send typed records from a script
with ``app.open_writer(...)`` (a ``Writer``), from async code with ``AsyncWriter``. A shadow
version of a service (``millstream run … --shadow v2``) uses the names ``shadow_group``,
``shadow_stream`` and ``shadow_table`` give.

Windows (``App.windowed``): event-time windows (``Tumbling``, ``Hopping``, ``Counted`` ...)
aggregated per key (``Count``, ``Sum``, ... ``Reducer``), kept as a table of ``WindowRow``;
see docs/guides/windows.md. An ``Operator`` is a handler with runtime hooks.
"""

from __future__ import annotations

from millstream.service._aggregates import (
    Aggregate,
    Collect,
    Count,
    Latest,
    Max,
    Mean,
    Min,
    Reducer,
    Sum,
)
from millstream.service._app import App, Emit, Lifespan, RetryPolicy, ServiceSpec
from millstream.service._context import Context, ReportedFailure
from millstream.service._joins import Join, LateJoinRecord, UnmatchedJoinRecord
from millstream.service._operator import Operator, ShardOutput
from millstream.service._shadow import shadow_group, shadow_stream, shadow_table
from millstream.service._stream import Stream
from millstream.service._table_output import TableOutput
from millstream.service._window_rows import LateRecord, WindowRow
from millstream.service._windowed import WindowedService
from millstream.service._windows import Counted, Hopping, Session, Sliding, Tumbling
from millstream.service._writer import AsyncWriter, Writer

__all__ = ["Aggregate", "App", "AsyncWriter", "Collect", "Context", "Count", "Counted", "Emit",
           "Hopping", "Join", "LateJoinRecord", "LateRecord", "Latest", "Lifespan", "Max", "Mean",
           "Min", "Operator", "Reducer", "ReportedFailure", "RetryPolicy", "ServiceSpec",
           "Session", "ShardOutput", "Sliding", "Stream", "Sum", "TableOutput", "Tumbling",
           "UnmatchedJoinRecord", "WindowRow", "WindowedService", "Writer", "shadow_group",
           "shadow_stream", "shadow_table"]
