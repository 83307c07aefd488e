"""Observing a running system: the health of each service's instances read from
``millstream.metrics``, the same in Prometheus's text format, and an app's topology (its
services and streams) as text or SVG."""

from __future__ import annotations

from millstream.observe._health import (
    InstanceStatus,
    InstanceView,
    MetricsTable,
    MetricsView,
    ServiceView,
    Snapshot,
    prometheus_text,
)
from millstream.observe._topology import Edge, Node, Topology, to_svg, to_text, topology

__all__ = ["Edge", "InstanceStatus", "InstanceView", "MetricsTable", "MetricsView", "Node",
           "ServiceView", "Snapshot", "Topology", "prometheus_text", "to_svg", "to_text",
           "topology"]
