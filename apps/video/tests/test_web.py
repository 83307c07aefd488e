"""The web server against a real embedded platform: uploads, refusals, status, pages, media.

Two clips are uploaded through ``POST /api/videos`` (one titled with a script tag), the
pipeline's services run until idle on the same platform, and the API, the pages and the
media are checked. The refusals (401, 413 by Content-Length and while streaming, 415 for a
PNG, 408 for a stalled client) are checked before anything is processed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from millstream.runtime._clock import SystemClock
from millstream.testing import TestPlatform
from videosite.app import app
from videosite.models import Upload, Video
from videosite.web import WebSettings, create_app

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_UPLOAD = 2 * 1024 * 1024
STAGES = ("probe", "thumbnail", "transcode", "join")
XSS = "<script>alert(1)</script>"


@dataclass
class Web:
    platform: TestPlatform
    client: TestClient


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    home = tmp_path_factory.mktemp("web-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MILLSTREAM_HOME", str(home))  # nothing may land in ./.millstream
        env.delenv("VIDEOSITE_API_TOKEN", raising=False)
        with TestPlatform(app, clock=SystemClock()) as platform:
            site = create_app(platform.url, platform.files, platform.tables, token=TOKEN,
                              max_upload_bytes=MAX_UPLOAD, idle_timeout_s=0.5)
            with TestClient(site) as client:
                yield Web(platform, client)


def upload(client: TestClient, path: Path, title: str, **kwargs: object) -> httpx2.Response:
    with path.open("rb") as f:
        return client.post("/api/videos", files={"file": (path.name, f, "video/mp4")},
                           data={"title": title}, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def uploaded(web: Web, clips: dict[str, Path]) -> dict[str, str]:
    ids = {}
    for name, title in (("landscape", "A landscape"), ("portrait", XSS)):
        res = upload(web.client, clips[name], title, headers=AUTH)
        assert res.status_code == 202, res.text
        ids[name] = res.json()["id"]
    return ids


@pytest.fixture(scope="module")
def processed(web: Web, uploaded: dict[str, str]) -> dict[str, str]:
    for service in STAGES:
        web.platform.run_until_idle(service, timeout=60.0)
    return uploaded


def test_an_upload_is_accepted_stored_and_recorded(web: Web, uploaded: dict[str, str],
                                                   clips: dict[str, Path]) -> None:
    records = {u.video_id: u for u in web.platform.values("uploads")}
    record = records[uploaded["landscape"]]
    assert isinstance(record, Upload)
    data = clips["landscape"].read_bytes()
    assert record.source.sha256 == hashlib.sha256(data).hexdigest()
    assert record.size == len(data) and record.title == "A landscape"
    assert record.content_type == "video/mp4"
    assert web.platform.files.read_bytes(record.source) == data
    assert records[uploaded["portrait"]].title == XSS
    res = web.client.get(f"/api/videos/{uploaded['landscape']}")
    assert res.status_code == 200 and res.json()["status"] in ("queued", "processing")


def test_a_write_needs_the_token(web: Web, clips: dict[str, Path]) -> None:
    assert upload(web.client, clips["tiny"], "no token").status_code == 401
    wrong = upload(web.client, clips["tiny"], "wrong", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"


def _multipart(head: bytes, filler: int, boundary: str = "b0undary") -> Iterator[bytes]:
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nbig\r\n"
           f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"big.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
    yield head
    for _ in range(filler):
        yield bytes(64 * 1024)
    yield f"\r\n--{boundary}--\r\n".encode()


def test_an_oversized_upload_is_refused(web: Web, clips: dict[str, Path]) -> None:
    head = clips["landscape"].read_bytes()[:4096]
    body = b"".join(_multipart(head, 40))
    headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=b0undary"}
    declared = web.client.post("/api/videos", content=body, headers=headers)
    assert declared.status_code == 413, declared.text
    assert declared.json()["detail"] == (f"the upload declares {len(body)} bytes, over the "
                                         f"limit of {MAX_UPLOAD}")
    chunked = web.client.post("/api/videos", content=_multipart(head, 40), headers=headers)
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["detail"] == f"the upload is over the limit of {MAX_UPLOAD} bytes"


def test_an_image_is_not_a_video(web: Web, tmp_path: Path) -> None:
    png = tmp_path / "cat.mp4"  # the name and declared type lie
    Image.new("RGB", (64, 48), (1, 2, 3)).save(png, format="PNG")
    res = upload(web.client, png, "a picture", headers=AUTH)
    assert res.status_code == 415
    assert res.json()["detail"] == "not a video: an image (PNG), not a video"


def test_a_stalled_client_is_timed_out(web: Web, clips: dict[str, Path]) -> None:
    head = clips["landscape"].read_bytes()[:2048]
    release = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        for piece in _multipart(head, 1):
            yield piece
            break
        yield head
        await release.wait()  # and never send the rest

    async def post() -> tuple[int, float]:
        transport = httpx2.ASGITransport(app=web.client.app)  # type: ignore[arg-type]
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            started = asyncio.get_running_loop().time()
            res = await client.post("/api/videos", content=stalling(), headers={
                **AUTH, "Content-Type": "multipart/form-data; boundary=b0undary"})
            release.set()
            return res.status_code, asyncio.get_running_loop().time() - started

    status, seconds = asyncio.run(post())
    assert status == 408 and seconds < 5


def test_refused_uploads_leave_nothing_stored(web: Web, uploaded: dict[str, str]) -> None:
    stored = sorted(ref.url.rsplit("/", 2)[-2] for ref in web.platform.files.list("uploads/"))
    assert stored == sorted(uploaded.values())
    assert len(web.platform.values("uploads")) == 2


def test_a_processed_video_is_ready_with_metadata(web: Web, processed: dict[str, str]
                                                 ) -> None:
    res = web.client.get(f"/api/videos/{processed['landscape']}")
    assert res.status_code == 200
    doc = res.json()
    assert doc["status"] == "ready" and doc["title"] == "A landscape"
    meta = doc["metadata"]
    assert (meta["width"], meta["height"], meta["has_audio"]) == (320, 240, True)
    assert meta["duration_s"] == pytest.approx(2.0, abs=0.05)
    assert {s: p["fraction"] for s, p in doc["progress"].items()} == {
        "probe": 1.0, "thumbnail": 1.0, "transcode": 1.0}
    assert [r["name"] for r in doc["renditions"]] == ["240p"]
    assert web.client.get("/api/videos/0123456789abcdef").status_code == 404
    assert web.client.get("/api/videos/..%2Fetc").status_code == 404


def _video(web: Web, video_id: str) -> Video:
    found = web.platform.tables.table("videos").get(video_id, Video)
    assert found is not None
    return found


def test_ranges_of_a_rendition_are_exact(web: Web, processed: dict[str, str]) -> None:
    vid = processed["portrait"]
    rendition = _video(web, vid).renditions[-1]
    data = web.platform.files.read_bytes(rendition.ref)
    url = f"/media/{vid}/{rendition.name}.mp4"
    whole = web.client.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["x-content-type-options"] == "nosniff"
    part = web.client.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert part.headers["content-length"] == "1000"
    tail = web.client.get(url, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    rest = web.client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert rest.content == data[-10:]
    past = web.client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"
    assert web.client.get(f"/media/{vid}/source.mp4").status_code == 404  # not the original
    poster = web.client.get(f"/media/{vid}/poster.jpg")
    assert poster.headers["content-type"] == "image/jpeg"
    master = web.client.get(f"/media/{vid}/master.m3u8")
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert f"{rendition.name}.m3u8" in master.text


def test_titles_are_escaped_and_pages_carry_the_csp(web: Web, processed: dict[str, str]
                                                   ) -> None:
    for path in ("/", "/upload", "/ops", f"/videos/{processed['portrait']}",
                 f"/videos/{processed['landscape']}"):
        res = web.client.get(path, headers=AUTH)
        assert res.status_code == 200, path
        csp = res.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert XSS not in res.text
        assert "<script>" not in res.text.replace('<script src="/static/site.js" defer>', "")
    gallery = web.client.get("/").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in gallery
    assert "A landscape" in gallery and gallery.count('class="card"') == 2
    page = web.client.get(f"/videos/{processed['landscape']}").text
    assert f'src="/media/{processed["landscape"]}/240p.mp4"' in page
    assert f'href="/media/{processed["landscape"]}/master.m3u8"' in page
    assert web.client.get("/static/site.js").headers["content-type"].startswith(
        "text/javascript")


def test_the_catalog_list_and_its_cards_as_the_gallery_draws_them(
        web: Web, processed: dict[str, str]) -> None:
    listed = web.client.get("/api/videos").json()["videos"]
    videos = {v.video_id: v for v in web.platform.values("videos")}
    assert [v["id"] for v in listed] == sorted(
        videos, key=lambda i: videos[i].uploaded_at, reverse=True)
    assert {v["id"]: (v["status"], v["uploaded_at"]) for v in listed} == {
        i: (v.status, v.uploaded_at) for i, v in videos.items()}
    # the cards asked for, exactly as the gallery draws them (an unknown id left out)
    ids = [processed["portrait"], "0123456789abcdef", processed["landscape"]]
    cards = web.client.get(f"/fragments/cards?ids={','.join(ids)}")
    assert cards.status_code == 200 and "content-security-policy" in cards.headers
    drawn = re.findall(r'<li class="card" data-video-id="([0-9a-f]{16})"', cards.text)
    assert drawn == [processed["portrait"], processed["landscape"]]
    gallery = web.client.get("/").text
    for video_id in drawn:
        card = re.search(rf'<li class="card" data-video-id="{video_id}".*?</li>', cards.text,
                         re.S)
        assert card is not None and card.group(0) in gallery
    assert XSS not in cards.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in cards.text
    # bad input: named, nothing drawn
    bad = web.client.get("/fragments/cards?ids=0123456789abcdef,../../etc")
    assert (bad.status_code, bad.json()) == (
        400, {"detail": "'../../etc' is not a video id (16 hex digits)"})
    many = web.client.get("/fragments/cards?ids=" + ",".join(["0123456789abcdef"] * 51))
    assert (many.status_code, many.json()) == (
        400, {"detail": "51 ids asked for; at most 50 at once"})


def test_the_ops_page_shows_the_services(web: Web, processed: dict[str, str]) -> None:
    page = web.client.get("/ops", headers=AUTH).text
    for service in ("probe", "thumbnail", "transcode", "join"):
        # its name links to its page on the console
        cell = (f'<td><a href="http://127.0.0.1:8765/services/videosite.{service}">{service}'
                '</a></td>')
        assert cell in page
        # its last cell: records read, over the latest metrics record of each run
        latest = {m.run: m.totals.records_in for m in web.platform.metrics(service)}
        row = re.search(rf"<tr>{re.escape(cell)}.*?</tr>", page, re.DOTALL)
        assert row is not None and sum(latest.values()) >= 2
        assert row.group().endswith(
            f'<td class="num" data-field="total_in">{sum(latest.values())}</td></tr>')
    assert "None." in page  # no exceptions
    # the same rows as JSON, for the page's script: the same access
    assert web.client.get("/api/ops").status_code == 401
    found = {r["name"]: r for r in web.client.get("/api/ops", headers=AUTH).json()["services"]}
    for service in ("probe", "thumbnail", "transcode", "join"):
        latest = {m.run: m.totals.records_in for m in web.platform.metrics(service)}
        assert found[service]["total_in"] == str(sum(latest.values()))
        assert found[service]["status"] == "stopped"  # run until idle, then stopped


def test_the_ops_page_draws_the_topology_and_serves_the_consoles_stylesheet(
        web: Web, processed: dict[str, str]) -> None:
    assert web.client.get("/ops/topology.svg").status_code == 401  # as the page: the token
    drawing = web.client.get("/ops/topology.svg", headers=AUTH)
    assert drawing.status_code == 200
    assert drawing.headers["content-type"] == "image/svg+xml"
    # its own policy: its <style> applies, nothing else loads or runs
    assert drawing.headers["content-security-policy"] == \
        "default-src 'none'; style-src 'unsafe-inline'"
    drawn = set(re.findall(r'<g class="node service[^"]*" data-id="service:([^"]+)"',
                           drawing.text))
    assert drawn == set(app.services)
    page = web.client.get("/ops", headers=AUTH).text
    # in the page: each service with its health as its row says it, linked to the console
    statuses = {r["name"]: r["status"] for r in web.client.get(
        "/api/ops", headers=AUTH).json()["services"]}
    inline = {name: health for health, name in re.findall(
        r'<g class="node service[^"]* health-(\w+)" data-id="service:([^"]+)"', page)}
    assert inline == {name: statuses.get(name, "silent") for name in app.services}
    assert set(statuses) >= {"probe", "thumbnail", "transcode", "join"}
    links = re.findall(r'<a href="([^"]+)"><g class="node service', page)
    assert sorted(links) == sorted(f"http://127.0.0.1:8765/services/{spec.group}"
                                   for spec in app.services.values())
    assert '<link rel="stylesheet" href="/console-static/console.css">' in page
    assert '<link rel="stylesheet" href="/console-static/overview.css">' in page
    sheet = web.client.get("/console-static/console.css")
    assert sheet.status_code == 200 and ".badge.status-running" in sheet.text
    assert 'href="http://127.0.0.1:8765/"' in page  # the console's default address


def test_the_ops_page_links_to_the_console_at_its_configured_address(
        web: Web, processed: dict[str, str]) -> None:
    assert WebSettings.from_env({"VIDEOSITE_CONSOLE_URL": "https://console.example/"}
                                ).console_url == "https://console.example/"
    assert WebSettings().console_url == "http://127.0.0.1:8765/"
    # given without its trailing slash, the links still go under it
    with TestClient(create_app(web.platform.url, web.platform.files, web.platform.tables,
                               token=TOKEN, console_url="https://console.example/ms")) as site:
        page = site.get("/ops", headers=AUTH).text
    assert 'id="console-link" href="https://console.example/ms/"' in page
    assert ('<a href="https://console.example/ms/services/videosite.transcode">transcode</a>'
            in page)
