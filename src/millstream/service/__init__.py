"""Writing services: plain functions declared on an ``App`` and run on streams.

Declare services on an ``App``; run them with ``millstream run`` / ``millstream up`` (or a
``millstream.runtime.ServiceRunner`` in your own process); send from async code with
``AsyncWriter``.
"""

from __future__ import annotations

from millstream.service._app import App, Emit, RetryPolicy, ServiceSpec, StreamSpec
from millstream.service._context import Context, ReportedFailure
from millstream.service._writer import AsyncWriter

__all__ = ["App", "AsyncWriter", "Context", "Emit", "ReportedFailure", "RetryPolicy",
           "ServiceSpec", "StreamSpec"]
