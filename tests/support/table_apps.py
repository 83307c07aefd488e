"""An app with table outputs, importable by child processes as ``tests.support.table_apps:app``.

``ledger`` reads orders and writes two tables: ``orders`` (one row per order, keyed by its
id) and ``customers`` (each customer's latest order, keyed by the customer). ``expected``
gives both tables as the input determines them, for exact comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from millstream.service import App, Context


class Order(BaseModel):
    id: str
    customer: str
    amount: int


class OrderRow(BaseModel):
    id: str
    customer: str
    amount: int
    doubled: int


class CustomerRow(BaseModel):
    customer: str
    last_order: str
    last_amount: int


app = App("ledgerapp", partitions=3)
app.stream("orders-in", Order)
orders = app.table("orders", OrderRow, key="id", indexes=["customer"])
customers = app.table("customers", CustomerRow, key="customer")


@app.service(inputs={"orders-in": Order}, outputs=[orders, customers], max_batch=100)
def ledger(order: Order, ctx: Context) -> None:
    """Records every order, and each customer's latest."""
    ctx.emit("orders", OrderRow(id=order.id, customer=order.customer, amount=order.amount,
                                doubled=2 * order.amount))
    ctx.emit("customers", CustomerRow(customer=order.customer, last_order=order.id,
                                      last_amount=order.amount))


def make_orders(n: int, customers: int = 97) -> list[Order]:
    """``n`` orders over ``customers`` customers, in the order they are sent."""
    return [Order(id=f"o{i:06d}", customer=f"c{(i * 7) % customers:03d}", amount=i % 1000)
            for i in range(n)]


def expected(sent: Iterable[Order]) -> tuple[dict[str, dict[str, object]],
                                              dict[str, dict[str, object]]]:
    """The orders and customers tables ``sent`` (in order) must give."""
    by_id: dict[str, dict[str, object]] = {}
    latest: dict[str, dict[str, object]] = {}
    for o in sent:
        by_id[o.id] = {"id": o.id, "customer": o.customer, "amount": o.amount,
                       "doubled": 2 * o.amount}
        latest[o.customer] = {"customer": o.customer, "last_order": o.id,
                              "last_amount": o.amount}
    return by_id, latest
