"""Observing a running system: the health of each service's instances read from
``millstream.metrics``, the same in Prometheus's text format, and an app's topology (its
services and streams) as a model, as text or as SVG.

* the health model (``_health``): ``Snapshot``, ``ServiceView``, ``InstanceView``, made from
  records (``millstream.runtime.MetricsRecord``);
* reading the metrics stream (``_reader``): ``MetricsView`` (a consumer), ``MetricsTable``;
* Prometheus (``_prometheus``): ``prometheus_text``, ``MetricsServer``;
* the topology (``_topology``): ``topology(app)``, ``topology_from_metrics(records)``,
  ``Topology``, ``Node``, ``Edge``;
* its layout (``_layout``, by grandalf) and drawing (``_svg``, ``_drawing``): ``to_text``,
  ``to_svg``.
"""

from __future__ import annotations

from millstream.observe._drawing import to_svg, to_text
from millstream.observe._health import (
    Health,
    InstanceStatus,
    InstanceView,
    ServiceView,
    Snapshot,
)
from millstream.observe._prometheus import CONTENT_TYPE, MetricsServer, prometheus_text
from millstream.observe._reader import MetricsTable, MetricsView
from millstream.observe._topology import Edge, Node, Topology, topology, topology_from_metrics

__all__ = ["CONTENT_TYPE", "Edge", "Health", "InstanceStatus", "InstanceView", "MetricsServer",
           "MetricsTable", "MetricsView", "Node", "ServiceView", "Snapshot", "Topology",
           "prometheus_text", "to_svg", "to_text", "topology", "topology_from_metrics"]
