"""The console's Exceptions pages in headless Chromium, over two real services that fail on
some records (TestPlatform, SystemClock, metrics every second): exact counts under each
filter, an input decoded beside its traceback, replays through the browser that the fixed
services then process, and replays refused without the token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from millstream._wellknown import retry_stream
from millstream.runtime._clock import SystemClock
from millstream.service import App, RetryPolicy
from millstream.testing import TestPlatform
from tests.console._serving import Served, screenshot, served_console, sign_in


class Order(BaseModel):
    id: int
    customer: str
    total: float


class Invoice(BaseModel):
    order_id: int
    amount: float


class Shipment(BaseModel):
    order_id: int


#: what the handlers refuse until the test "deploys a fix" by changing these
NO_TAX_RATE = {3, 7}
NO_ADDRESS = {"c2"}

app = App("shop", partitions=1)


@app.service(inputs={"orders": Order}, outputs={"invoices": Invoice},
             retry=RetryPolicy(attempts=2, backoff=0.001))
def billing(order: Order) -> Invoice:
    if order.id in NO_TAX_RATE:
        raise KeyError(f"no tax rate for order {order.id}")
    if order.total < 0:
        raise ValueError(f"order {order.id} has a negative total")
    return Invoice(order_id=order.id, amount=order.total)


@app.service(inputs={"orders": Order}, outputs={"shipments": Shipment},
             retry=RetryPolicy(attempts=1, backoff=0.001))
def shipping(order: Order) -> Shipment:
    if order.customer in NO_ADDRESS:
        raise RuntimeError(f"no address for customer {order.customer}")
    return Shipment(order_id=order.id)


ORDERS = [Order(id=i, customer=f"c{i % 3}", total=-1.0 if i == 5 else float(i))
          for i in range(10)]


@pytest.fixture(scope="module")
def platform() -> Iterator[TestPlatform]:
    """Orders 0..9 then one record that is not an Order. billing fails on 3 and 7 (KeyError),
    5 (ValueError) and the bad record (decode): 4; shipping on c2's orders 2, 5, 8
    (RuntimeError) and the bad record: 4."""
    with TestPlatform(app, clock=SystemClock(), metrics_interval_s=1.0) as platform:
        platform.send_many("orders", ORDERS, key=lambda o: str(o.id))
        with platform.streams.open_producer() as producer:
            producer.send("orders", b"not an order \x00", key=b"bad")
        with platform.running("billing"), platform.running("shipping"):
            platform.wait_until(lambda: len(platform.exceptions()) == 8, timeout=20)
            platform.wait_for("invoices", 7)
            platform.wait_for("shipments", 7)
            yield platform


@pytest.fixture(scope="module")
def served(platform: TestPlatform) -> Iterator[Served]:
    with served_console(platform) as served:
        yield served


def ids_of(platform: TestPlatform, service: str, message: str) -> list[int]:
    return [f.id for f in platform.exceptions(service) if message in f.message]


def column(page: Any, n: int) -> list[str]:
    return [t.strip() for t in page.locator(f"#exceptions tbody td:nth-child({n})")
            .all_inner_texts()]


def test_filters_give_exact_counts(page: Any, served: Served, platform: TestPlatform) -> None:
    page.goto(f"{served.url}/exceptions")
    assert page.locator("#matching-count").inner_text() == "8"
    assert page.locator("#pending-count").inner_text() == "8"
    assert sorted(column(page, 3)) == ["billing"] * 4 + ["shipping"] * 4
    # the dropdowns offer what there is, with counts
    assert page.locator("select[name=service] option").all_inner_texts() == [
        "all", "billing (4)", "shipping (4)"]

    page.select_option("select[name=service]", "billing")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**service=billing**")
    assert page.locator("#matching-count").inner_text() == "4"
    assert sorted(column(page, 5)) == ["decode", "handle", "handle", "handle"]

    page.select_option("select[name=stage]", "handle")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**stage=handle**")
    assert page.locator("#matching-count").inner_text() == "3"

    page.goto(f"{served.url}/exceptions?type=builtins.KeyError")
    assert page.locator("#matching-count").inner_text() == "2"
    assert sorted(int(i) for i in column(page, 1)) == sorted(
        ids_of(platform, "billing", "no tax rate"))
    assert all(cell.startswith("KeyError: ") for cell in column(page, 6))

    page.goto(f"{served.url}/exceptions?stage=decode")
    assert page.locator("#matching-count").inner_text() == "2"
    assert sorted(column(page, 3)) == ["billing", "shipping"]

    page.goto(f"{served.url}/exceptions?service=shipping&type=builtins.RuntimeError")
    assert page.locator("#matching-count").inner_text() == "3"
    page.goto(f"{served.url}/exceptions?service=billing")
    screenshot(page, "exceptions")


def test_an_exception_shows_its_input_decoded_and_its_traceback(
        page: Any, served: Served, platform: TestPlatform) -> None:
    ident = ids_of(platform, "billing", "no tax rate for order 7")[0]
    page.goto(f"{served.url}/exceptions/{ident}")
    assert page.locator("#message").inner_text() == "'no tax rate for order 7'"
    assert page.locator("#input-key").inner_text() == "7"
    assert page.locator("#input-value pre").inner_text() == json.dumps(
        {"id": 7, "customer": "c1", "total": 7.0}, indent=2)
    traceback = page.locator("#traceback").inner_text()
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.count("Traceback") == 1
    assert "in billing" in traceback and "KeyError: 'no tax rate for order 7'" in traceback
    assert page.locator("#replayed-where").inner_text() == "no"

    bad = next(f.id for f in platform.exceptions("billing") if f.stage == "decode")
    page.goto(f"{served.url}/exceptions/{bad}")
    assert page.locator("#input-value pre").inner_text() == b"not an order \x00".hex()
    assert page.locator("#input-key").inner_text() == "bad"


def test_a_replay_without_the_token_is_refused_and_replays_nothing(
        served: Served, platform: TestPlatform) -> None:
    ident = ids_of(platform, "billing", "no tax rate for order 3")[0]
    before = platform.streams.admin().describe_stream(retry_stream("shop.billing")).records
    for path, confirm in ((f"/exceptions/{ident}/replay", str(ident)),
                          ("/exceptions/replay", "8")):
        answer = httpx2.post(f"{served.url}{path}", data={"confirm": confirm},
                             headers={"accept": "application/json",
                                      "origin": served.url}, timeout=10)
        assert (answer.status_code, answer.json()) == (
            403, {"error": "actions need the console's token: sign in at /signin"})
    assert platform.streams.admin().describe_stream(
        retry_stream("shop.billing")).records == before == 0


def test_replaying_one_after_a_fix_makes_the_service_process_it(
        page: Any, served: Served, platform: TestPlatform) -> None:
    ident = ids_of(platform, "billing", "no tax rate for order 3")[0]
    NO_TAX_RATE.discard(3)  # the fix is deployed
    sign_in(page, served, next_path=f"/exceptions/{ident}")
    button = page.locator(f"form[action='/exceptions/{ident}/replay'] button[type=submit]")
    assert button.is_disabled()
    page.fill(f"form[action='/exceptions/{ident}/replay'] input[name=confirm]", str(ident))
    button.click()
    page.wait_for_url(f"**/exceptions/{ident}?replayed={ident}")
    assert page.locator("#replayed").inner_text().startswith(
        f"Replayed exception {ident} to millstream.retry.shop.billing (offset 0)")
    # the running service took it from its retry stream: order 3 is invoiced, once
    invoices = platform.wait_for("invoices", 8)
    assert sorted(i.order_id for i in invoices) == [0, 1, 2, 3, 4, 6, 8, 9]
    page.reload()
    assert page.locator("#replay-status").inner_text() == "replayed"
    assert page.locator("#replayed-where").inner_text() == (
        "yes: to millstream.retry.shop.billing at offset 0")
    screenshot(page, "exception")
    page.goto(f"{served.url}/exceptions?service=billing")
    row = page.locator(f'#exceptions tr[data-id="{ident}"] [data-field=replayed]')
    assert row.inner_text() == "replayed"
    assert page.locator("#pending-count").inner_text() == "3"


def test_replaying_a_filters_worth_replays_exactly_those(
        page: Any, served: Served, platform: TestPlatform) -> None:
    NO_ADDRESS.clear()  # the fix is deployed
    wanted = sorted(ids_of(platform, "shipping", "no address"))
    # a replay takes only what its page showed (up to the newest id there): with the first
    # id as that newest, one exception matches, and a confirmation of 3 is refused
    stale = httpx2.post(f"{served.url}/exceptions/replay?service=shipping&stage=handle",
                        data={"confirm": "3", "upto": str(wanted[0])},
                        headers={"authorization": f"Bearer {served.token}",
                                 "accept": "application/json"}, timeout=10)
    assert (stale.status_code, stale.json()) == (
        400, {"error": "confirmation '3' does not match: type '1' to confirm"})
    sign_in(page, served, next_path="/exceptions")
    page.goto(f"{served.url}/exceptions?service=shipping&stage=handle")
    assert page.locator("#matching-count").inner_text() == "3"
    form = page.locator("form[action='/exceptions/replay?service=shipping&stage=handle']")
    assert form.locator("input[name=confirm]").get_attribute("data-expect") == "3"
    assert form.locator("label.confirm code").inner_text() == "3"
    assert form.locator("input[name=upto]").get_attribute("value") == str(wanted[-1])
    form.locator("input[name=confirm]").fill("3")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**replayed=**")
    assert page.locator("#replayed").inner_text().startswith(
        f"Replayed 3 exceptions: {', '.join(map(str, wanted))}")
    shipments = platform.wait_for("shipments", 10)
    assert sorted(s.order_id for s in shipments) == list(range(10))
    assert page.locator("#pending-count").inner_text() == "0"
    assert column(page, 8) == ["replayed"] * 3


def test_a_replay_that_fails_again_links_to_its_new_exception(
        page: Any, served: Served, platform: TestPlatform) -> None:
    ident = ids_of(platform, "billing", "negative total")[0]  # not fixed: it fails again
    page.goto(f"{served.url}/exceptions?service=billing")  # open before the replay
    drawn = column(page, 1)
    answer = httpx2.post(f"{served.url}/exceptions/{ident}/replay",
                         data={"confirm": str(ident)},
                         headers={"authorization": f"Bearer {served.token}"},
                         follow_redirects=False, timeout=10)
    assert (answer.status_code, answer.headers["location"]) == (
        303, f"/exceptions/{ident}?replayed={ident}")
    platform.wait_until(lambda: any(f.document.get("replay_of") == ident
                                    for f in platform.exceptions("billing")), timeout=20)
    again = next(f.id for f in platform.exceptions("billing")
                 if f.document.get("replay_of") == ident)
    # the open list says so within a poll, and its link draws it again with the new one
    link = page.locator("#new-note a")
    link.wait_for()
    assert link.inner_text() == "1 new since this page was drawn: show it"
    screenshot(page, "exceptions-new")
    assert column(page, 1) == drawn  # the rows stay as drawn until then
    link.click()
    page.wait_for_function(f"() => !!document.querySelector('#exceptions tr[data-id=\"{again}\"]')")
    assert (page.url, column(page, 1)) == (f"{served.url}/exceptions?service=billing",
                                           [str(again), *drawn])
    assert page.locator("#new-note").inner_text() == ""
    page.goto(f"{served.url}/exceptions/{ident}")
    assert page.locator("#replayed-where").inner_text() == (
        f"yes: to millstream.retry.shop.billing at offset 1; failed again as exception {again}")
    page.goto(f"{served.url}/exceptions/{again}")
    assert page.locator("#facts").inner_text().count(f"exception {ident}") == 1
    assert page.locator("#input-value pre").inner_text() == json.dumps(
        {"id": 5, "customer": "c2", "total": -1.0}, indent=2)


def test_an_exception_that_does_not_exist_is_a_404_naming_the_ids(
        served: Served, platform: TestPlatform) -> None:
    last = max(f.id for f in platform.exceptions())
    answer = httpx2.get(f"{served.url}/exceptions/999", headers={"accept": "application/json"},
                        timeout=10)
    assert (answer.status_code, answer.json()) == (404, {
        "error": f"there is no exception 999: the exceptions stream holds ids 0 to {last}"})
