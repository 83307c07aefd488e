"""Writing services: plain functions declared on an ``App`` and run on streams.

Declare services on an ``App`` (and the tables they write, ``App.table``); run them with
``millstream run`` / ``millstream up`` (or a ``millstream.runtime.ServiceRunner`` in your own
process); send from async code with ``AsyncWriter``. A shadow version of a service
(``millstream run … --shadow v2``) uses the names ``shadow_group``, ``shadow_stream`` and
``shadow_table`` give.
"""

from __future__ import annotations

from millstream.service._app import App, Emit, RetryPolicy, ServiceSpec, StreamSpec
from millstream.service._context import Context, ReportedFailure
from millstream.service._shadow import shadow_group, shadow_stream, shadow_table
from millstream.service._table_output import TableOutput
from millstream.service._writer import AsyncWriter

__all__ = ["App", "AsyncWriter", "Context", "Emit", "ReportedFailure", "RetryPolicy",
           "ServiceSpec", "StreamSpec", "TableOutput", "shadow_group", "shadow_stream",
           "shadow_table"]
