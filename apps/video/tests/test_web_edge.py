"""The site's HTTP edge over real HTTP: the web server alone (``InProcessSite`` with no
services: uvicorn on 127.0.0.1), spoken to with ``http.client`` and raw sockets.

A ready video is put in the catalog directly (its rendition is a real clip in the file
store), so media can be asked for without running the pipeline. Checked here: input that
used to answer 500 (a ``Range`` with thousands of digits, an id with a trailing newline),
the security headers on every answer, errors included.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from tests.support.platform_fixtures import isolate

from millstream.files import open_files
from millstream.tables import Table
from videosite.inprocess import InProcessSite
from videosite.models import RenditionInfo, Video
from videosite.web import WebSettings, create_app
from videosite.web._edge import HEADERS
from videosite.web.ranges import RangeNotSatisfiable, parse_range, serve_file

TOKEN = "edge-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_UPLOAD = 1 << 30  # the default: over the 205 MB of the form of 50,000 fields
VIDEO_ID = "00000000000000aa"
BROKEN_ID = "00000000000000bb"
BOUNDARY = "edgeb0undary"
FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@dataclass
class Edge:
    site: InProcessSite
    port: int
    medium: bytes  # the catalogued video's 240p rendition

    @property
    def videos(self) -> Table:
        return self.site.tables.ensure_table("videos", indexes=["status"])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def call(edge: Edge, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None,
         conn: http.client.HTTPConnection | None = None) -> Answer:
    """One request over HTTP/1.1 (on ``conn`` when given, which stays open)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", edge.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return Answer(res.status, {k.lower(): v for k, v in res.getheaders()}, res.read())
    finally:
        if own:
            conn.close()


def catalogue(edge: Edge, video_id: str, title: str, clip: Path) -> Video:
    """A ready video in the catalog, its rendition ``clip`` stored as a real object."""
    files = edge.site.files
    mp4 = files.put(f"test/{video_id}/240p.mp4", clip, content_type="video/mp4")
    playlist = files.put(f"test/{video_id}/240p.m3u8", b"#EXTM3U\n",
                         content_type="application/vnd.apple.mpegurl")
    video = Video(video_id=video_id, title=title, status="ready", source=mp4,
                  renditions=[RenditionInfo(name="240p", width=320, height=240, bitrate=1,
                                            peak_bitrate=1, has_audio=True, ref=mp4,
                                            playlist=playlist)],
                  uploaded_at=time.time())
    edge.videos.put(video_id, video.model_dump(mode="json"))
    return video


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]) -> Iterator[Edge]:
    with pytest.MonkeyPatch.context() as env:
        isolate(env, tmp_path_factory.mktemp("edge"))
        env.delenv("VIDEOSITE_MAX_UPLOAD_BYTES", raising=False)
        with InProcessSite(token=TOKEN, services=()) as site:
            assert site.url is not None
            found = Edge(site, int(site.url.rsplit(":", 1)[1]), clips["landscape"].read_bytes())
            catalogue(found, VIDEO_ID, "A landscape", clips["landscape"])
            yield found


MEDIUM = f"/media/{VIDEO_ID}/240p.mp4"


# -- input that answered 500 -------------------------------------------------------------------

DIGITS = "9" * 4301  # over Python's limit for converting a string to an int


def test_a_range_with_thousands_of_digits_is_answered_not_crashed(edge: Edge) -> None:
    size = len(edge.medium)
    past = call(edge, "GET", MEDIUM, headers={"Range": f"bytes={DIGITS}-"})
    assert (past.status, past.headers["content-range"], past.body) == (
        416, f"bytes */{size}", b"")
    to_huge = call(edge, "GET", MEDIUM, headers={"Range": f"bytes=0-{DIGITS}"})
    assert (to_huge.status, to_huge.headers["content-range"]) == (206, f"bytes 0-{size - 1}/{size}")
    assert to_huge.body == edge.medium
    suffix = call(edge, "GET", MEDIUM, headers={"Range": f"bytes=-{DIGITS}"})
    assert (suffix.status, suffix.body) == (206, edge.medium)
    padded = call(edge, "GET", MEDIUM, headers={"Range": f"bytes={'0' * 5000}5-{'0' * 5000}9"})
    assert (padded.status, padded.headers["content-range"], padded.body) == (
        206, f"bytes 5-9/{size}", edge.medium[5:10])


def test_a_range_in_other_digits_is_ignored() -> None:
    # "\\d" matches Arabic-Indic digits too, and int() reads them: only ASCII digits count
    # (over HTTP a header is latin-1, which has no other digits: this is the parser alone)
    assert parse_range("bytes=\u0663-\u0669", 100) is None
    assert parse_range("bytes=3-9", 100) == (3, 10)


@pytest.mark.parametrize("path", [f"/videos/{VIDEO_ID}%0a", f"/api/videos/{VIDEO_ID}%0a",
                                  f"/media/{VIDEO_ID}%0a/240p.mp4", f"/videos/{VIDEO_ID}%0d",
                                  f"/api/videos/{VIDEO_ID}%00"])
def test_an_id_with_a_trailing_control_character_is_not_found(edge: Edge, path: str) -> None:
    answer = call(edge, "GET", path)
    assert answer.status == 404, answer.body
    detail = "no such file" if path.startswith("/media/") else "no such video"
    assert answer.json() == {"detail": detail}


@given(header=st.one_of(
    st.text(),
    st.from_regex(r"\A *[Bb][Yy][Tt][Ee][Ss]=[0-9]{0,30}-[0-9]{0,30} *\Z"),
    st.builds(lambda a, b: f"bytes={'7' * a}-{'3' * b}",  # of any length, 4,300+ too
              st.integers(0, 6000), st.integers(0, 6000))),
    size=st.integers(0, 2 ** 63))
@example(header=f"bytes={DIGITS}-", size=10)
@example(header=f"bytes=0-{DIGITS}", size=10)
@example(header=f"bytes=-{DIGITS}", size=10)
@example(header="bytes=0-9\n", size=10)
@example(header="bytes=-1", size=0)  # was (0, 0): 206 with "Content-Range: bytes 0--1/0"
@example(header="bytes=0-", size=0)
# a last byte before the first is ignored (the whole object) however many digits they have
@example(header="bytes=2000000000000000000-1000000000000000000", size=0)
@example(header="bytes=-1000000000000000001", size=10 ** 18 + 1)  # exact up to 2 ** 63
def test_the_range_parser_never_fails_on_any_header(header: str, size: int) -> None:
    try:
        span: tuple[int, int] | str | None = parse_range(header, size)
    except RangeNotSatisfiable:
        span = "416"
    assert span == expected_range(header, size)
    if isinstance(span, tuple):
        start, end = span
        assert 0 <= start < end <= size


def expected_range(header: str, size: int) -> tuple[int, int] | str | None:
    """What ``parse_range`` must answer, worked out independently (``Decimal`` reads digit
    strings of any length, exactly): the span, "416", or None for the whole object."""
    found = re.fullmatch(r"bytes=([0-9]*)-([0-9]*)", header.strip(), re.IGNORECASE)
    if found is None or found.groups() == ("", ""):
        return None
    first, last = (Decimal(g) if g else None for g in found.groups())
    if first is None:  # a suffix: no byte of an empty object, nor zero bytes, can be served
        assert last is not None
        return "416" if last == 0 or size == 0 else (int(max(size - last, 0)), size)
    if last is not None and last < first:
        return None
    if first >= size:
        return "416"
    return int(first), size if last is None or last + 1 >= size else int(last) + 1


def test_any_range_of_an_empty_object_is_416(tmp_path: Path) -> None:
    files = open_files(tmp_path.as_uri())
    ref = files.put("empty.mp4", b"", content_type="video/mp4")
    for header in ("bytes=-1", "bytes=-5", "bytes=0-", "bytes=0-0"):
        answer = serve_file(files, ref, {"video/mp4"}, range_header=header)
        assert (answer.status_code, answer.headers["content-range"]) == (416, "bytes */0")
    whole = serve_file(files, ref, {"video/mp4"}, head=True)
    assert (whole.status_code, whole.headers["content-length"]) == (200, "0")
    files.close()


# -- the form's limits, over a real connection ------------------------------------------------

FIELDS = 50_000
FIELD = b"v" * 4096


def _many_fields() -> Iterator[bytes]:
    for n in range(FIELDS):
        yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"field{n}\"\r\n\r\n"
               ).encode() + FIELD + b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def send_until_answered(edge: Edge, head: bytes, pieces: Iterator[bytes]
                        ) -> tuple[int, bytes]:
    """Send ``head``, then ``pieces`` for as long as the server takes them and has not
    answered; the number of body bytes it took, and what it answered."""
    with socket.create_connection(("127.0.0.1", edge.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(head)
        sock.setblocking(False)
        sent = 0
        for piece in pieces:
            view = memoryview(piece)
            while view:
                readable, writable, _ = select.select([sock], [sock], [], 30)
                assert readable or writable, f"neither read nor answered after {sent} bytes"
                if readable:
                    break
                try:
                    taken = sock.send(view)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += taken
                view = view[taken:]
            if view:
                break
        sock.setblocking(True)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return sent, answer


def test_a_form_of_50000_fields_is_refused_at_the_first_without_reading_on(edge: Edge
                                                                           ) -> None:
    total = sum(len(p) for p in _many_fields())
    assert total > 200_000_000  # about 205 MB, as in the probe that found it
    head = (f"POST /api/videos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: {FORM['Content-Type']}\r\n"
            f"Content-Length: {total}\r\n\r\n").encode()
    sent, answer = send_until_answered(edge, head, _many_fields())
    # the server stopped reading after the first field: what it took beyond that sat in
    # the two sockets' buffers (a few MB on loopback at most)
    print(f"body bytes taken before the answer: {sent} of {total}")
    assert sent < 16 * 1024 * 1024, sent
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request", answer[:200]
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {
        "detail": "unexpected form part 'field0': send only the parts 'title' and 'file'"}


# -- the security headers on every answer ------------------------------------------------------

def _no_file_form() -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nt\r\n"
            f"--{BOUNDARY}--\r\n").encode()


def _forced_500(edge: Edge) -> Answer:
    """A catalog row that is no video (as a bad migration would leave it): the page's
    validation raises, and the framework answers 500."""
    edge.videos.put(BROKEN_ID, {"video_id": BROKEN_ID, "title": ["not", "a", "title"]})
    try:
        return call(edge, "GET", f"/videos/{BROKEN_ID}")
    finally:
        edge.videos.delete(BROKEN_ID)


ERRORS = {
    404: lambda edge: call(edge, "GET", "/videos/0123456789abcdef"),
    400: lambda edge: call(edge, "POST", "/api/videos", _no_file_form(), {**AUTH, **FORM}),
    413: lambda edge: call(edge, "POST", "/api/videos", b"x" * 10,
                           {**AUTH, **FORM, "Content-Length": str(10 * MAX_UPLOAD)}),
    416: lambda edge: call(edge, "GET", MEDIUM, headers={"Range": f"bytes={10 ** 9}-"}),
    500: _forced_500,
    200: lambda edge: call(edge, "GET", "/"),
}


@pytest.mark.parametrize("status", sorted(ERRORS))
def test_every_answer_carries_the_security_headers(edge: Edge, status: int) -> None:
    answer = ERRORS[status](edge)
    assert answer.status == status, answer.body
    assert {name: answer.headers.get(name) for name in HEADERS} == HEADERS


# -- HTTP manners ------------------------------------------------------------------------------

READABLE = ["/", "/upload", f"/videos/{VIDEO_ID}", f"/api/videos/{VIDEO_ID}", MEDIUM,
            f"/media/{VIDEO_ID}/240p.m3u8", "/static/site.css"]


@pytest.mark.parametrize("path", READABLE)
def test_head_answers_as_get_does_without_a_body(edge: Edge, path: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=30)
    try:
        got = call(edge, "GET", path, conn=conn)
        head = call(edge, "HEAD", path, conn=conn)
        # the connection is still in step: HEAD sent no body that this would read as a reply
        again = call(edge, "GET", path, conn=conn)
    finally:
        conn.close()
    assert (got.status, head.status, again.status) == (200, 200, 200)
    assert head.body == b"" and again.body == got.body
    assert int(head.headers["content-length"]) == len(got.body) > 0
    del got.headers["date"], head.headers["date"]
    assert head.headers == got.headers


def test_head_of_a_range_answers_its_length(edge: Edge) -> None:
    head = call(edge, "HEAD", MEDIUM, headers={"Range": "bytes=10-109"})
    assert (head.status, head.headers["content-length"], head.body) == (206, "100", b"")
    assert head.headers["content-range"] == f"bytes 10-109/{len(edge.medium)}"


def test_a_matching_if_none_match_is_304_without_a_body(edge: Edge) -> None:
    etag = call(edge, "GET", MEDIUM).headers["etag"]
    assert etag.startswith('"') and len(etag) == 66  # the SHA-256, quoted
    for given_tags in (etag, f"W/{etag}", "*", f'"other", W/{etag}', f' "x" ,{etag} '):
        for headers in ({}, {"Range": "bytes=0-9"}):  # If-None-Match is decided first
            answer = call(edge, "GET", MEDIUM, headers={"If-None-Match": given_tags, **headers})
            assert (answer.status, answer.body) == (304, b""), given_tags
            assert answer.headers["etag"] == etag
            assert answer.headers["cache-control"] == "public, max-age=3600"
            assert "content-length" not in answer.headers
            assert {name: answer.headers.get(name) for name in HEADERS} == HEADERS
    for other in ('"other"', etag[:-2] + '"', "W/\"\""):
        answer = call(edge, "GET", MEDIUM, headers={"If-None-Match": other})
        assert (answer.status, answer.body) == (200, edge.medium), other
    assert call(edge, "HEAD", MEDIUM, headers={"If-None-Match": etag}).status == 304


@pytest.mark.parametrize(("path", "location"), [
    ("/upload/", "/upload"), ("/upload///", "/upload"),
    ("/upload/?next=%2Fops", "/upload?next=%2Fops"),
    (f"/api/videos/{VIDEO_ID}/", f"/api/videos/{VIDEO_ID}"), (f"{MEDIUM}/", MEDIUM),
])
def test_a_trailing_slash_redirect_is_relative_whatever_the_host(edge: Edge, path: str,
                                                                 location: str) -> None:
    for method in ("GET", "HEAD"):
        answer = call(edge, method, path, headers={"Host": "evil.example"})
        assert (answer.status, answer.headers["location"]) == (307, location), method
        assert {name: answer.headers.get(name) for name in HEADERS} == HEADERS


@pytest.mark.parametrize("path", ["//evil.example/", "/\\evil.example/", "//upload/",
                                  "/nowhere/"])
def test_a_path_that_could_leave_the_site_is_not_redirected(edge: Edge, path: str) -> None:
    answer = call(edge, "GET", path, headers={"Host": "evil.example"})
    assert (answer.status, answer.json()) == (404, {"detail": "Not Found"})
    assert "location" not in answer.headers


def test_the_form_limits_come_from_the_environment() -> None:
    settings = WebSettings.from_env({"VIDEOSITE_MAX_FIELD_BYTES": "300",
                                     "VIDEOSITE_MAX_FORM_BYTES": "5000"})
    assert (settings.max_field_bytes, settings.max_form_bytes) == (300, 5000)
    assert (WebSettings().max_field_bytes, WebSettings().max_form_bytes) == (4096, 65536)


# -- the ops page ------------------------------------------------------------------------------

OPS_NEEDS = ("the ops page needs the API token: Authorization: Bearer <token>, or log in "
             "with any user name and the token as the password")


def _basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
    _basic(f"ops:{TOKEN}x"), _basic(TOKEN), _basic(f"{TOKEN}:"),
    {"Authorization": "Basic %%%"}, {"Authorization": "Basic " + base64.b64encode(
        b"ops:\xff").decode()}, {"Authorization": TOKEN},
], ids=["none", "wrong bearer", "bearer with a suffix", "wrong password", "token as user",
        "token as user, no password", "not base64", "not UTF-8", "no scheme"])
def test_the_ops_page_needs_the_token(edge: Edge, headers: dict[str, str]) -> None:
    answer = call(edge, "GET", "/ops", headers=headers)
    assert (answer.status, answer.json()) == (401, {"detail": OPS_NEEDS})
    assert answer.headers["www-authenticate"] == 'Basic realm="videosite ops", charset="UTF-8"'
    assert call(edge, "HEAD", "/ops", headers=headers).status == 401


@pytest.mark.parametrize("headers", [AUTH, _basic(f"anyone:{TOKEN}"), _basic(f":{TOKEN}")],
                         ids=["bearer", "basic", "basic without a user"])
def test_the_ops_page_opens_with_the_token(edge: Edge, headers: dict[str, str]) -> None:
    answer = call(edge, "GET", "/ops", headers=headers)
    assert answer.status == 200
    assert b"<h1>Services</h1>" in answer.body


def test_the_ops_page_is_public_only_when_configured(edge: Edge) -> None:
    site = edge.site
    with TestClient(create_app(site.config.streams, site.files, site.tables,
                               token=TOKEN, ops_public=True)) as public:
        assert public.get("/ops").status_code == 200
    with TestClient(create_app(site.config.streams, site.files, site.tables,
                               token=None)) as closed:
        answer = closed.get("/ops", headers=_basic(":anything"))
        assert (answer.status_code, answer.json()) == (401, {"detail": (
            "the ops page is closed: no API token is set; set VIDEOSITE_API_TOKEN (and log "
            "in with it) or VIDEOSITE_OPS_PUBLIC=true")})
        assert closed.get("/ops", headers={"Authorization": "Bearer "}).status_code == 401


@pytest.mark.parametrize(("raw", "public"), [("true", True), ("1", True), ("On", True),
                                             ("false", False), ("0", False), ("no", False)])
def test_ops_public_is_read_from_the_environment(raw: str, public: bool) -> None:
    assert WebSettings.from_env({"VIDEOSITE_OPS_PUBLIC": raw}).ops_public is public


def test_a_setting_that_is_not_a_boolean_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^VIDEOSITE_OPS_PUBLIC='maybe' is not true or false$"):
        WebSettings.from_env({"VIDEOSITE_OPS_PUBLIC": "maybe"})
