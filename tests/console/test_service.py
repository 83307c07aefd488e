"""The Service page in headless Chromium over a real service: its charts hold exactly the
points the metrics stream's records make, grow without a reload, and its instances,
partitions and state size are the running system's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from millstream.console._render import fmt_bytes
from millstream.console._series import series
from millstream.runtime._clock import SystemClock
from millstream.runtime._metrics_record import MetricsRecord
from millstream.service import App, Context
from millstream.testing import TestPlatform
from tests.console._serving import screenshot, served_console
from tests.support.waiting import wait_until


class Order(BaseModel):
    customer: str
    amount: int


class Total(BaseModel):
    customer: str
    total: int


app = App("shop", partitions=2)


@app.service(inputs={"orders": Order}, outputs={"totals": Total}, stateful=True)
def totals(order: Order, ctx: Context) -> Total:
    """A running total per customer, kept as the service's state; refuses one customer."""
    if order.customer == "refused":
        raise ValueError(f"order {order.amount} of a refused customer")
    ctx.state[order.customer] = ctx.state.get(order.customer, 0) + order.amount
    return Total(customer=order.customer, total=ctx.state[order.customer])


GROUP = "shop.totals"
DRAWN = "() => window.servicePage && window.servicePage.series.times.length > 0"
CUSTOMERS = [f"customer-{n:02d}" for n in range(12)]


@pytest.fixture(scope="module")
def platform() -> Iterator[TestPlatform]:
    with TestPlatform(app, clock=SystemClock(), metrics_interval_s=1.0) as platform:
        yield platform


def _records(platform: TestPlatform) -> list[MetricsRecord]:
    return [r for r in platform.metrics() if r.group == GROUP]


def _handled(platform: TestPlatform) -> int:
    return sum(r.interval.records_in for r in _records(platform))


def _page_series(page: Any) -> dict[str, Any]:
    return page.evaluate("JSON.parse(JSON.stringify(window.servicePage.series))")  # type: ignore[no-any-return]


def _chart(page: Any, name: str) -> list[list[float | None]]:
    return page.evaluate(  # type: ignore[no-any-return]
        f"document.getElementById('chart-{name}').chart.data.map((a) => Array.from(a))")


def _send(platform: TestPlatform, start: int, count: int) -> None:
    platform.send_many("orders", [Order(customer=CUSTOMERS[i % len(CUSTOMERS)], amount=i)
                                  for i in range(start, start + count)],
                       key=lambda o: o.customer)


def test_the_charts_hold_the_metrics_streams_points_and_grow_without_a_reload(
    platform: TestPlatform, page: Any
) -> None:
    service = platform.start("totals")
    service.wait_assigned()
    wait_until(lambda: _records(platform), 10, "the service's first metrics record")
    _send(platform, 0, 120)
    wait_until(lambda: _handled(platform) == 120, 15, "120 orders counted in the metrics")
    with served_console(platform) as served:
        page.goto(f"{served.url}/services/{GROUP}")
        assert page.locator("h1").text_content() == "totals"
        assert " ".join(page.locator("#flow").text_content().split()) == (
            "reads orders → writes totals")
        assert page.locator("#flow a").evaluate_all("(links) => links.map((a) => a.href)") == [
            f"{served.url}/streams/orders", f"{served.url}/streams/totals"]
        page.wait_for_function(DRAWN)
        page.evaluate("window.notReloaded = true")
        before = _page_series(page)["times"]

        _send(platform, 120, 30)  # new points come while the page is open
        platform.send_many("orders", [Order(customer="refused", amount=n) for n in (1, 2)],
                           key="refused")  # each tried 3 times, then an exception record
        wait_until(lambda: sum(r.interval.exceptions for r in _records(platform)) == 2, 15,
                   "the two refused orders given up on")
        page.wait_for_function(f"() => window.servicePage.series.times.length > {len(before)}")
        assert page.evaluate("window.notReloaded") is True
        kept = max(len(before) - 5, 0)  # the last five buckets are asked again every poll
        assert _page_series(page)["times"][:kept] == before[:kept]

        wait_until(lambda: page.locator("[data-live-status]").text_content() == "live", 10,
                   "the page polling")
        service.stop()  # the final records: every bucket is complete now
        records = _records(platform)
        assert records[-1].final
        expected = series(records).to_json()
        wait_until(lambda: _page_series(page) == expected, 15,
                   "the page's series to be the one the metrics stream's records make")

        # what uPlot draws is that series, chart by chart
        times = expected["times"]
        assert _chart(page, "rates") == [times, expected["rates"]["in"],
                                         expected["rates"]["out"]]
        assert _chart(page, "latency") == [times, expected["p50_ms"], expected["p99_ms"]]
        assert _chart(page, "errors") == [times, expected["rates"]["errors"],
                                          expected["rates"]["exceptions"]]
        lag_names = ["millstream.retry.shop.totals/0", "orders/0", "orders/1"]
        assert list(expected["lag"]) == lag_names
        assert _chart(page, "lag") == [times, *(expected["lag"][n] for n in lag_names)]
        # the area under each rate is what the service counted: 152 orders read (the two
        # refused ones once each), 3 failures each of those, 2 given up on (each bucket's rate
        # is rounded to 3 decimals: an area is within half a thousandth per bucket)
        def area(name: str) -> float:
            return sum(v for v in expected["rates"][name] if v is not None) * expected["bucket_s"]

        assert abs(area("in") - 152) <= 0.0005 * len(times)
        assert abs(area("errors") - 6) <= 0.0005 * len(times)
        assert abs(area("exceptions") - 2) <= 0.0005 * len(times)
        assert expected["bucket_s"] == 1.0
        assert len(times) >= 5

        # reloaded: the tables say what the records and the checkpoints say
        page.reload()
        page.wait_for_function(DRAWN)
        (record,) = {(r.instance, r.run) for r in records}
        rows = page.locator("#instances tbody tr")
        assert rows.count() == 1
        assert [c.strip() for c in rows.nth(0).locator("td").all_text_contents()][:4] == [
            record[0], record[1], records[-1].version, "stopped"]
        assert records[-1].version == "1"
        assert rows.nth(0).locator("td").nth(6).text_content() == "152"
        parts = page.locator("#partitions tbody tr")
        assert [[c.strip() for c in parts.nth(i).locator("td").all_text_contents()]
                for i in range(parts.count())] == [[n, "–", "0"] for n in lag_names]
        states = platform.state_by_partition("totals")
        assert sum(len(s) for s in states.values()) == len(CUSTOMERS)
        sizes = {n: len(json.dumps(s, separators=(",", ":"))) for n, s in states.items()}
        answer = httpx2.get(f"{served.url}/api/services/{GROUP}").json()
        assert [(p["partition"], p["bytes"], p["keys"], p["in_files"])
                for p in answer["state"]["partitions"]] == [
            (n, sizes[n], len(states[n]), False) for n in sorted(states)]
        assert answer["state"]["bytes"] == sum(sizes.values())
        assert page.locator("[data-field=state_bytes]").text_content() == fmt_bytes(
            sum(sizes.values()))
        assert answer["summary"]["records_in"] == 152
        screenshot(page, "service")


def test_an_unknown_group_is_a_404_page_naming_it(platform: TestPlatform, page: Any) -> None:
    with served_console(platform) as served:
        answer = page.goto(f"{served.url}/services/no.such-service")
        assert answer.status == 404
        assert page.locator(".message").text_content() == (
            "no service 'no.such-service' has written metrics in the last 60 minutes: it is "
            "not a service's group, or it has not run since; the overview lists the services "
            "there are")
        api = httpx2.get(f"{served.url}/api/services/no.such-service")
        assert api.status_code == 404
        assert api.json()["error"].startswith("no service 'no.such-service' has written")
        bad = httpx2.get(f"{served.url}/api/services/{GROUP}?since=soon")
        assert (bad.status_code, bad.json()) == (400, {
            "error": "since='soon' is not a time: give seconds since the epoch "
                     "(e.g. 1765000000)"})
