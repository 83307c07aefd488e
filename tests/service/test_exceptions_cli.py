"""``millstream exceptions list / show / replay`` against services run in-process."""

from __future__ import annotations

import base64
import json
import time

from click.testing import CliRunner
from pydantic import BaseModel

import millstream
from millstream._wellknown import retry_stream
from millstream.cli.main import cli
from millstream.operations import list_exceptions
from millstream.runtime import ServiceRunner
from millstream.service import App, RetryPolicy
from millstream.testing import TestPlatform
from tests.service.test_runtime import Invoice, Order, read_all, run_until, send_orders


class Shipment(BaseModel):
    order_id: int


def make_app(broken: set[int]) -> App:
    app = App("shop", partitions=2)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice},
                 retry=RetryPolicy(attempts=2, backoff=0.001))
    def billing(order: Order) -> Invoice:
        if order.id in broken:
            raise KeyError(f"no tax rate for order {order.id}")
        return Invoice(order_id=order.id, amount=order.total)

    @app.service(inputs={"orders": Order}, outputs={"shipments": Shipment})
    def shipping(order: Order) -> Shipment:
        return Shipment(order_id=order.id)

    return app


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_list_show_and_replay_to_the_failing_service_only() -> None:
    broken = {3, 7}
    app = make_app(broken)
    with millstream.open_streams() as streams:
        billing = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        shipping = ServiceRunner(app, "shipping", streams, metrics_interval_s=60)
        billing.prepare()
        shipping.prepare()
        send_orders(streams, [Order(id=i, total=i) for i in range(10)])
        run_until(billing, lambda r: r.metrics.records_in >= 10)
        run_until(shipping, lambda r: r.metrics.records_in >= 10)
        assert len(read_all(streams, "invoices")) == 8

    listing = invoke("exceptions", "list", "--service", "billing")
    rows = [line.split() for line in listing.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 2
    ids = [int(row[0]) for row in rows]
    assert all(row[-1] == "no" for row in rows)  # not replayed yet
    assert "KeyError:" in listing and "orders[" in listing
    assert all(row[-2] == "2" for row in rows)  # attempts

    shown = json.loads(invoke("exceptions", "show", str(ids[0])))
    assert shown["service"] == "billing" and shown["attempts"] == 2
    # the input decoded beside its base64: the order as JSON, its key as text
    assert shown["value"] == {"id": 3, "total": 3.0}
    assert base64.b64decode(shown["value_b64"]) == json.dumps(
        shown["value"], separators=(",", ":")).encode()
    assert shown["key_text"] == "3"
    assert "no tax rate for order" in shown["error"]["message"]
    assert shown["error"]["traceback"].count("Traceback") == 1

    # dry run sends nothing
    dry = invoke("exceptions", "replay", "--all", "--service", "billing", "--dry-run")
    assert dry.count("would replay") == 2

    broken.clear()  # the fix is deployed
    out = invoke("exceptions", "replay", *map(str, ids))
    assert retry_stream("shop.billing") in out
    with millstream.open_streams() as streams:
        billing = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        shipping = ServiceRunner(app, "shipping", streams, metrics_interval_s=60)
        run_until(billing, lambda r: r.metrics.records_in >= 2)
        run_until(shipping, lambda r: True)
        invoices = sorted(Invoice.model_validate_json(r.value or b"").order_id
                          for r in read_all(streams, "invoices"))
        assert invoices == list(range(10))  # 3 and 7 now invoiced, once each
        # the other group saw nothing again; the input stream did not grow
        assert shipping.statistics().records_in == 0
        assert len(read_all(streams, "shipments")) == 10
        assert streams.admin().describe_stream("orders").records == 10

    listing = invoke("exceptions", "list")
    rows = [line.split() for line in listing.splitlines() if line.strip()[:1].isdigit()]
    assert [row[-1] for row in rows] == ["yes", "yes"]
    # --all skips what was replayed already
    again = CliRunner().invoke(cli, ["exceptions", "replay", "--all"])
    assert again.exit_code == 0 and "nothing to replay" in again.output


def test_bad_ids_and_missing_stream_are_clear_errors() -> None:
    result = CliRunner().invoke(cli, ["exceptions", "list"])
    assert result.exit_code == 1
    assert "no millstream.exceptions stream yet" in result.output
    app = make_app({1})
    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=1, total=1)])
        run_until(runner, lambda r: r.metrics.records_in >= 1)
    result = CliRunner().invoke(cli, ["exceptions", "replay", "0", "99"])
    assert result.exit_code == 1
    assert "no exception with id 99; nothing was replayed" in result.output
    result = CliRunner().invoke(cli, ["exceptions", "replay"])
    assert result.exit_code == 2 and "give exception ids, or --all" in result.output


def test_list_exceptions_since_takes_seconds_since_the_epoch() -> None:
    with TestPlatform(make_app({1, 2})) as platform:
        platform.send_many("orders", [Order(id=i, total=i) for i in range(4)],
                           key=lambda o: str(o.id))
        before = time.time() - 1
        platform.run_until_idle("billing")
        after = time.time() + 1
        assert len(list_exceptions(platform.streams)) == 2
        assert len(list_exceptions(platform.streams, since=before)) == 2
        assert list_exceptions(platform.streams, since=after) == []


def test_list_names_a_shadows_failures_as_the_shadows() -> None:
    app = make_app({3})
    with millstream.open_streams() as streams:
        production = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        shadow = ServiceRunner(app, "billing", streams, shadow="v2", metrics_interval_s=60)
        production.prepare()
        shadow.prepare()
        send_orders(streams, [Order(id=3, total=3)])
        run_until(production, lambda r: r.metrics.records_in >= 1)
        run_until(shadow, lambda r: r.metrics.records_in >= 1)

    listing = invoke("exceptions", "list")
    rows = [line.split() for line in listing.splitlines() if line.strip()[:1].isdigit()]
    assert [row[3:6] for row in rows] == [["billing", "orders[1]@0", "handle"],
                                         ["billing", "(shadow", "v2)"]]
    only_shadow = invoke("exceptions", "list", "--group", "shop.billing.shadow.v2")
    assert [line.split()[3:6] for line in only_shadow.splitlines()
            if line.strip()[:1].isdigit()] == [["billing", "(shadow", "v2)"]]
