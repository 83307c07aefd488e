"""The console's Tables page in headless Chromium, over a real service feeding a real table
(SQLite) in a TestPlatform: the list with each table's feed and position, a table's documents
with their exact values, a query by field (and its clear errors), a snapshot taken, the data
changed and the snapshot restored through the browser, a rebuild from the stream — and the
actions refused without the token or with a wrong confirmation, changing nothing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from millstream.records import StreamPartition
from millstream.runtime._clock import SystemClock
from millstream.service import App
from millstream.tables._snapshot import list_snapshots
from millstream.testing import TestPlatform
from tests.console._serving import TOKEN, Served, screenshot, served_console, sign_in


class Order(BaseModel):
    id: str
    customer: str
    status: str
    amount: float


app = App("shop", partitions=2)
orders = app.stream("orders", Order)
order_table = app.table("order_status", Order, key="id", indexes=["status"])


@app.service(inputs=[orders], outputs=[order_table])
def track(order: Order) -> Order:
    """Each order's latest state, as a row of the table order_status."""
    return order


TABLE = "order_status"
FIRST = [Order(id=f"o-{i:02d}", customer=f"c{i % 3}", status="paid" if i % 2 else "open",
               amount=10.0 * i + 0.5) for i in range(1, 13)]


def docs(platform: TestPlatform) -> dict[str, dict[str, Any]]:
    return dict(platform.tables.table(TABLE).scan(limit=None))


def listed(offsets: Mapping[StreamPartition, int]) -> str:
    """Offsets as the page says them: ``order_status[0]=6, order_status[1]=6``."""
    return ", ".join(f"{sp}={o}" for sp, o in sorted(offsets.items()))


def replay(platform: TestPlatform) -> dict[str, dict[str, Any]]:
    """The table its stream (its feed, order_status) gives: each order's last row, by id."""
    return {o.id: o.model_dump() for o in platform.values(TABLE)}


def wait_rows(platform: TestPlatform, expected: dict[str, dict[str, Any]]) -> None:
    platform.wait_until(lambda: docs(platform) == expected, timeout=15)


@pytest.fixture(scope="module")
def platform() -> Iterator[TestPlatform]:
    with TestPlatform(app, clock=SystemClock(), metrics_interval_s=1.0) as platform:
        service = platform.start("track")
        platform.send_many(orders, FIRST, key=lambda o: o.id)
        wait_rows(platform, {o.id: o.model_dump() for o in FIRST})
        notes = platform.tables.ensure_table("notes")  # a table no stream feeds
        notes.put("n1", {"text": "<b>not bold</b>"})
        yield platform
        service.stop()


@pytest.fixture(scope="module")
def served(platform: TestPlatform) -> Iterator[Served]:
    with served_console(platform, token=TOKEN) as served:
        yield served


def cells(page: Any, selector: str) -> list[list[str]]:
    return [[c.strip() for c in row.locator("td").all_text_contents()]
            for row in page.locator(selector).all()]


def test_the_list_shows_every_table_its_feed_position_and_lag(served: Served,
                                                               platform: TestPlatform,
                                                               page: Any) -> None:
    page.goto(f"{served.url}/tables")
    assert cells(page, "#tables tbody tr") == [
        ["notes", "1", "none", "0", "–", "–"],
        [TABLE, "12", TABLE, "12", "up to date", "status"]]
    page.wait_for_selector("[data-live-status].ok")  # the counts are polled live
    api = httpx2.get(f"{served.url}/api/tables", timeout=10).json()
    assert api["tables"][1] == {
        "name": TABLE, "documents": 12, "indexes": ["status"], "feed": TABLE, "behind": 0,
        "problem": None, "position": 12,
        "partitions": [{"partition": p, "offset": o, "end": o} for p, o in
                       sorted((sp.partition, o) for sp, o in
                              platform.tables.table(TABLE).offsets().items())]}
    screenshot(page, "tables")


def test_a_table_shows_its_documents_with_their_exact_values(served: Served,
                                                             page: Any) -> None:
    answer = page.goto(f"{served.url}/tables/{TABLE}")
    assert answer.status == 200
    assert page.locator("#docs th").all_text_contents()[:5] == [
        "Key", "id", "customer", "status", "amount"]
    rows = cells(page, "#docs tbody tr")
    assert [r[:5] for r in rows] == [[o.id, o.id, o.customer, o.status, str(o.amount)]
                                     for o in FIRST]
    assert page.locator("#table-cards [data-field=documents]").text_content() == "12"
    page.goto(f"{served.url}/tables/notes")  # a document's text is shown as text
    assert cells(page, "#docs tbody tr")[0][:2] == ["n1", "<b>not bold</b>"]
    assert page.locator("#docs b").count() == 0
    later = page.goto(f"{served.url}/tables/{TABLE}?after=o-10")
    assert later.status == 200
    assert page.locator("#docs tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.key)") == ["o-11", "o-12"]


def test_a_query_by_field_returns_exactly_the_matching_documents(served: Served,
                                                                 page: Any) -> None:
    page.goto(f"{served.url}/tables/{TABLE}")
    page.fill("#query input[name=field]", "status")
    page.fill("#query input[name=value]", "paid")
    page.click("#query button[type=submit]")
    page.wait_for_url("**field=status**")
    keys = page.locator("#docs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert keys == [o.id for o in FIRST if o.status == "paid"]
    assert page.locator("#showing").text_content().split() == [
        "6", "documents", "where", "status", "=", '"paid".']
    page.fill("#query input[name=field]", "amount")
    page.fill("#query input[name=value]", "30.5")
    page.click("#query button[type=submit]")
    page.wait_for_url("**field=amount**")
    assert cells(page, "#docs tbody tr")[0][:5] == ["o-03", "o-03", "c0", "paid", "30.5"]
    assert page.locator("#docs tbody tr").count() == 1

    unknown = page.goto(f"{served.url}/tables/{TABLE}?field=colour&value=red")
    assert unknown.status == 200  # the page, saying what is wrong with the query
    assert page.locator("#query-error").text_content() == (
        "no document matched: no document of table 'order_status' has a field 'colour' (in "
        "the first 12); its documents have: amount, customer, id, status")
    typed = page.goto(f"{served.url}/tables/{TABLE}?field=amount&value=abc")
    assert typed.status == 200  # the page, saying what is wrong with the query
    assert page.locator("#query-error").text_content() == (
        "no document matched: field 'amount' holds a number (e.g. 10.5), not a string like "
        "\"abc\"; write the value as JSON (5, true, \"text\")")
    bad = page.goto(f"{served.url}/tables/{TABLE}?field=status&value=%5B1%5D")
    assert bad.status == 200  # the page, saying what is wrong with the query
    assert page.locator("#query-error").text_content() == (
        "condition 'status=[1]': a field is compared with a string, number, true, false or "
        "null, not a JSON list or object")
    assert page.locator("#docs").count() == 0  # a query that could not run shows no rows
    bad_field = page.goto(f"{served.url}/tables/{TABLE}?field=1st&value=1")
    assert bad_field.status == 200  # the page, saying what is wrong with the query
    assert "field '1st' is not a field name" in page.locator("#query-error").text_content()


def _act(page: Any, form: str, confirm: str) -> None:
    page.fill(f"{form} input[name=confirm]", confirm)
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#done")


def test_a_snapshot_taken_then_restored_through_the_browser_brings_its_rows_back(
        served: Served, platform: TestPlatform, page: Any) -> None:
    before = docs(platform)
    offsets_before = platform.tables.table(TABLE).offsets()
    sign_in(page, served, next_path=f"/tables/{TABLE}")
    assert page.locator("#no-snapshots").count() == 1
    _act(page, "form[action$='/snapshot']", TABLE)
    (ref,) = list_snapshots(platform.files, TABLE)
    assert page.locator("#done").text_content() == (
        f"Snapshot taken: 12 document(s) at offsets {listed(offsets_before)}, written to "
        f"{ref.url} (sha256 {ref.sha256}).")
    assert cells(page, "#snapshot-list tbody tr")[0][1:3] == ["12", "12"]

    # the data changes: three new orders and one order paid
    changed = [Order(id="o-01", customer="c1", status="refunded", amount=10.5),
               *(Order(id=f"o-{i:02d}", customer="c9", status="open", amount=1.0)
                 for i in (13, 14, 15))]
    platform.send_many(orders, changed, key=lambda o: o.id)
    after = {**before, **{o.id: o.model_dump() for o in changed}}
    wait_rows(platform, after)
    # the page follows without a reload (polled every 2 s)
    page.wait_for_selector("#table-cards [data-field=documents]:text-is('15')")

    _act(page, "form[action$='/restore']", TABLE)
    assert page.locator("#done").text_content() == (
        f"Restored 'order_status' from {ref.url}: 12 document(s), offsets "
        f"{listed(offsets_before)}. A running feed continues from there.")
    assert docs(platform) == before  # exactly the snapshot's rows
    assert platform.tables.table(TABLE).offsets() == offsets_before
    assert sum(offsets_before.values()) == 12
    # the page says the table is behind its stream by the four records since the snapshot
    assert page.locator("#table-cards [data-field=documents]").text_content() == "12"
    assert page.locator("#table-cards [data-field=behind]").text_content() == "4"
    screenshot(page, "table")


def test_a_rebuild_through_the_browser_replays_the_stream(served: Served,
                                                          platform: TestPlatform,
                                                          page: Any) -> None:
    platform.tables.table(TABLE).put("stray", {"id": "stray", "status": "not in the stream"})
    replayed = replay(platform)
    records = len(platform.records(TABLE))
    sign_in(page, served, next_path=f"/tables/{TABLE}")
    _act(page, "#rebuild form", TABLE)
    assert page.locator("#done").text_content() == (
        # one batch: a key's records in it make one upsert (its last)
        f"Rebuilt 'order_status' from its stream: {records} record(s) replayed, "
        f"{len(replayed)} upsert(s), 0 delete(s), 0 skipped; offsets "
        f"{listed(platform.tables.table(TABLE).offsets())}.")
    assert docs(platform) == replayed  # the stray document is gone; o-01 is refunded
    assert sum(platform.tables.table(TABLE).offsets().values()) == records
    assert page.locator("#table-cards [data-field=behind]").text_content() == "0"


def test_actions_are_refused_without_the_token_and_change_nothing(
        served: Served, platform: TestPlatform, page: Any) -> None:
    before = docs(platform)
    snapshots = list_snapshots(platform.files, TABLE)
    for what in ("snapshot", "restore", "rebuild"):
        answer = httpx2.post(f"{served.url}/tables/{TABLE}/{what}",
                             data={"confirm": TABLE, "snapshot": snapshots[-1].url},
                             headers={"accept": "application/json"}, timeout=10)
        assert (answer.status_code, answer.json()) == (
            403, {"error": "actions need the console's token: sign in at /signin"}), what
    # signed out, the page offers no action form, only how to sign in
    page.goto(f"{served.url}/tables/{TABLE}")
    assert page.locator("form.action").count() == 0
    assert page.locator(".action-off").count() == 3
    assert docs(platform) == before
    assert list_snapshots(platform.files, TABLE) == snapshots


def test_a_wrong_confirmation_is_refused_and_changes_nothing(served: Served,
                                                            platform: TestPlatform,
                                                            browser: Any) -> None:
    platform.tables.table(TABLE).put("stray", {"id": "stray"})
    before = docs(platform)
    page = browser.new_context().new_page()  # its 400 is expected: not the failing `page`
    sign_in(page, served, next_path=f"/tables/{TABLE}")
    form = "#rebuild form"
    page.fill(f"{form} input[name=confirm]", "orders")
    assert page.locator(f"{form} button[type=submit]").is_disabled()  # the page knows
    page.locator(f"{form} button[type=submit]").evaluate("b => { b.disabled = false; }")
    with page.expect_navigation() as navigation:
        page.click(f"{form} button[type=submit]")
    assert navigation.value.status == 400
    assert page.locator(".message").text_content() == (
        "confirmation 'orders' does not match: type 'order_status' to confirm")
    assert docs(platform) == before
    platform.tables.table(TABLE).delete("stray")
    page.context.close()


def test_a_read_only_console_offers_and_takes_no_action(platform: TestPlatform,
                                                        page: Any) -> None:
    with served_console(platform, token=None) as read_only:
        page.goto(f"{read_only.url}/tables/{TABLE}")
        assert page.locator("form.action").count() == 0
        answer = httpx2.post(f"{read_only.url}/tables/{TABLE}/rebuild",
                             data={"confirm": TABLE},
                             headers={"accept": "application/json",
                                      "authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert (answer.status_code, answer.json()["error"]) == (
            403, "the console is read-only: start it with --token to allow actions")


def context_tables(served: Served) -> str:
    return str(served.app.state.console.tables.url)


def test_an_unknown_table_is_a_404_naming_it(served: Served, browser: Any) -> None:
    page = browser.new_context().new_page()  # its 404 is expected: not the failing `page`
    answer = page.goto(f"{served.url}/tables/nope")
    assert answer.status == 404
    assert page.locator(".message").text_content().startswith(
        f"table 'nope' does not exist in {context_tables(served)}")
    page.context.close()


def test_a_rebuild_into_another_existing_table_is_refused(served: Served,
                                                          platform: TestPlatform) -> None:
    other = platform.tables.ensure_table("kept")
    other.put("k", {"mine": True})
    answer = httpx2.post(f"{served.url}/tables/{TABLE}/rebuild",
                         data={"confirm": TABLE, "into": "kept"},
                         headers={"accept": "application/json",
                                  "authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert (answer.status_code, answer.json()) == (400, {"error": (
        "table 'kept' exists: rebuilding 'order_status' into it would replace its documents; "
        "name a new table, or rebuild 'kept' from its own page")})
    assert dict(other.scan(limit=None)) == {"k": {"mine": True}}


def test_a_rebuild_into_a_new_name_builds_a_copy_and_leaves_the_table_serving(
        served: Served, platform: TestPlatform) -> None:
    platform.tables.table(TABLE).put("stray", {"id": "stray"})
    live = docs(platform)
    answer = httpx2.post(f"{served.url}/tables/{TABLE}/rebuild",
                         data={"confirm": TABLE, "into": "order_status-copy"},
                         headers={"authorization": f"Bearer {TOKEN}"}, timeout=30,
                         follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(f"/tables/{TABLE}?outcome=")
    replayed = replay(platform)
    copy = platform.tables.table("order_status-copy")
    assert dict(copy.scan(limit=None)) == replayed
    assert copy.info().feed == TABLE
    assert docs(platform) == live  # the table itself untouched, stray document and all
    platform.tables.table(TABLE).delete("stray")
