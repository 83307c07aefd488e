"""A shadow version's names — group, output streams, tables — come from one module, and a
running shadow uses exactly those names."""

from __future__ import annotations

from pydantic import BaseModel

from millstream.service import App, Context, shadow_group, shadow_stream, shadow_table
from millstream.testing import TestPlatform


class Order(BaseModel):
    id: int
    total: float


def test_the_names_of_a_shadow_version() -> None:
    assert shadow_group("shop.billing", "v2") == "shop.billing.shadow.v2"
    assert shadow_stream("invoices", "v2") == "invoices.shadow.v2"
    assert shadow_table("totals", "v2") == "totals.shadow.v2"


def make_app() -> App:
    app = App("shop", partitions=2)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Order})
    def billing(order: Order, ctx: Context) -> Order:
        ctx.tables.table("billed").put(str(order.id), {"total": order.total})
        return order

    return app


def test_a_running_shadow_uses_its_group_stream_and_table_names() -> None:
    app = make_app()
    with TestPlatform(app) as platform:
        platform.tables.ensure_table("billed")
        platform.tables.ensure_table(shadow_table("billed", "v2"))
        platform.send_many("orders", [Order(id=i, total=i) for i in range(3)],
                           key=lambda o: str(o.id))
        platform.run_until_idle("billing", shadow="v2")
        group = shadow_group(app.get("billing").group, "v2")
        assert group == "shop.billing.shadow.v2"
        committed = {(p.stream, p.partition): p.committed
                     for p in platform.streams.admin().describe_group(group).partitions}
        assert sum(c or 0 for (s, _), c in committed.items() if s == "orders") == 3
        assert sorted(r.key for r in platform.records(shadow_stream("invoices", "v2"))) == [
            b"0", b"1", b"2"]
        assert platform.records("invoices") == []
        shadow_rows = platform.tables.table(shadow_table("billed", "v2"))
        assert [shadow_rows.get(k) for k in "012"] == [{"total": 0.0}, {"total": 1.0},
                                                        {"total": 2.0}]
        assert platform.tables.table("billed").count() == 0
