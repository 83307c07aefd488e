"""Services: plain functions run on streams with the universal microarchitecture.

Declare them on an ``App`` (``millstream.service.app``), run them with ``ServiceRunner`` or
the ``millstream run`` / ``millstream up`` commands.
"""

from __future__ import annotations

from millstream.service.app import App, Emit, RetryPolicy, ServiceSpec, StreamSpec
from millstream.service.context import Context
from millstream.service.failures import ReportedFailure
from millstream.service.metrics import Statistics
from millstream.service.runner import ServiceRunner

__all__ = ["App", "Context", "Emit", "ReportedFailure", "RetryPolicy", "ServiceRunner",
           "ServiceSpec", "Statistics", "StreamSpec"]
