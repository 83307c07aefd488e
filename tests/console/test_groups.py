"""The Groups pages in headless Chromium over a real platform: every group with its members
and lag, one group's offsets, and resetting a stopped group through the browser — refused
without the token, with a wrong confirmation, and while the group has live members."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from millstream.console._pages._groups import reset_target
from millstream.console._series import series
from millstream.errors import InvalidRequestError
from millstream.records import StreamPartition
from millstream.runtime._clock import SystemClock
from millstream.service import App, Context
from millstream.streams._info import Retention
from millstream.streams._partitioner import partition_for_key
from millstream.testing import TestPlatform
from tests.console._serving import Served, screenshot, served_console, sign_in
from tests.support.waiting import wait_until


class Order(BaseModel):
    customer: str
    amount: int


app = App("shop", partitions=2)
orders = app.stream("orders", Order, retention=Retention(max_age=3600))


@app.service(inputs=[orders], stateful=True, max_batch=2)
def totals(order: Order, ctx: Context) -> None:
    time.sleep(0.1)  # slow, in small batches: the metrics see its lag fall over seconds
    ctx.state[order.customer] = ctx.state.get(order.customer, 0) + order.amount


GROUP = "shop.totals"
OLD = [Order(customer=f"old-{n}", amount=n) for n in range(20)]
NEW = [Order(customer=f"new-{n}", amount=n) for n in range(30)]


def _per_partition(items: list[Order]) -> dict[int, int]:
    counts = dict.fromkeys(range(2), 0)
    for item in items:
        counts[partition_for_key(item.customer.encode(), 2)] += 1
    return counts


def _committed(platform: TestPlatform, group: str) -> dict[tuple[str, int], int | None]:
    return {(p.stream, p.partition): p.committed
            for p in platform.streams.admin().describe_group(group).partitions}


@pytest.fixture(scope="module")
def platform() -> Iterator[TestPlatform]:
    with TestPlatform(app, clock=SystemClock(), metrics_interval_s=1.0) as platform:
        # twenty orders from two hours ago, past the stream's hour of retention, then thirty
        platform.send_many(orders, OLD, key=lambda o: o.customer, timestamp=time.time() - 7200)
        platform.send_many(orders, NEW, key=lambda o: o.customer)
        platform.streams.admin().enforce_retention()
        service = platform.start("totals")
        service.wait_assigned()
        wait_until(lambda: sum(r.interval.records_in for r in platform.metrics("totals")
                               if r.group == GROUP) == len(NEW), 15, "the new orders handled")
        service.stop()
        wait_until(lambda: not platform.streams.admin().describe_group(GROUP).members, 10,
                   "the group to have no live member")
        with platform.streams.open_consumer("audit") as audit:  # a group that is no service
            audit.subscribe(["orders"])
            wait_until(lambda: audit.assignment(), 10, "audit's partitions")
            audit.commit({StreamPartition("orders", 0): _starts(platform)[0] + 2,
                          StreamPartition("orders", 1): _starts(platform)[1] + 3})
        yield platform


def _starts(platform: TestPlatform) -> dict[int, int]:
    return {p.partition: p.start for p in platform.streams.admin().describe_stream(
        "orders").partitions}


@pytest.fixture(scope="module")
def served(platform: TestPlatform) -> Iterator[Served]:
    with served_console(platform) as served:
        yield served


def test_retention_left_the_orders_stream_starting_after_the_old_orders(
    platform: TestPlatform,
) -> None:
    assert _starts(platform) == _per_partition(OLD)
    ends = {p.partition: p.end for p in platform.streams.admin().describe_stream(
        "orders").partitions}
    assert ends == {p: _per_partition(OLD)[p] + _per_partition(NEW)[p] for p in range(2)}


def test_the_groups_page_lists_every_group_with_members_streams_and_lag(
    platform: TestPlatform, served: Served, page: Any
) -> None:
    page.goto(f"{served.url}/groups")
    rows = page.locator("#groups tbody tr")
    table = [[c.strip() for c in rows.nth(i).locator("td").all_text_contents()]
             for i in range(rows.count())]
    assert table == [
        ["audit", "0", "orders", str(len(NEW) - 5), "–"],
        [GROUP, "0", "orders", "0", "charts"],  # it never committed on its retry stream
    ]
    assert page.locator(f"#groups tr[data-group='{GROUP}'] a").nth(1).get_attribute(
        "href") == f"/services/{GROUP}"
    screenshot(page, "groups")
    # the list stays live: audit's lag follows its offsets without a reload
    page.evaluate("window.notReloaded = true")
    admin, starts = platform.streams.admin(), _starts(platform)
    admin.reset_offsets("audit", "orders", "latest")
    audit_lag = page.locator("#groups tr[data-group='audit'] td").nth(3)
    wait_until(lambda: audit_lag.text_content() == "0", 10, "audit's lag shown as 0")
    admin.reset_offsets("audit", "orders", {0: starts[0] + 2, 1: starts[1] + 3})
    wait_until(lambda: audit_lag.text_content() == str(len(NEW) - 5), 10, "audit's lag back")
    assert page.evaluate("window.notReloaded") is True


def test_resetting_a_stopped_group_to_the_beginning_commits_the_start_offsets(
    platform: TestPlatform, served: Served, page: Any
) -> None:
    starts, per_new = _starts(platform), _per_partition(NEW)
    ends = {p: starts[p] + per_new[p] for p in range(2)}
    assert _committed(platform, GROUP) == {("orders", 0): ends[0], ("orders", 1): ends[1]}
    sign_in(page, served, next_path=f"/groups/{GROUP}")
    cells = page.locator("#partitions tbody tr").nth(0).locator("td").all_text_contents()
    assert [c.strip() for c in cells] == ["orders", "0", str(ends[0]), str(starts[0]),
                                          str(ends[0]), "0", "–"]
    form = page.locator("form.action")
    button = form.locator("button[type=submit]")
    form.locator("select[name=stream]").select_option("orders")
    form.locator("select[name=to]").select_option("beginning")
    form.locator("input[name=confirm]").fill("shop.total")  # not the name yet
    assert button.is_disabled()
    form.locator("input[name=confirm]").fill(GROUP)
    button.click()
    page.wait_for_selector("#reset-done")
    assert page.locator("#reset-done").text_content() == (
        f"group {GROUP} now reads from the beginning: orders: partition 0 → {starts[0]}, "
        f"partition 1 → {starts[1]}")
    assert _committed(platform, GROUP) == {("orders", 0): starts[0],
                                           ("orders", 1): starts[1]}
    assert starts[0] > 0 and starts[1] > 0  # the retained start, not offset 0
    # the page shows the new offsets and lag, and the chart the lag the metrics reported
    cells = page.locator("#partitions tbody tr").nth(1).locator("td").all_text_contents()
    assert [c.strip() for c in cells] == ["orders", "1", str(starts[1]), str(starts[1]),
                                          str(ends[1]), str(per_new[1]), "–"]
    page.wait_for_function("() => window.groupPage && window.groupPage.series.times.length > 0")
    expected = series([r for r in platform.metrics("totals") if r.group == GROUP])
    names = ["millstream.retry.shop.totals/0", "orders/0", "orders/1"]
    assert list(expected.lag) == names
    assert page.evaluate("document.getElementById('chart-lag').chart.data"
                         ".map((a) => Array.from(a))") == [
        expected.times, *(expected.lag[n] for n in names)]
    # the lag the service reported fell to 0 while it read the new orders
    both = [(a or 0) + (b or 0) for a, b in zip(expected.lag["orders/0"],
                                                expected.lag["orders/1"], strict=True)]
    assert max(both) > 0 and both[-1] == 0
    screenshot(page, "group")


def _signed_in_client(page: Any, served: Served) -> tuple[dict[str, str], str]:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies, page.locator("body").get_attribute("data-csrf")


def test_a_reset_without_the_token_or_with_a_wrong_confirmation_is_refused_and_changes_nothing(
    platform: TestPlatform, served: Served, page: Any
) -> None:
    sign_in(page, served, next_path=f"/groups/{GROUP}")
    cookies, csrf = _signed_in_client(page, served)
    before = _committed(platform, GROUP)
    form = {"csrf": csrf, "confirm": GROUP, "stream": "orders", "to": "end", "value": ""}
    url = f"{served.url}/groups/{GROUP}/reset"
    origin = {"origin": served.url}

    refused = httpx2.post(url, data=form, headers=origin)  # no session, no bearer token
    assert refused.status_code == 403
    assert "actions need the console&#39;s token: sign in at /signin" in refused.text
    wrong = httpx2.post(url, data={**form, "confirm": "shop"}, headers=origin, cookies=cookies)
    assert wrong.status_code == 400
    assert ("confirmation &#39;shop&#39; does not match: type &#39;shop.totals&#39; to "
            "confirm") in wrong.text
    assert _committed(platform, GROUP) == before

    bad = httpx2.post(url, data={**form, "to": "offset", "value": "ten"}, headers=origin,
                      cookies=cookies)
    assert bad.status_code == 400
    assert ("offset &#39;ten&#39; is not an offset: give an integer ≥ 0 that every partition "
            "reset holds") in bad.text
    assert _committed(platform, GROUP) == before


def test_a_reset_is_refused_while_the_group_has_live_members(
    platform: TestPlatform, served: Served, page: Any
) -> None:
    before = _committed(platform, "audit")
    sign_in(page, served, next_path="/groups/audit")
    with platform.streams.open_consumer("audit") as member:
        member.subscribe(["orders"])
        wait_until(lambda: member.assignment(), 10, "audit's live member")
        page.reload()
        assert page.locator("#members tbody tr").count() == 1
        form = page.locator("form.action")
        form.locator("select[name=to]").select_option("beginning")
        form.locator("input[name=confirm]").fill("audit")
        with page.expect_response(lambda r: r.url.endswith("/groups/audit/reset")) as answer:
            form.locator("button[type=submit]").click()
        assert answer.value.status == 409
        message = page.locator("#reset-failed").text_content()
        assert message.startswith("group 'audit' has 1 live member(s) (")
        assert message.endswith("): stop its consumers (or wait for their session to expire), "
                                "then reset again; nothing was changed")
        assert _committed(platform, "audit") == before


def test_the_reset_forms_target_is_the_beginning_the_end_an_offset_or_a_utc_time() -> None:
    assert reset_target("beginning", "ignored") == "earliest"
    assert reset_target("end", "") == "latest"
    assert reset_target("offset", " 42 ") == 42
    assert reset_target("time", "2026-12-06T17:00") == ("time", 1796576400000)
    assert reset_target("time", "2026-12-06T18:00+01:00") == ("time", 1796576400000)
    with pytest.raises(InvalidRequestError, match="'yesterday' is not a time: give an ISO"):
        reset_target("time", "yesterday")
    with pytest.raises(InvalidRequestError, match="reset to 'start'\\? Choose one of "
                                                  "beginning, end, time, offset"):
        reset_target("start", "")


def test_a_reset_to_a_time_or_of_one_partition_to_an_offset_through_the_bearer_token(
    platform: TestPlatform, served: Served
) -> None:
    starts, per_new = _starts(platform), _per_partition(NEW)
    url = f"{served.url}/groups/audit/reset"
    bearer = {"authorization": f"Bearer {served.token}"}
    an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3600))
    answer = httpx2.post(url, headers=bearer, data={
        "confirm": "audit", "stream": "orders", "to": "time", "value": an_hour_ago},
        follow_redirects=True)
    assert answer.status_code == 200  # after the redirect to the group's page (post/get)
    assert len(answer.history) == 1 and answer.history[0].status_code == 303
    # the first record at or after an hour ago is the first new order: the retained start
    assert _committed(platform, "audit") == {("orders", 0): starts[0], ("orders", 1): starts[1]}
    answer = httpx2.post(url, headers=bearer, data={
        "confirm": "audit", "stream": "orders", "partition": "1", "to": "offset",
        "value": str(starts[1] + per_new[1])}, follow_redirects=True)
    assert answer.status_code == 200
    assert "group audit now reads from offset" in answer.text
    assert _committed(platform, "audit") == {("orders", 0): starts[0],
                                             ("orders", 1): starts[1] + per_new[1]}
    answer = httpx2.post(url, headers=bearer, data={
        "confirm": "audit", "stream": "orders", "partition": "7", "to": "end"})
    assert answer.status_code == 400
    assert "stream &#39;orders&#39; has no partition 7: its partitions are 0..1" in answer.text


def test_a_group_that_writes_no_metrics_has_its_lag_sampled_while_the_page_is_open(
    platform: TestPlatform, served: Served, page: Any
) -> None:
    lags = {p.partition: p.lag for p in platform.streams.admin().describe_group(
        "audit").partitions}
    page.goto(f"{served.url}/groups/audit")
    assert page.locator("#lag-source").text_content() == (
        "This group writes no metrics (it is not a service's group): the chart samples its lag "
        "every poll since this page opened.")
    page.wait_for_function("() => window.groupPage && window.groupPage.series.times.length >= 3")
    data = page.evaluate("document.getElementById('chart-lag').chart.data"
                         ".map((a) => Array.from(a))")
    times, lag0, lag1 = data
    assert len(times) >= 3 and times == sorted(times)
    assert set(lag0) == {lags[0]} and set(lag1) == {lags[1]}


def test_a_group_whose_name_holds_a_slash_has_its_page_and_is_reset(
    platform: TestPlatform, served: Served, page: Any
) -> None:
    name = "team/audit"  # Kafka allows "/" in a group's name
    starts = _starts(platform)
    with platform.streams.open_consumer(name) as consumer:
        consumer.subscribe(["orders"])
        wait_until(lambda: consumer.assignment(), 10, "team/audit's partitions")
        consumer.commit({StreamPartition("orders", 0): starts[0] + 1,
                         StreamPartition("orders", 1): starts[1] + 1})
    wait_until(lambda: not platform.streams.admin().describe_group(name).members, 10,
               "team/audit to have no live member")
    page.goto(f"{served.url}/groups")
    link = page.locator(f"#groups tr[data-group='{name}'] a").first
    assert link.get_attribute("href") == "/groups/team%2Faudit"
    link.click()
    page.wait_for_url("**/groups/team%2Faudit")
    assert page.locator("h1").text_content() == f"Group {name}"
    api = httpx2.get(f"{served.url}/api/groups/team%2Faudit", timeout=10).json()
    assert api["group"] == name
    answer = httpx2.post(f"{served.url}/groups/team%2Faudit/reset",
                         headers={"authorization": f"Bearer {served.token}"},
                         data={"confirm": name, "stream": "orders", "to": "end"},
                         follow_redirects=False, timeout=10)
    assert (answer.status_code, answer.headers["location"].split("?")[0]) == (
        303, "/groups/team%2Faudit")
    ends = {p.partition: p.end for p in platform.streams.admin().describe_stream(
        "orders").partitions}
    assert _committed(platform, name) == {("orders", 0): ends[0], ("orders", 1): ends[1]}
