"""The site's HTTP server against slow and abusive clients, over raw sockets on 127.0.0.1.

A real server (``InProcessSite``, web only, built by ``build_server``) with small limits so
that each test takes about a second: a trickled body is answered 408 within the rate window,
a request head that never ends is closed at the header deadline, one connection beyond the
cap gets 503 while the others are held, a response that does not wait for the body closes
the connection after a bounded drain, and Transfer-Encoding with Content-Length gets 400.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.support.platform_fixtures import isolate

from millstream.files import open_files
from videosite.cli import main
from videosite.inprocess import InProcessSite, free_port
from videosite.web.ranges import serve_file
from videosite.web.server import ServerLimits, build_server

TOKEN = "secret"
LIMITS = ServerLimits(max_connections=50, header_timeout_s=1.0, min_body_rate=1000,
                      body_rate_window_s=1.0, send_timeout_s=1.0, keep_alive_s=5,
                      linger_s=1.0, linger_bytes=64 * 1024)
#: the longest the rate check may take past its window: one tick (window / 8), plus slack
#: for a loaded machine (whose server thread may be held up a second or two)
SLACK_S = 3.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSite]:
    with pytest.MonkeyPatch.context() as env:
        isolate(env, tmp_path_factory.mktemp("server-site"))
        with InProcessSite(token=TOKEN, services=(), limits=LIMITS) as running:
            yield running


def _address(site: InProcessSite) -> tuple[str, int]:
    assert site.url is not None
    host, port = site.url.removeprefix("http://").split(":")
    return host, int(port)


def _connect(site: InProcessSite) -> socket.socket:
    sock = socket.create_connection(_address(site), timeout=10)
    return sock


class Response:
    """One HTTP response read off a socket, and whether the server closed after it."""

    def __init__(self, sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            assert piece, f"the connection closed before a response: {data!r}"
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        length = int(self.headers.get("content-length", "0"))
        while len(rest) < length:
            piece = sock.recv(65536)
            assert piece, "the connection closed inside the response body"
            rest += piece
        self.body = rest[:length]

    @property
    def closing(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def _closed(sock: socket.socket, within: float = 5.0) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``within`` seconds,
    discarding anything else it sends."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def _multipart(path: Path, title: str) -> tuple[bytes, str]:
    boundary = "soakboundary1234"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{title}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_trickled_body_is_answered_408_and_closed_within_the_rate_window(
        site: InProcessSite) -> None:
    with _connect(site) as sock:
        # the clock starts before the head is sent: the server's window starts when it has
        # read the head, which may be before this thread runs again after sendall (0.998 s
        # was measured once with the clock started after it)
        started = time.monotonic()
        sock.sendall(b"POST /api/videos HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                     + TOKEN.encode() + b"\r\nContent-Type: multipart/form-data; boundary=b"
                     b"\r\nContent-Length: 100000\r\n\r\n"
                     b"--b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n")
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - started < LIMITS.body_rate_window_s + 10:  # 10 bytes/s
            try:
                sock.send(b"x")  # the title, a letter at a time
            except OSError:  # closed under us: the answer is already in our buffer
                break
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - started
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            assert piece, answer
            answer += piece
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"connection: close" in answer.lower()
        assert b"under the minimum of 1000 bytes/s" in answer
        assert _closed(sock)
    assert LIMITS.body_rate_window_s <= elapsed <= LIMITS.body_rate_window_s + SLACK_S


def test_a_body_above_the_minimum_rate_is_not_cut_off_however_long_it_takes(
        site: InProcessSite, clips: dict[str, Path]) -> None:
    body, content_type = _multipart(clips["tiny"], "steady")
    pieces = 25
    size = -(-len(body) // pieces)
    assert size / 0.1 > 4 * LIMITS.min_body_rate  # comfortably above the minimum
    with _connect(site) as sock:
        sock.sendall(f"POST /api/videos HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}"
                     f"\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode())
        started = time.monotonic()
        for n in range(0, len(body), size):
            sock.sendall(body[n:n + size])
            time.sleep(0.1)
        assert time.monotonic() - started > 2 * LIMITS.body_rate_window_s
        response = Response(sock)
    assert response.status == 202, response.body


async def _lifespan(receive: Any, send: Any) -> None:
    """The ASGI lifespan protocol of an app with nothing to start or stop."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def _slow_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that takes 1.5 s over each piece of a request body, then answers with
    the byte count: the server stops reading while it waits."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    total, more = 0, True
    while more:
        message = await receive()
        total += len(message.get("body", b""))
        more = message.get("more_body", False)
        if more:
            await asyncio.sleep(1.5)
    body = str(total).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def test_time_the_server_spends_not_reading_is_not_charged_to_the_client() -> None:
    size = 600_000
    with _serving(_slow_reader) as port, socket.create_connection(("127.0.0.1", port),
                                                                   timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(f"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n"
                     .encode() + bytes(size))
        response = Response(sock)
        elapsed = time.monotonic() - started
    assert response.status == 200 and response.body == str(size).encode()
    # the server held the client up for several rate windows, and did not call it slow
    assert elapsed >= 2 * LIMITS.body_rate_window_s


async def _big_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that answers every request with BIG_ANSWER bytes, in 64 KiB pieces."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(BIG_ANSWER).encode())]})
    piece = bytes(64 * 1024)
    for _ in range(BIG_ANSWER // len(piece)):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


BIG_ANSWER = 64 * 1024 * 1024


@contextmanager
def _serving(app: Any) -> Iterator[int]:
    """``app`` behind ``build_server`` with LIMITS on a free port, for the block."""
    port = free_port(0)
    server = build_server(app, host="127.0.0.1", port=port, limits=LIMITS, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_response_left_unread_is_cut_at_the_send_timeout() -> None:
    with _serving(_big_answer) as port, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(LIMITS.send_timeout_s + SLACK_S)  # read nothing
        received = 0
        sock.settimeout(5)
        try:
            while piece := sock.recv(1 << 20):
                received += len(piece)
        except ConnectionResetError:
            pass
    # what was in flight when it was cut: the buffers, not the answer
    assert 0 < received < BIG_ANSWER // 4


def test_a_request_head_that_never_ends_is_closed_at_the_header_deadline(
        site: InProcessSite) -> None:
    started = time.monotonic()  # before the server can start its clock (at the connection)
    with _connect(site) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - started < LIMITS.header_timeout_s + 10:
            try:
                sock.send(b"X-Slow: 1\r\n")  # 110 bytes/s of headers, never the end
            except OSError:
                break
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - started
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:  # when a send failed first, the answer is queued
            piece = sock.recv(65536)
            assert piece, answer
            answer += piece
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert _closed(sock)
    assert LIMITS.header_timeout_s <= elapsed <= LIMITS.header_timeout_s + SLACK_S


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
        site: InProcessSite) -> None:
    with _connect(site) as sock:
        started = time.monotonic()
        sock.settimeout(LIMITS.header_timeout_s + 10)
        assert sock.recv(65536) == b""  # closed without a word
        elapsed = time.monotonic() - started
    assert LIMITS.header_timeout_s - 0.1 <= elapsed <= LIMITS.header_timeout_s + SLACK_S


def test_a_kept_alive_connection_serves_several_requests(site: InProcessSite) -> None:
    with _connect(site) as sock:
        for _ in range(3):
            sock.sendall(b"GET /upload HTTP/1.1\r\nHost: t\r\n\r\n")
            response = Response(sock)
            assert response.status == 200 and not response.closing
            time.sleep(0.6 * LIMITS.header_timeout_s)  # idle time is the keep-alive's
        sock.sendall(b"GET /upload HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Response(sock).status == 200


@pytest.mark.parametrize(("path", "authorization", "status"), [
    ("/api/videos", "", 401),
    ("/api/videos", "Authorization: Bearer wrong\r\n", 401),
    ("/api/videos/0123456789abcdef", f"Authorization: Bearer {TOKEN}\r\n", 405),
])
def test_a_refusal_before_the_body_closes_after_a_bounded_drain(
        site: InProcessSite, caplog: pytest.LogCaptureFixture, path: str, authorization: str,
        status: int) -> None:
    chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
    sent = 0
    failed: list[OSError] = []

    def send_until_cut_off(sock: socket.socket) -> None:
        nonlocal sent
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError as exc:  # the server closed: the only way out before the deadline
            failed.append(exc)

    caplog.set_level(logging.DEBUG, logger="videosite.web._protocol")
    with _connect(site) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\n{authorization}Transfer-Encoding: "
                     "chunked\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n".encode())
        sender = threading.Thread(target=send_until_cut_off, args=(sock,), daemon=True)
        sender.start()
        response = Response(sock)
        sender.join(15)
    assert response.status == status
    assert response.closing
    assert response.headers["x-content-type-options"] == "nosniff"
    assert len(failed) == 1, "the server kept reading the body for 10 s"
    drained = [r.getMessage() for r in caplog.records
               if "bytes of unread input" in r.getMessage()]
    assert len(drained) == 1, drained
    discarded = int(drained[0].split("discarding ")[1].split()[0])
    # one read past the bound at most (asyncio reads up to 256 KiB at a time)
    assert discarded <= LIMITS.linger_bytes + 256 * 1024
    # what the client could push: the server's reads, plus both kernels' socket buffers
    assert sent <= 64 * 1024 * 1024


def test_transfer_encoding_with_content_length_is_refused_400_and_closed(
        site: InProcessSite) -> None:
    with _connect(site) as sock:
        sock.sendall(b"POST /api/videos HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                     + TOKEN.encode() + b"\r\nContent-Type: multipart/form-data; boundary=b"
                     b"\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")
        response = Response(sock)
        assert _closed(sock)
    assert response.status == 400
    assert response.closing
    assert b"both Transfer-Encoding and Content-Length" in response.body
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("pieces", [1, 8])
def test_a_request_head_over_16_kib_is_refused_431_and_closed(site: InProcessSite,
                                                              pieces: int) -> None:
    head = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    with _connect(site) as sock:
        size = -(-len(head) // pieces)
        for n in range(0, len(head), size):  # whole in one read, or in pieces
            sock.sendall(head[n:n + size])
            time.sleep(0.05)
        response = Response(sock)
        assert _closed(sock)
    assert response.status == 431 and response.closing
    assert response.headers["x-content-type-options"] == "nosniff"


def test_one_connection_beyond_the_cap_gets_503_while_the_others_are_held(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cap = 3
    limits = ServerLimits(max_connections=cap, header_timeout_s=30.0, keep_alive_s=30)
    caplog.set_level(logging.WARNING, logger="videosite.web._protocol")
    with InProcessSite(token=TOKEN, services=(), limits=limits) as capped:
        held = []
        for _ in range(cap):  # each one known to the server: it answered on it
            sock = _connect(capped)
            sock.sendall(b"GET /upload HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Response(sock).status == 200
            held.append(sock)
        with _connect(capped) as extra:
            extra.sendall(b"GET /upload HTTP/1.1\r\nHost: t\r\n\r\n")
            refused = Response(extra)
            assert _closed(extra)
        assert refused.status == 503 and refused.closing
        assert refused.headers["content-security-policy"].startswith("default-src 'none'")
        for sock in held:  # the held ones still work
            sock.sendall(b"GET /upload HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Response(sock).status == 200
        held.pop().close()
        time.sleep(0.3)  # the server sees the close
        with _connect(capped) as another:
            another.sendall(b"GET /upload HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Response(another).status == 200
        for sock in held:
            sock.close()
    warnings = [r.getMessage() for r in caplog.records if "connection cap" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"connection cap reached: {cap} connections open, the cap is {cap} "
        "(VIDEOSITE_MAX_CONNECTIONS); answering new ones 503 (1 refused since the last "
        "report, the latest from 127.0.0.1:")


def test_limits_come_from_the_environment_and_bad_values_name_their_variable() -> None:
    limits = ServerLimits.from_env({"VIDEOSITE_MAX_CONNECTIONS": "7",
                                    "VIDEOSITE_HEADER_TIMEOUT_S": "2.5"}, min_body_rate=10)
    assert (limits.max_connections, limits.header_timeout_s, limits.min_body_rate) == (7, 2.5, 10)
    assert limits.body_rate_window_s == ServerLimits().body_rate_window_s
    with pytest.raises(ValueError, match="VIDEOSITE_MIN_BODY_RATE='fast' is not an int"):
        ServerLimits.from_env({"VIDEOSITE_MIN_BODY_RATE": "fast"})
    with pytest.raises(ValueError, match=r"VIDEOSITE_LINGER_S \(ServerLimits.linger_s\) must "
                                         r"be above 0, not 0.0"):
        ServerLimits.from_env({"VIDEOSITE_LINGER_S": "0"})


def test_the_commands_refuse_a_limit_that_is_not_above_zero_naming_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["web", "--min-body-rate", "0"]) == 2
    assert capsys.readouterr().err == "millstream-video web: --min-body-rate must be above 0, " \
                                      "not 0\n"
    monkeypatch.setenv("VIDEOSITE_API_TOKEN", TOKEN)
    monkeypatch.setenv("VIDEOSITE_HEADER_TIMEOUT_S", "-1")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == ("millstream-video serve: VIDEOSITE_HEADER_TIMEOUT_S "
                                       "(ServerLimits.header_timeout_s) must be above 0, "
                                       "not -1.0\n")


def _open_under(folder: Path) -> list[str]:
    """The files under ``folder`` this process holds open."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc/self/fd")
def test_a_medium_whose_client_goes_away_is_closed_at_once(tmp_path: Path) -> None:
    """A client that leaves in the middle of a 32 MiB medium: the server closes the object
    as the response ends, not when the garbage collector finds it (with the collector off
    here, a generator caught in a cycle with its cancelled frame held it open)."""
    folder = tmp_path / "files"
    store = open_files(folder.as_uri())
    ref = store.put("v/360p.mp4", os.urandom(32 * 1024 * 1024), content_type="video/mp4")

    async def media(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await serve_file(store, ref, {"video/mp4"})(scope, receive, send)

    gc.disable()
    try:
        with _serving(media) as port:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n")
                got = 0
                while got < 1024 * 1024:  # the first MiB, then away
                    got += len(sock.recv(65536))
                assert _open_under(folder) != []  # being read
            deadline = time.monotonic() + 20
            while _open_under(folder) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _open_under(folder) == []
    finally:
        gc.enable()
    store.close()
