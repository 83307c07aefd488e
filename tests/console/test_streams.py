"""The console's Streams pages in headless Chromium, over a running service in TestPlatform:
exact partition offsets, records decoded (JSON, text, hex), search by key, jumps to an offset
and a time, the live tail, a 1 MiB record cut, and a ``<script>`` payload shown as text."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from millstream.runtime._clock import SystemClock
from millstream.service import App
from millstream.testing import TestPlatform
from tests.console._serving import Served, screenshot, served_console

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
BIG = 1024 * 1024 - 64  # a value just under the 1 MiB record limit (key and headers count)
SCRIPT = b"<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">"


class Order(BaseModel):
    id: int
    customer: str
    total: float


class Invoice(BaseModel):
    order_id: int
    amount: float


app = App("shop", partitions=2)


@app.service(inputs={"orders": Order}, outputs={"invoices": Invoice})
def billing(order: Order) -> Invoice:
    return Invoice(order_id=order.id, amount=order.total)


def order(i: int) -> bytes:
    return Order(id=i, customer=f"c{i % 3}", total=10.0 * i).model_dump_json().encode()


@pytest.fixture(scope="module")
def platform() -> Iterator[TestPlatform]:
    """``orders[0]``: offsets 0..5 (ids 0, 2, 4, …), keys c0, c2, c1, c0, c2, c1, stamped
    T0 + offset s; ``orders[1]``: offsets 0..3 (ids 1, 3, 5, 7), keys c1, c0, c2, c1, stamped
    T0 + offset s + 0.5 s. ``raw``: binary, text, the script, and a 1 MiB value."""
    with TestPlatform(app, clock=SystemClock(), metrics_interval_s=1.0) as platform:
        streams = platform.streams
        streams.admin().create_stream("raw", 1)
        with streams.open_producer() as producer:
            for partition, ids in ((0, range(0, 12, 2)), (1, range(1, 8, 2))):
                for offset, i in enumerate(ids):
                    producer.send("orders", order(i), key=f"c{i % 3}".encode(),
                                  partition=partition,
                                  headers=(("millstream-schema", b"Order/1"),),
                                  timestamp=T0 + offset * 1000 + 500 * partition)
            producer.send("raw", bytes(range(16)), key=b"\x00\xff", timestamp=T0)  # @0
            producer.send("raw", "plain text é".encode(), key=b"t", timestamp=T0)  # @1
            producer.send("raw", SCRIPT, key=b"<b>key</b>", timestamp=T0)  # @2
            producer.send("raw", b"x" * BIG, key=b"big", timestamp=T0)  # @3
            producer.flush()
        with platform.running("billing"):
            platform.wait_for("invoices", 10)
            yield platform


@pytest.fixture(scope="module")
def served(platform: TestPlatform) -> Iterator[Served]:
    with served_console(platform, token=None) as served:
        yield served


def rows(page: Any) -> list[str]:
    """The records table's positions, top to bottom."""
    return [text.strip() for text in page.locator("#records td.pos").all_inner_texts()]


def error_of(served: Served, path: str) -> str:
    """The error a page answers bad input with (400: fetched here, not in the browser, whose
    console logs every 400 as an error)."""
    answer = httpx2.get(f"{served.url}{path}", timeout=10)
    assert answer.status_code == 400
    found = re.search(r'<p class="banner error" role="alert" id="error">(.*?)</p>', answer.text)
    assert found is not None, answer.text
    return html.unescape(found[1])


def cells(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def test_the_streams_page_lists_every_stream_with_exact_counts(page: Any,
                                                               served: Served) -> None:
    page.goto(f"{served.url}/streams")
    orders = page.locator('#streams tr[data-stream="orders"] td')
    assert orders.all_inner_texts()[:3] == ["orders", "2", "10"]
    assert orders.nth(4).inner_text() == "forever"
    assert cells(page, '#streams tr[data-stream="raw"] td')[:3] == ["raw", "1", "4"]
    assert page.locator('#streams tr[data-stream="millstream.metrics"] td').nth(4) \
        .inner_text() == "7d"
    # the sizes the embedded log keeps, live from the JSON route too
    assert page.locator('#streams tr[data-stream="raw"] [data-field=bytes]').inner_text() \
        .endswith("MiB")
    page.wait_for_selector("[data-live-status].ok")
    screenshot(page, "streams")


def test_a_stream_shows_each_partitions_exact_offsets_and_its_records_decoded(
        page: Any, served: Served) -> None:
    page.goto(f"{served.url}/streams/orders?partition=0&offset=0")
    assert [cells(page, f'#partitions tr[data-partition="{p}"] td')[:4] for p in (0, 1)] == \
        [["0", "0", "6", "6"], ["1", "0", "4", "4"]]
    assert rows(page) == [f"[0] @ {o}" for o in range(6)]
    first = page.locator("#records tr.record").first
    assert first.locator("td.key").inner_text().strip() == "c0"
    assert first.locator("td.time").inner_text() == "2023-11-14 22:13:20"
    assert first.locator("pre.value").inner_text() == json.dumps(
        {"id": 0, "customer": "c0", "total": 0.0}, indent=2)
    assert first.locator(".tag.kind-json").inner_text().lower() == "json"
    assert first.locator("details.headers th").text_content() == "millstream-schema"
    assert first.locator("details.headers code").text_content() == "Order/1"


def test_bytes_are_shown_as_hex_and_text_as_text(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/streams/raw?partition=0&offset=0")
    assert rows(page) == ["[0] @ 0", "[0] @ 1", "[0] @ 2", "[0] @ 3"]
    records = page.locator("#records tr.record")
    binary, text = records.nth(0), records.nth(1)
    assert binary.locator("pre.value").inner_text() == bytes(range(16)).hex()
    assert binary.locator("td.key code").inner_text() == "00ff"
    assert binary.locator(".tag.kind-hex").first.inner_text().lower() == "hex"
    assert text.locator("pre.value").inner_text() == "plain text é"


def test_a_search_by_key_finds_exactly_the_records_with_that_key(page: Any,
                                                                 served: Served) -> None:
    page.goto(f"{served.url}/streams/orders")
    page.fill("#search-key input[name=key]", "c1")
    page.click("#search-key button")
    page.wait_for_url("**key=c1**")
    assert sorted(rows(page)) == ["[0] @ 2", "[0] @ 5", "[1] @ 0", "[1] @ 3"]
    assert "4 records found in 10 read" in page.locator("#mode").inner_text()
    # a binary key, given in hex
    page.goto(f"{served.url}/streams/raw?key=00ff&hex=1")
    assert rows(page) == ["[0] @ 0"]
    assert error_of(served, "/streams/raw?key=zz&hex=1") == (
        "key 'zz' is not hex: give two hex digits a byte, such as 00ff10, or untick 'hex' to "
        "search for the key as text")


def test_jumps_to_an_offset_and_to_a_time_land_on_the_right_record(page: Any,
                                                                   served: Served) -> None:
    page.goto(f"{served.url}/streams/orders")
    page.select_option("#jump-offset select[name=partition]", "1")
    page.fill("#jump-offset input[name=offset]", "2")
    page.click("#jump-offset button")
    page.wait_for_url("**offset=2**")
    assert rows(page) == ["[1] @ 2", "[1] @ 3"]

    page.select_option("#jump-time select[name=partition]", "0")
    page.fill("#jump-time input[name=time]", "2023-11-14T22:13:23")  # T0 + 3 s
    page.click("#jump-time button")
    page.wait_for_url("**time=**")
    assert rows(page)[0] == "[0] @ 3"
    assert "is at offset 3" in page.locator("#mode").inner_text()
    page.goto(f"{served.url}/streams/orders?partition=1&time=2023-11-14T22:13:23.001Z")
    assert rows(page)[0] == "[1] @ 3"  # stamped T0 + 3.5 s

    assert error_of(served, "/streams/orders?partition=0&offset=99") == (
        "offset 99 is outside orders[0]: it keeps offsets 0 to 5 (the next record goes to 6); "
        "give an offset from 0 to 6")


def test_the_live_tail_shows_a_record_sent_after_the_page_loaded(
        page: Any, served: Served, platform: TestPlatform) -> None:
    page.goto(f"{served.url}/streams/raw")
    page.wait_for_selector("[data-live-status].ok")
    assert rows(page) == ["[0] @ 3", "[0] @ 2", "[0] @ 1", "[0] @ 0"]  # newest first
    with platform.streams.open_producer() as producer:
        producer.send("raw", b'{"late": true}', key=b"new")
    page.wait_for_selector('#records tr.record[data-offset="4"]', timeout=10_000)
    assert rows(page)[0] == "[0] @ 4"
    assert page.locator("#records tr.record").first.locator("pre.value").inner_text() == \
        '{\n  "late": true\n}'
    assert page.locator('#partitions tr[data-partition="0"] [data-field=end]').inner_text() \
        == "5"
    # paused, the tail fetches no records; resumed, it catches up
    page.click("#pause")  # a fetch already under way lands without its records
    with platform.streams.open_producer() as producer:
        producer.send("raw", b"while paused", key=b"new")
    page.wait_for_selector('#partitions tr[data-partition="0"] [data-field=end]:text-is("6")')
    page.wait_for_timeout(2500)
    assert rows(page)[0] == "[0] @ 4"
    page.click("#pause")
    page.wait_for_selector('#records tr.record[data-offset="5"]', timeout=10_000)
    assert rows(page)[:2] == ["[0] @ 5", "[0] @ 4"]
    page.goto(f"{served.url}/streams/orders")
    screenshot(page, "stream")


def test_a_1_mib_record_is_shown_cut_with_its_size(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/streams/raw?partition=0&offset=3")
    big = page.locator('#records tr.record[data-offset="3"]')
    assert len(big.locator("pre.value").inner_text()) == 65_536
    assert big.locator(".cut").inner_text() == (
        f"cut: showing the first 65,536 of {BIG:,} bytes")
    # the JSON the tail fetches is bounded too
    answer = httpx2.get(f"{served.url}/api/streams/raw?after=0:3", timeout=10).json()
    value = answer["records"][0]["value"]
    assert (len(value["text"]), value["size"], value["shown"], value["cut"]) == (
        65_536, BIG, 65_536, True)


def test_a_script_in_a_payload_is_shown_as_text_and_never_run(page: Any,
                                                              served: Served) -> None:
    for path in ("/streams/raw?partition=0&offset=2", "/streams/raw"):  # server- and JS-drawn
        page.goto(f"{served.url}{path}")
        record = page.locator('#records tr.record[data-offset="2"]')
        assert record.locator("pre.value").inner_text() == SCRIPT.decode()
        assert record.locator("td.key code").inner_text() == "<b>key</b>"
        assert page.evaluate("window.pwned") is None
        assert page.locator("#records script, #records img, #records b").count() == 0


def test_a_stream_that_does_not_exist_is_a_404_naming_it(served: Served) -> None:
    for path in ("/streams/nope", "/api/streams/nope"):
        answer = httpx2.get(f"{served.url}{path}", headers={"accept": "application/json"},
                            timeout=10)
        assert answer.status_code == 404
        assert "nope" in answer.json()["error"]
