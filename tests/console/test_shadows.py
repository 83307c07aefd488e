"""The console's Shadows page in headless Chromium, over a real production service and a real
shadow version of it (other code, changing one field) in a TestPlatform: the list, the diff
field by field with the exact old and new values of the records that differ, a promotion
refused while the services run, then done end to end through the browser — production's
group takes over the shadow's offsets and state, recorded in millstream.deployments — and
refused without the token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

import millstream
from millstream._wellknown import DEPLOYMENTS
from millstream.runtime._clock import SystemClock
from millstream.runtime._state import CheckpointStore
from millstream.runtime._threads import ServiceThreads
from millstream.service import App, Context
from millstream.streams._reading import read_to_end
from millstream.testing import TestPlatform
from tests.console._serving import TOKEN, Served, screenshot, served_console, sign_in


class Item(BaseModel):
    id: int
    n: int


class Result(BaseModel):
    id: int
    n: int
    note: str = "scored"


def make(version: int) -> App:
    app = App("shop", partitions=2)

    @app.service(inputs={"items": Item}, outputs={"results": Result}, stateful=True)
    def scorer(item: Item, ctx: Context) -> Result:
        ctx.state["seen"] = ctx.state.get("seen", 0) + 1
        if version == 2 and item.id % 3 == 0:
            return Result(id=item.id, n=item.n * 3)  # the one field v2 changes
        return Result(id=item.id, n=item.n * 2)

    return app


V1, V2 = make(1), make(2)
SHADOW = "shop.scorer.shadow.v2"


def records(platform: TestPlatform, stream: str) -> int:
    return platform.streams.admin().describe_stream(stream).records


def committed(platform: TestPlatform, group: str) -> dict[tuple[str, int], int | None]:
    return {(p.stream, p.partition): p.committed
            for p in platform.streams.admin().describe_group(group).partitions
            if p.stream == "items"}


def deployments(platform: TestPlatform) -> list[dict[str, Any]]:
    if DEPLOYMENTS not in platform.streams.admin().list_streams():
        return []
    return [json.loads(r.value or b"") for r in read_to_end(platform.streams, DEPLOYMENTS)]


@pytest.fixture(scope="module")
def platform() -> Iterator[TestPlatform]:
    with TestPlatform(V1, clock=SystemClock(), metrics_interval_s=1.0) as platform:
        yield platform


@pytest.fixture(scope="module")
def running(platform: TestPlatform) -> Iterator[tuple[Any, ServiceThreads]]:
    """Production (v1) and the shadow v2, both having processed items 1..12."""
    production = platform.start("scorer")
    platform.send_many("items", [Item(id=i, n=i) for i in range(1, 13)], key=lambda i: str(i.id))
    shadow = ServiceThreads(V2, lambda: millstream.open_streams(platform.url), ["scorer"],
                            shadow="v2", clock=SystemClock(), metrics_interval_s=1.0,
                            poll_timeout_s=0.05).start()
    platform.wait_until(lambda: records(platform, "results") == 12
                        and records(platform, "results.shadow.v2") == 12, timeout=20)
    admin = platform.streams.admin()  # both have committed what they read
    platform.wait_until(lambda: sum(v or 0 for v in committed(platform, SHADOW).values()) == 12
                        and admin.describe_group("shop.scorer").lag == 0, timeout=20)
    yield production, shadow
    production.stop()
    shadow.stop(10)


@pytest.fixture(scope="module")
def served(platform: TestPlatform, running: Any) -> Iterator[Served]:
    with served_console(platform, token=TOKEN) as served:
        yield served


def test_the_list_shows_the_shadow_its_service_and_streams(served: Served, platform: TestPlatform,
                                                           page: Any) -> None:
    platform.wait_until(lambda: bool(served.app.state.console.history.records(SHADOW)),
                        timeout=10)
    page.goto(f"{served.url}/shadows")
    row = page.locator(f"tr[data-group='{SHADOW}']")
    assert [c.strip() for c in row.locator("td").all_text_contents()] == [
        SHADOW, "scorer (shop)", "v2", "running", "running", "0", "items", "results", "–"]
    page.wait_for_selector("[data-live-status].ok")
    screenshot(page, "shadows")


def test_the_diff_shows_exactly_the_changed_field_with_its_old_and_new_values(
        served: Served, page: Any) -> None:
    page.goto(f"{served.url}/shadows/{SHADOW}")
    diff = page.locator("section.diff[data-stream='results']")
    counts = {el.get_attribute("data-count"): el.text_content()
              for el in diff.locator("[data-count]").all()}
    assert counts == {"production_records": "12", "shadow_records": "12", "equal": "8",
                      "differing": "4", "only_production": "0", "only_shadow": "0"}
    assert diff.locator(".field-count").all_text_contents() == ["n in 4 records"]
    rows = [[c.strip() for c in r.locator("td").all_text_contents()]
            for r in diff.locator("table.changes tbody tr").all()]
    # by key, as bytes: b"12" < b"3" < b"6" < b"9"; only n differs: 2·id before, 3·id after
    assert rows == [[str(i), "1", "n", str(2 * i), str(3 * i)] for i in (12, 3, 6, 9)]
    screenshot(page, "shadow")


def test_promote_is_refused_while_the_services_run(served: Served, browser: Any,
                                                    platform: TestPlatform) -> None:
    page = browser.new_context().new_page()  # its 400 is expected: not the failing `page`
    sign_in(page, served, next_path=f"/shadows/{SHADOW}")
    page.fill("#promote input[name=confirm]", "shop.scorer")
    screenshot(page, "shadow-promote-form")
    with page.expect_navigation() as navigation:
        page.click("#promote button[type=submit]")
    assert navigation.value.status == 400
    assert page.locator(".message").text_content() == (
        "group 'shop.scorer' has 1 live member(s); stop both the production service and its "
        "shadow 'v2', then promote")
    assert deployments(platform) == []
    page.context.close()


def test_promote_is_refused_without_the_token(served: Served, platform: TestPlatform) -> None:
    answer = httpx2.post(f"{served.url}/shadows/{SHADOW}/promote",
                         data={"confirm": "shop.scorer"},
                         headers={"accept": "application/json"}, timeout=10)
    assert (answer.status_code, answer.json()) == (
        403, {"error": "actions need the console's token: sign in at /signin"})
    for typed in ("v2", SHADOW):  # the shadow's own group is not what is overwritten
        wrong = httpx2.post(f"{served.url}/shadows/{SHADOW}/promote", data={"confirm": typed},
                            headers={"accept": "application/json",
                                     "authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert (wrong.status_code, wrong.json()) == (400, {
            "error": f"confirmation '{typed}' does not match: type 'shop.scorer' to confirm"})
    assert deployments(platform) == []


def test_promote_through_the_browser_hands_the_shadows_offsets_and_state_to_production(
        served: Served, platform: TestPlatform, running: Any, page: Any) -> None:
    production, shadow = running
    production.stop()
    # the shadow goes on alone: three more items, which production has not read
    platform.send_many("items", [Item(id=i, n=i) for i in (13, 14, 15)], key=lambda i: str(i.id))
    platform.wait_until(lambda: records(platform, "results.shadow.v2") == 15, timeout=20)
    assert shadow.stop(10) == []
    admin = platform.streams.admin()
    platform.wait_until(lambda: not admin.describe_group(SHADOW).members
                        and not admin.describe_group("shop.scorer").members, timeout=10)
    before = committed(platform, "shop.scorer")
    handed = committed(platform, SHADOW)
    assert sum(v or 0 for v in before.values()) == 12
    assert sum(v or 0 for v in handed.values()) == 15

    sign_in(page, served, next_path=f"/shadows/{SHADOW}")
    page.fill("#promote input[name=confirm]", "shop.scorer")
    page.click("#promote button[type=submit]")
    page.wait_for_selector("#promoted")
    assert "?outcome=" in page.url  # shown by a GET: reloading it does not promote again

    assert committed(platform, "shop.scorer") == handed
    (record,) = deployments(platform)
    offsets = {str(p): o for (_, p), o in sorted(handed.items())}
    assert {k: v for k, v in record.items() if k != "time_ms"} == {
        "kind": "promotion", "app": "shop", "service": "scorer", "version": "v2",
        "from_group": SHADOW, "to_group": "shop.scorer", "offsets": {"items": offsets},
        "checkpoints": 2}
    store = CheckpointStore(platform.streams, "shop.scorer")
    store.refresh()
    assert sum(store.latest(p).state["seen"] for p in (0, 1)) == 15  # type: ignore[union-attr]

    banner = page.locator("#promoted p").text_content()
    assert " ".join(banner.split()) == (
        "Promoted scorer v2: group shop.scorer now continues from shop.scorer.shadow.v2's "
        "offsets, with its state (2 checkpoints copied). Now run the new code as production: "
        "millstream run MODULE:APP scorer.")
    shown = [[c.strip() for c in r.locator("td").all_text_contents()]
             for r in page.locator("#promoted-offsets tbody tr").all()]
    assert shown == [["items", p, str(o)] for p, o in offsets.items()]
    page.reload()
    assert len(deployments(platform)) == 1
    screenshot(page, "shadow-promoted")
    page.goto(f"{served.url}/shadows")
    row = page.locator(f"tr[data-group='{SHADOW}'] [data-field=promoted]")
    assert row.text_content().startswith("20")  # the promotion's time
