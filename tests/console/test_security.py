"""The console's guard: the CSP and its companions on every answer, sign-in with the token,
and ``action()`` — read-only without a token, refused without the session or the bearer
token, without the CSRF field, from another origin, or with a wrong confirmation; allowed
with all of them. A test-only action route counts what got through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millstream.console._app import redacted
from millstream.console._limits import SESSION_S
from millstream.console._render import json_answer
from millstream.console._security import (
    CSP,
    SESSION_COOKIE,
    action,
    csrf_value,
    session_valid,
    session_value,
)
from millstream.console._signins import SignInGuard
from millstream.runtime._clock import SystemClock
from millstream.service import App
from millstream.testing import TestPlatform
from tests.console._serving import TOKEN, Served, screenshot, served_console, sign_in


class Ping(BaseModel):
    n: int


app = App("guarded", partitions=1)


@app.service(inputs={"pings": Ping}, outputs={"pongs": Ping})
def pong(ping: Ping) -> Ping:
    return ping


DONE: list[str] = []


async def _act(request: Request) -> Response:
    form = await action(request, confirm="target-1")
    DONE.append(str(form.get("what", "")))
    return json_answer({"done": len(DONE)})


async def _fail(request: Request) -> Response:
    raise RuntimeError("a bug with <b>details</b> the answer must not show")


def _with_test_action(served: Served) -> None:
    served.app.router.routes.insert(0, Route("/test-action", _act, methods=["POST"]))
    served.app.router.routes.insert(0, Route("/test-bug", _fail, methods=["GET"]))


@pytest.fixture(scope="module")
def platform() -> Iterator[TestPlatform]:
    with TestPlatform(app, clock=SystemClock(), metrics_interval_s=1.0) as platform:
        yield platform


@pytest.fixture(scope="module")
def guarded(platform: TestPlatform) -> Iterator[Served]:
    with served_console(platform, token=TOKEN) as served:
        _with_test_action(served)
        yield served


@pytest.fixture(scope="module")
def read_only(platform: TestPlatform) -> Iterator[Served]:
    with served_console(platform, token=None) as served:
        _with_test_action(served)
        yield served


@pytest.fixture(autouse=True)
def _reset() -> None:
    DONE.clear()


def _post(served: Served, *, data: dict[str, str], cookies: dict[str, str] | None = None,
          headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.post(f"{served.url}/test-action", data=data, cookies=cookies or {},
                       headers={"accept": "application/json", **(headers or {})}, timeout=10)


def test_every_answer_carries_the_csp_and_its_companions(guarded: Served) -> None:
    for path in ("/signin", "/static/console.css", "/no-such-page"):
        answer = httpx2.get(f"{guarded.url}{path}", timeout=10)
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    assert "'unsafe-inline'" not in CSP and "script-src 'self';" in CSP


def test_a_read_only_console_refuses_every_action(read_only: Served) -> None:
    answer = _post(read_only, data={"confirm": "target-1", "what": "x"},
                   headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 403
    assert answer.json() == {"error": "the console is read-only: start it with --token to "
                                      "allow actions"}
    assert DONE == []


def test_an_action_without_the_token_is_refused_and_does_nothing(guarded: Served) -> None:
    answer = _post(guarded, data={"confirm": "target-1", "what": "x"})
    assert (answer.status_code, answer.json()) == (
        403, {"error": "actions need the console's token: sign in at /signin"})
    wrong = _post(guarded, data={"confirm": "target-1"},
                  headers={"authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403
    assert DONE == []


def test_a_session_needs_the_csrf_field_and_the_console_origin(guarded: Served) -> None:
    cookie = {SESSION_COOKIE: session_value(TOKEN)}
    origin = {"origin": guarded.url}
    no_csrf = _post(guarded, data={"confirm": "target-1"}, cookies=cookie, headers=origin)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
    elsewhere = _post(guarded, data={"confirm": "target-1", "csrf": csrf_value(TOKEN)},
                      cookies=cookie, headers={"origin": "http://evil.example"})
    assert elsewhere.status_code == 403 and "Origin" in elsewhere.json()["error"]
    no_origin = _post(guarded, data={"confirm": "target-1", "csrf": csrf_value(TOKEN)},
                      cookies=cookie)
    assert no_origin.status_code == 403
    assert DONE == []
    ok = _post(guarded, data={"confirm": "target-1", "csrf": csrf_value(TOKEN), "what": "a"},
               cookies=cookie, headers=origin)
    assert (ok.status_code, ok.json(), DONE) == (200, {"done": 1}, ["a"])


def test_a_wrong_confirmation_is_refused_naming_what_to_type(guarded: Served) -> None:
    answer = _post(guarded, data={"confirm": "target-2"},
                   headers={"authorization": f"Bearer {TOKEN}"})
    assert (answer.status_code, answer.json()) == (
        400, {"error": "confirmation 'target-2' does not match: type 'target-1' to confirm"})
    ok = _post(guarded, data={"confirm": " target-1 ", "what": "b"},
               headers={"authorization": f"Bearer {TOKEN}"})
    assert (ok.status_code, DONE) == (200, ["b"])


def test_signing_in_sets_an_http_only_strict_cookie_not_the_token(guarded: Served,
                                                                  page: Any) -> None:
    page.goto(f"{guarded.url}/signin")
    page.fill("input[name=token]", "wrong-token-given")
    page.click("form[action='/signin'] button[type=submit]")
    assert page.locator("[role=alert]").text_content() == "That is not the console's token."
    screenshot(page, "signin")
    sign_in(page, guarded, next_path="/signin")
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        SESSION_COOKIE, True, "Strict")
    assert session_valid(cookie["value"], TOKEN) and TOKEN not in cookie["value"]
    assert abs(cookie["expires"] - (time.time() + SESSION_S)) < 60  # the browser drops it too
    assert page.locator("form[action='/signout']").count() == 1


def test_an_unknown_stream_or_page_is_a_404_page_and_markup_in_a_name_is_text(
        guarded: Served, page: Any) -> None:
    answer = page.goto(f"{guarded.url}/streams/no-such-stream")
    assert answer.status == 404
    assert "'no-such-stream'" in page.locator(".error-page .message").text_content()
    screenshot(page, "error-404")
    bad = page.goto(f"{guarded.url}/streams/bad-<b>name")
    assert bad.status == 400
    assert "'bad-<b>name'" in page.locator(".error-page .message").text_content()  # as text
    assert page.locator(".error-page b").count() == 0
    nowhere = page.goto(f"{guarded.url}/nowhere/at/all")
    assert nowhere.status == 404
    assert page.locator(".error-page .message").text_content() == (
        "the console has no page at /nowhere/at/all")


def test_a_request_naming_another_host_is_refused(guarded: Served) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends its
    own name as Host; the console answers only to its loopback names."""
    port = guarded.url.rsplit(":", 1)[1]
    for host, status in ((f"evil.example:{port}", 400), (f"localhost:{port}", 200),
                         (f"127.0.0.1:{port}", 200)):
        answer = httpx2.get(f"{guarded.url}/signin", headers={"host": host}, timeout=10)
        assert answer.status_code == status, host
        assert answer.headers["content-security-policy"] == CSP
    refused = httpx2.post(f"{guarded.url}/test-action", data={"confirm": "target-1"},
                          headers={"host": "evil.example", "origin": "http://evil.example",
                                   "authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert refused.status_code == 400 and DONE == []


def test_the_streams_url_is_shown_without_its_query_or_credentials() -> None:
    assert redacted("kafka://user:secret@broker:9092?sasl.password=hunter2&acks=all") == (
        "kafka://broker:9092")
    assert redacted("local:/tmp/x?durability=process") == "local:/tmp/x"


def test_a_session_ends_twelve_hours_after_sign_in(guarded: Served) -> None:
    now = time.time()
    origin = {"origin": guarded.url}
    form = {"confirm": "target-1", "csrf": csrf_value(TOKEN), "what": "late"}
    for issued, status in ((now - SESSION_S - 1, 403), (now + 3600, 403),
                           (now - SESSION_S + 60, 200)):
        answer = _post(guarded, data=form, headers=origin,
                       cookies={SESSION_COOKIE: session_value(TOKEN, issued)})
        assert answer.status_code == status, issued
    assert DONE == ["late"]
    # a session's time cannot be moved: the HMAC covers it
    forged = session_value(TOKEN, now - SESSION_S - 1).replace(
        str(int(now - SESSION_S - 1)), str(int(now)), 1)
    assert not session_valid(forged, TOKEN)
    assert not session_valid(session_value("another-token", now), TOKEN)


def test_wrong_tokens_from_one_address_are_throttled_right_token_included(
        platform: TestPlatform) -> None:
    with served_console(platform, token=TOKEN) as served:
        clock = [1000.0]
        served.app.state.console.signins = SignInGuard(tries=3, window_s=60.0,
                                                       clock=lambda: clock[0])

        def sign_in_with(token: str) -> httpx2.Response:
            return httpx2.post(f"{served.url}/signin", data={"token": token, "next": "/"},
                               headers={"origin": served.url, "accept": "application/json"},
                               follow_redirects=False, timeout=10)

        for i in range(3):  # at 1000, 1010, 1020: each answered with the form again
            assert sign_in_with(f"wrong-{i}").status_code == 200
            clock[0] += 10.0
        clock[0] += 10.0  # 1040
        refused = sign_in_with(TOKEN)
        assert (refused.status_code, refused.headers["retry-after"], refused.json()) == (
            429, "20", {"error": "3 wrong tokens from 127.0.0.1 within 60 s: try again in "
                                 "20 s"})
        assert refused.headers["content-security-policy"] == CSP
        assert SESSION_COOKIE not in refused.cookies
        clock[0] += 20.0  # 1060: the first wrong token is a window old, one more try
        assert sign_in_with("wrong-again").status_code == 200
        assert sign_in_with(TOKEN).status_code == 429
        clock[0] += 60.0
        right = sign_in_with(TOKEN)
        assert right.status_code == 303 and session_valid(right.cookies[SESSION_COOKIE], TOKEN)


def test_a_bug_is_a_500_page_with_the_security_headers_and_no_details(
        guarded: Served, page: Any) -> None:
    answer = httpx2.get(f"{guarded.url}/test-bug", headers={"accept": "application/json"},
                        timeout=10)
    assert (answer.status_code, answer.json()) == (500, {
        "error": "the console failed on this request (RuntimeError); its log has the "
                 "details"})
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-frame-options"] == "DENY"
    shown = httpx2.get(f"{guarded.url}/test-bug", timeout=10)
    assert shown.status_code == 500 and "details</b>" not in shown.text
    assert "the console failed on this request (RuntimeError)" in shown.text
    assert shown.headers["content-security-policy"] == CSP


def test_digits_that_are_not_ascii_and_non_ascii_cookies_are_refused_not_a_500(
        guarded: Served) -> None:
    """``"²".isdigit()`` is True but ``int("²")`` fails, and ``hmac.compare_digest`` refuses
    str with non-ASCII characters: each is bad input, answered as such."""
    for name, value in (("offset", "²"), ("partition", "³")):
        answer = httpx2.get(f"{guarded.url}/streams/pings?{name}={value}", timeout=10)
        assert answer.status_code == 400
        assert (f"{name} &#39;{value}&#39; is not a whole number ≥ 0; give one such as 0 or "
                "42") in answer.text
    after = httpx2.get(f"{guarded.url}/api/streams/pings?after=0:²", timeout=10)
    assert (after.status_code, after.json()) == (400, {
        "error": "position '0:²' is not PARTITION:OFFSET, such as 0:42"})
    listed = httpx2.get(f"{guarded.url}/exceptions?replayed=²&count=²", timeout=10)
    assert listed.status_code == 200
    for cookie, csrf in (("é.x", csrf_value(TOKEN)), (session_value(TOKEN), "é")):
        # raw bytes: a client may send any (httpx2 would refuse a non-ASCII cookie)
        answer = httpx2.post(f"{guarded.url}/test-action",
                             data={"confirm": "target-1", "csrf": csrf}, timeout=10,
                             headers={"accept": "application/json", "origin": guarded.url,
                                      "cookie": f"{SESSION_COOKIE}={cookie}".encode()})
        assert answer.status_code == 403, (cookie, csrf)
    assert not session_valid("²." + "0" * 64, TOKEN)
    assert DONE == []
