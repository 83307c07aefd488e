"""``topology_from_metrics``: the topology of a running system from the metrics records its
services write — the same services, streams, stores and edges as the app's declarations give
(without what only the declarations know), for every app that reports, shadows left out."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from millstream.observe import Edge, Node, topology, topology_from_metrics
from millstream.runtime import MetricsRecord
from millstream.service import App
from millstream.testing import TestPlatform


class Order(BaseModel):
    id: int


def shop() -> App:
    app = App("shop")
    orders = app.stream("orders", Order)
    app.stream("refunds", Order)
    checked = app.stream("checked", Order)
    totals = app.table("totals", Order, key="id")

    @app.service(inputs=[orders, "refunds"], outputs=[checked, totals], uses=["files"])
    def check(value: Order) -> Order:
        return value

    @app.service(inputs=[checked], outputs={"audit": Order}, stateful=True)
    def audit(value: Order) -> Order:
        return value

    return app


def record(group: str, time_ms: int, **fields: object) -> MetricsRecord:
    return MetricsRecord.model_validate({"group": group, "instance": "h:1",
                                         "time_ms": time_ms, **fields})


def test_the_running_apps_topology_is_the_one_its_declarations_give() -> None:
    app = shop()
    with TestPlatform(app) as platform:
        platform.send_many("orders", [Order(id=i) for i in range(3)])
        platform.run_until_idle("check")
        platform.run_until_idle("audit")
        records = platform.metrics()
    running = topology_from_metrics(records)
    declared = topology(app)
    assert running.app == "shop"
    assert Counter(running.edges) == Counter(declared.edges)  # services by name, not declared
    assert [(n.kind, n.name) for n in running.nodes] == [
        ("service", "audit"), ("service", "check"), ("stream", "checked"),
        ("stream", "audit"), ("stream", "orders"), ("stream", "refunds"),
        ("stream", "totals"), ("store", "files"), ("store", "tables:totals")]
    assert {n.id: n.layer for n in running.nodes} == {n.id: n.layer for n in declared.nodes}
    # the platform streams only when asked: every service writes metrics and exceptions
    full = topology_from_metrics(records, include_platform=True)
    assert set(full.edges) - set(running.edges) == {
        Edge("output", f"service:{s}", f"stream:millstream.{p}")
        for s in ("check", "audit") for p in ("metrics", "exceptions")}
    assert full.node("stream:millstream.metrics") == Node(
        "stream", "millstream.metrics", 4, platform=True)


def test_each_groups_latest_record_decides_and_shadows_are_left_out() -> None:
    records = [
        record("shop.check", 2000, app="shop", service="check", inputs=["orders"],
               outputs=["checked"]),
        record("shop.check", 1000, app="shop", service="check", inputs=["old"]),
        record("shop.check.shadow.v2", 3000, app="shop", service="check", version="v2",
               inputs=["orders"], outputs=["checked.shadow.v2"]),
        # another app with a service of the same name: both are named by their groups
        record("mail.check", 1500, app="mail", service="check", inputs=["letters"],
               stores=["files"]),
        # a record older than the topology fields: the service without edges
        record("mail.send", 1500, app="mail", service="send"),
    ]
    topo = topology_from_metrics(records)
    assert topo.app == "mail, shop"
    assert [n.id for n in topo.nodes] == [
        "service:mail.check", "service:send", "service:shop.check", "stream:letters",
        "stream:orders", "stream:checked", "store:files"]
    assert topo.edges == (
        Edge("input", "stream:letters", "service:mail.check"),
        Edge("uses", "service:mail.check", "store:files"),
        Edge("input", "stream:orders", "service:shop.check"),
        Edge("output", "service:shop.check", "stream:checked"))
    assert topology_from_metrics([]).nodes == ()
