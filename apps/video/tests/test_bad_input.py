"""Bad input to ``POST /api/videos``, against a real embedded platform.

Each bad upload gets a clear 4xx naming the problem and leaves nothing in the file store
(no object, no temporary file); a file name with path tricks never reaches the stored
name; a video over the media limits is refused at upload (422, naming the value and the
limit); a video that passes the upload's checks but is refused by the pipeline ends
``failed`` with the reason in the API and on its page while a good clip uploaded in the
same run ends ``ready``. Schemathesis, against the app's OpenAPI schema, finds no 5xx.

The pipeline's stages report a refused or broken medium as a result with ``ok=False``
(and so a ``failed`` video with the reason), not as an exception: only bugs raise. The join
reports each failed video once to the exceptions stream (``ctx.report``, stage
``reported``) with its stage and reason, which the ops page lists.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx2
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from markupsafe import escape
from PIL import Image
from schemathesis.checks import not_a_server_error

from millstream import open_streams
from millstream.files import FileStore, open_files
from millstream.files._gc import run_gc
from millstream.runtime._clock import SystemClock
from millstream.streams._reading import read_to_end
from millstream.tables import Tables, open_tables
from millstream.testing import TestPlatform
from videosite.app import app
from videosite.models import Upload
from videosite.pipeline import new_video_id, submit
from videosite.titles import BadTitle
from videosite.web import WebSettings, create_app
from videosite.web.upload import Received, UploadRefused, receive_upload
from videosite_testing import STARVED, faststart, ffmpeg_allocations_at_most, half

TOKEN = "bad-input-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_UPLOAD = 2 * 1024 * 1024
STAGES = ("probe", "thumbnail", "transcode", "join")
BOUNDARY = "x0b0undary"
HTML_TITLE = '<img src=x onerror="alert(1)"><b>bold</b> & co'
#: videos longer than this are refused (VIDEOSITE_MAX_DURATION_S): at upload when it is set
#: then, by the probe when it is lowered after the upload was accepted
MAX_DURATION_S = 2.5
#: a title as a program that wrote the uploads stream itself (or an older site) stored it
STORED_TITLE = "nul\x00 evil\u202e line\u2028 sep\u2066\u2069\x1b"
UPLOAD_NAME = re.compile(r"^uploads/[0-9a-f]{16}/source\.mp4$")


@dataclass
class Web:
    platform: TestPlatform
    client: TestClient
    accepted: list[str] = field(default_factory=list)  # ids of the uploads answered 202


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    home = tmp_path_factory.mktemp("bad-input-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MILLSTREAM_HOME", str(home))
        env.delenv("VIDEOSITE_API_TOKEN", raising=False)
        env.delenv("VIDEOSITE_MAX_DURATION_S", raising=False)
        with TestPlatform(app, clock=SystemClock()) as platform:
            site = create_app(platform.url, platform.files, platform.tables, token=TOKEN,
                              max_upload_bytes=MAX_UPLOAD, idle_timeout_s=2.0)
            with TestClient(site) as client:
                yield Web(platform, client)


# -- the bad files -----------------------------------------------------------------------------


def _audio_only(path: Path, format: str | None = None) -> Path:
    """An AAC tone, no video stream, muxed as MP4 (``isom`` brand) or M4A (``ipod``)."""
    with av.open(str(path), "w", format=format) as container:
        sound = container.add_stream("aac", rate=44100, layout="mono")
        for n in range(20):
            chunk = av.AudioFrame(format="s16", layout="mono", samples=1024)
            chunk.planes[0].update(bytes(2048))
            chunk.sample_rate, chunk.pts = 44100, n * 1024
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]
              ) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-files")
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    noise = folder / "noise.mp4"
    noise.write_bytes(random.Random(7).randbytes(64 * 1024))
    png = folder / "picture.mp4"
    Image.new("RGB", (64, 48), (1, 2, 3)).save(png, format="PNG")
    jpeg = folder / "photo.mp4"
    Image.new("RGB", (64, 48), (4, 5, 6)).save(jpeg, format="JPEG")
    return {
        "zero bytes": empty,
        "random bytes": noise,
        "PNG renamed": png,
        "JPEG renamed": jpeg,
        "truncated MP4": half(clips["landscape"], folder / "truncated.mp4"),
        "audio-only MP4": _audio_only(folder / "audio.mp4"),
        "audio-only M4A": _audio_only(folder / "audio.m4a", format="ipod"),
    }


def multipart(content: bytes, filename: str = "clip.mp4", title: str | None = "a title",
              content_type: str = "video/mp4") -> bytes:
    """A ``multipart/form-data`` body (BOUNDARY) with a title field and one file part; the
    file name goes into the header as given (quotes escaped), so it can carry anything."""
    parts = b""
    if title is not None:
        parts += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n"
                  f"{title}\r\n").encode()
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    parts += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
              f"filename=\"{quoted}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
    return parts + content + f"\r\n--{BOUNDARY}--\r\n".encode()


FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def post(web: Web, body: bytes, headers: dict[str, str] | None = None) -> httpx2.Response:
    res = web.client.post("/api/videos", content=body,
                          headers={**AUTH, **FORM, **(headers or {})})
    if res.status_code == 202:
        web.accepted.append(res.json()["id"])
    return res


# -- refused at upload -------------------------------------------------------------------------

NOT_A_VIDEO = {
    "zero bytes": "not a video: an empty file",
    "random bytes": "not a video: not a recognised video container",
    "PNG renamed": "not a video: an image (PNG), not a video",
    "JPEG renamed": "not a video: an image (JPEG), not a video",
    # the index (moov) is at the end of the clip: its first half does not open at all
    "truncated MP4": "not a video: not a readable video (InvalidDataError)",
    "audio-only MP4": "not a video: a mov container without a video stream",
    "audio-only M4A": "not a video: an audio file (MP4 brand M4A), not a video",
}


@pytest.mark.parametrize("kind", sorted(NOT_A_VIDEO))
def test_a_file_that_is_not_a_video_is_refused(web: Web, bad_files: dict[str, Path],
                                               kind: str) -> None:
    res = post(web, multipart(bad_files[kind].read_bytes()))
    assert res.status_code == 415, res.text
    assert res.json() == {"detail": NOT_A_VIDEO[kind]}
    assert res.headers["connection"] == "close"


def test_a_video_over_the_media_limits_is_refused_at_upload(
        web: Web, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSITE_MAX_DURATION_S", str(MAX_DURATION_S))
    res = post(web, multipart(clips["wide"].read_bytes(), title="three seconds"))
    assert res.status_code == 422, res.text
    assert res.json() == {
        "detail": f"rejected: duration (s) 3 exceeds the limit of {MAX_DURATION_S}"}


def test_a_first_frame_over_the_pixel_limit_is_refused_at_upload_not_retried(
        web: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an MKV whose headers say 320 x 240 and whose first MJPEG frame is 1200 x 1000: FFmpeg's
    # bounded decoder refuses it with EINVAL, which answered 503 (to be retried)
    monkeypatch.setenv("VIDEOSITE_MAX_PIXELS", "1000000")
    path = tmp_path / "lying.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuvj420p"
        encoder = av.CodecContext.create("mjpeg", "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width, encoder.height, encoder.pix_fmt = 1200, 1000, "yuvj420p"
        encoder.time_base = Fraction(1, 25)
        frame = av.VideoFrame(1200, 1000, "yuvj420p")
        for plane in frame.planes:
            plane.update(bytes([16]) * plane.buffer_size)
        frame.pts = 0
        for packet in [*encoder.encode(frame), *encoder.encode(None)]:
            packet.stream, packet.time_base, packet.pts, packet.dts = stream, Fraction(1, 25), 0, 0
            out.mux(packet)
    res = post(web, multipart(path.read_bytes(), title="lying"))
    assert res.status_code == 422, res.text
    assert res.json() == {"detail": "rejected: pixels per frame 1200000 (1200x1000 at 0.000 s; "
                                    "the headers said 320x240) exceeds the limit of 1000000"}


@pytest.mark.parametrize(("headers", "why"), [
    ({}, "no Authorization header"),
    ({"Authorization": "Bearer wrong-token"}, "a wrong token"),
    ({"Authorization": f"Bearer {TOKEN}x"}, "the token with a suffix"),
    ({"Authorization": f"Basic {TOKEN}"}, "another scheme"),
    ({"Authorization": "Bearer"}, "the scheme alone"),
    ({"Authorization": TOKEN}, "the token without a scheme"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_missing_or_wrong_token_is_401(web: Web, clips: dict[str, Path],
                                         headers: dict[str, str], why: str) -> None:
    res = web.client.post("/api/videos", content=multipart(clips["tiny"].read_bytes()),
                          headers={**FORM, **headers})
    assert res.status_code == 401, why
    assert res.json() == {"detail": "an API token is needed (Authorization: Bearer ...)"}
    assert res.headers["www-authenticate"] == "Bearer"


def test_a_huge_declared_size_is_refused_before_reading(web: Web, clips: dict[str, Path]
                                                        ) -> None:
    body = multipart(clips["tiny"].read_bytes())
    huge = 10 ** 15
    res = post(web, body, {"Content-Length": str(huge)})
    assert res.request.headers["content-length"] == str(huge)
    assert res.status_code == 413, res.text
    assert res.json() == {"detail": f"the upload declares {huge} bytes, over the limit of "
                                    f"{MAX_UPLOAD}"}
    bogus = post(web, body, {"Content-Length": "lots"})
    assert bogus.status_code == 400 and bogus.json() == {"detail": "a malformed Content-Length"}


@pytest.mark.parametrize(("body", "headers", "status", "detail"), [
    (b'{"title": "json"}', {"Content-Type": "application/json"}, 415,
     "send the video as multipart/form-data"),
    (b"", {"Content-Type": "multipart/form-data"}, 415,
     "send the video as multipart/form-data"),
    ((f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nt\r\n"
      f"--{BOUNDARY}--\r\n").encode(), {}, 400,
     "no file in the upload (a part named 'file')"),
    (multipart(b"\x00\x00\x00\x20ftypisom")[:-8], {}, 400, "the multipart body ended early"),
], ids=["json", "no boundary", "no file part", "cut short"])
def test_a_malformed_form_is_refused(web: Web, body: bytes, headers: dict[str, str],
                                     status: int, detail: str) -> None:
    res = post(web, body, headers)
    assert res.status_code == status, res.text
    assert res.json() == {"detail": detail}


NEEDED = "a title of 1 to 200 characters is needed"
MISSING_TITLES = {
    "none": (None, f"no title in the upload (a part named 'title'): {NEEDED}"),
    "empty": ("", f"the title is empty: {NEEDED}"),
    "blank": ("   ", f"the title is only blanks (3 characters): {NEEDED}"),
    "too long": ("t" * 201, f"the title has 201 characters: {NEEDED}"),
    "far too long": (" " + "\u00e9" * 1000 + " ", f"the title has 1000 characters: {NEEDED}"),
}


@pytest.mark.parametrize("case", sorted(MISSING_TITLES))
def test_a_missing_or_overlong_title_is_refused_naming_its_length(
        web: Web, clips: dict[str, Path], case: str) -> None:
    title, detail = MISSING_TITLES[case]
    res = post(web, multipart(clips["tiny"].read_bytes(), title=title))
    assert (res.status_code, res.json()) == (400, {"detail": detail})


class Sender:
    """An ASGI ``receive`` that hands out ``body`` in pieces of ``piece`` bytes and counts
    how many the server took."""

    def __init__(self, body: bytes, piece: int = 64 * 1024) -> None:
        self.pieces = [body[at:at + piece] for at in range(0, len(body), piece)]
        self.taken = 0

    async def __call__(self) -> dict[str, object]:
        body = self.pieces[self.taken]
        self.taken += 1
        return {"type": "http.request", "body": body, "more_body": self.taken < len(self.pieces)}


def _receive(sender: Sender, files: FileStore) -> Received:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return asyncio.run(receive_upload(sender, headers, files, "uploads/v/source",
                                      WebSettings(token=TOKEN, max_upload_bytes=MAX_UPLOAD)))


def _title_after_file(content: bytes, title: str) -> bytes:
    file_part = multipart(content, title=None)[:-len(f"--{BOUNDARY}--\r\n")]
    return file_part + (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\""
                        f"\r\n\r\n{title}\r\n--{BOUNDARY}--\r\n").encode()


def test_a_bad_title_sent_first_is_refused_before_the_file_is_read(
        clips: dict[str, Path], tmp_path: Path) -> None:
    content = clips["landscape"].read_bytes()
    sender = Sender(multipart(content, title="t" * 201), piece=4096)
    files = open_files(tmp_path.as_uri())
    with pytest.raises(UploadRefused) as refused:
        _receive(sender, files)
    assert (refused.value.status, refused.value.reason) == (
        400, f"the title has 201 characters: {NEEDED}")
    assert (sender.taken, len(sender.pieces)) == (1, len(content) // 4096 + 1)
    assert list(files.list("")) == []
    files.close()


@pytest.mark.parametrize("title", ["t" * 201, "a\u202eb"], ids=["too long", "bidi"])
def test_a_bad_title_sent_after_the_file_leaves_nothing_stored(
        clips: dict[str, Path], tmp_path: Path, title: str) -> None:
    sender = Sender(_title_after_file(clips["landscape"].read_bytes(), title))
    files = open_files(tmp_path.as_uri())
    with pytest.raises(UploadRefused) as refused:
        _receive(sender, files)
    assert refused.value.status == 400
    assert refused.value.reason.startswith(("the title has 201 characters: ",
                                            "the title holds U+202E")), refused.value.reason
    assert sender.taken == len(sender.pieces)
    assert list(files.list("")) == []
    assert sorted(os.listdir(tmp_path / ".tmp")) == []
    files.close()


def test_a_good_title_after_the_file_is_accepted(clips: dict[str, Path], tmp_path: Path
                                                 ) -> None:
    files = open_files(tmp_path.as_uri())
    received = _receive(Sender(_title_after_file(clips["tiny"].read_bytes(), "  late  ")),
                        files)
    assert (received.title, received.container) == ("late", "mp4")
    assert [ref.url.removeprefix(files.url.rstrip("/") + "/") for ref in files.list("")] \
        == ["uploads/v/source.mp4"]
    files.close()


def test_two_files_in_one_upload_are_refused(web: Web, clips: dict[str, Path]) -> None:
    data = clips["tiny"].read_bytes()
    twice = multipart(data)[:-len(f"--{BOUNDARY}--\r\n")] + multipart(data, title=None)
    res = post(web, twice)
    assert res.status_code == 400
    assert res.json() == {"detail": "the form part 'file' was sent twice: send one of each"}


# -- the form's limits -------------------------------------------------------------------------


def part(name: str | None, value: bytes, extra: str = "") -> bytes:
    """One text part of a BOUNDARY form (no name at all when ``name`` is None)."""
    disposition = "form-data" if name is None else f'form-data; name="{name}"'
    return (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}{extra}\r\n\r\n".encode()
            + value + b"\r\n")


def with_parts(before: bytes, clip: bytes, *, title: str | None = "a title",
               after: bytes = b"") -> bytes:
    """A form: ``before``, the title, the file, then ``after`` past the closing boundary."""
    return before + multipart(clip, title=title) + after


ONLY = "send only the parts 'title' and 'file'"
LONG_NAME = "n" * 100


@pytest.mark.parametrize(("make", "status", "detail"), [
    (lambda clip: with_parts(part("description", b"more"), clip), 400,
     f"unexpected form part 'description': {ONLY}"),
    (lambda clip: with_parts(part("token", b"x"), clip, title=None), 400,
     f"unexpected form part 'token': {ONLY}"),
    (lambda clip: with_parts(part(LONG_NAME, b"x"), clip), 400,
     f"unexpected form part '{'n' * 40}...': {ONLY}"),
    (lambda clip: with_parts(part(None, b"x"), clip), 400,
     f"a form part without a name: {ONLY}"),
    (lambda clip: with_parts(part("title", b"first"), clip), 400,
     "the form part 'title' was sent twice: send one of each"),
    (lambda clip: with_parts(b"", clip, title="t" * 4097), 413,
     "the form part 'title' is over 4096 bytes"),
    (lambda clip: with_parts(b"", clip, title="\u00e9" * 2049), 413,  # 4,098 bytes of UTF-8
     "the form part 'title' is over 4096 bytes"),
    (lambda clip: with_parts(part("title", b"ab\xffcd"), clip, title=None), 400,
     "the form part 'title' is not UTF-8 (byte 3 of it)"),
    (lambda clip: with_parts(b"", clip, after=b"e" * 70_000), 413,
     "the form, apart from the file, is over the limit of 65536 bytes"),
    (lambda clip: with_parts(part("title", b"t", "; x=" + "y" * 5000), clip, title=None), 413,
     "a header line of a form part is over 4096 bytes"),
], ids=["another part", "the token as a part", "a long name", "no name", "title twice",
        "title over 4096 bytes", "title over 4096 bytes of UTF-8", "title not UTF-8",
        "a large epilogue", "a large part header"])
def test_a_form_with_other_parts_or_over_its_limits_is_refused(
        web: Web, clips: dict[str, Path], make: Callable[[bytes], bytes], status: int,
        detail: str) -> None:
    res = post(web, make(clips["tiny"].read_bytes()))
    assert (res.status_code, res.json()) == (status, {"detail": detail})
    assert res.headers["connection"] == "close"


def test_a_boundary_too_long_to_parse_is_refused(web: Web, clips: dict[str, Path]) -> None:
    boundary = "b" * 300
    res = post(web, multipart(clips["tiny"].read_bytes()).replace(BOUNDARY.encode(),
                                                                   boundary.encode()),
               {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert res.status_code == 400
    assert res.json() == {"detail": "a malformed multipart boundary (Boundary length 300 "
                                    "exceeds maximum of 256)"}


# -- titles ------------------------------------------------------------------------------------

HOW = "remove control, line-separator and bidi-override characters"
BAD_TITLES = {
    "a\x00b": f"the title holds U+0000 at character 2: {HOW}",
    "\u202egnp.mp4": f"the title holds U+202E (RIGHT-TO-LEFT OVERRIDE) at character 1: {HOW}",
    "ab\u202ac": f"the title holds U+202A (LEFT-TO-RIGHT EMBEDDING) at character 3: {HOW}",
    "x\u2066y\u2069": f"the title holds U+2066 (LEFT-TO-RIGHT ISOLATE) at character 2: {HOW}",
    "x\u2069": f"the title holds U+2069 (POP DIRECTIONAL ISOLATE) at character 2: {HOW}",
    "one\u2028two": f"the title holds U+2028 (LINE SEPARATOR) at character 4: {HOW}",
    "one\u2029two": f"the title holds U+2029 (PARAGRAPH SEPARATOR) at character 4: {HOW}",
    "tab\there": f"the title holds U+0009 at character 4: {HOW}",
    "red\x1b[31m": f"the title holds U+001B at character 4: {HOW}",
    "del\x7f!": f"the title holds U+007F at character 4: {HOW}",
    "c1\x85x": f"the title holds U+0085 at character 3: {HOW}",
}


@pytest.mark.parametrize("title", sorted(BAD_TITLES), ids=ascii)
def test_a_title_with_control_or_bidi_characters_is_refused(web: Web, clips: dict[str, Path],
                                                            title: str) -> None:
    res = post(web, multipart(clips["tiny"].read_bytes(), title=title))
    assert (res.status_code, res.json()) == (400, {"detail": BAD_TITLES[title]})


def test_a_title_is_trimmed_and_may_hold_any_script_and_joiners(web: Web,
                                                                clips: dict[str, Path]
                                                                ) -> None:
    title = "\u05e9\u05dc\u05d5\u05dd \U0001f469\u200d\U0001f467 caf\u00e9"
    res = post(web, multipart(clips["tiny"].read_bytes(), title=f"  {title}\u2028\n"))
    assert res.status_code == 202, res.text
    records = {u.video_id: u for u in web.platform.values("uploads")}
    assert records[res.json()["id"]].title == title


def test_submit_refuses_the_titles_the_api_refuses(web: Web, clips: dict[str, Path]) -> None:
    with pytest.raises(BadTitle, match="U\\+202E"):
        submit(web.platform.streams, web.platform.files, clips["tiny"], "a\u202eb")


# -- path tricks in the file name --------------------------------------------------------------

TRICKS = ["../../etc/passwd.mp4", "/etc/passwd.mp4", "..\\..\\windows\\evil.mp4",
          "C:\\evil.mp4", "evil\x00.mp4", "%2e%2e%2fevil.mp4", ".tmp/x.mp4", ".meta/x.mp4"]


@pytest.mark.parametrize("filename", TRICKS, ids=[repr(t) for t in TRICKS])
def test_path_tricks_never_reach_the_stored_name(web: Web, clips: dict[str, Path],
                                                 filename: str) -> None:
    res = post(web, multipart(clips["tiny"].read_bytes(), filename=filename,
                              title=f"tricky {filename!r}"))
    assert res.status_code == 202, res.text
    video_id = res.json()["id"]
    stored = [ref.url for ref in web.platform.files.list(f"uploads/{video_id}/")]
    assert len(stored) == 1 and stored[0].endswith(f"/uploads/{video_id}/source.mp4")


# -- what is stored, and the pipeline ----------------------------------------------------------


def _stored(web: Web) -> list[str]:
    """Every object's name in the file store (relative to its root)."""
    root = (web.platform.directory / "files").as_uri()
    return sorted(ref.url.removeprefix(root + "/") for ref in web.platform.files.list(""))


@pytest.fixture(scope="module")
def in_pipeline(web: Web, clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, str]:
    """A good clip (titled with HTML), one over the pipeline's duration limit and a
    truncated MP4 whose index comes first (so it opens and passes the upload's checks)."""
    folder = tmp_path_factory.mktemp("pipeline-files")
    truncated = half(faststart(clips["tiny"], folder / "fs.mp4"), folder / "cut.mp4")
    ids = {}
    for name, path, title in (("good", clips["landscape"], HTML_TITLE),
                              ("too long", clips["wide"], "three seconds"),
                              ("truncated", truncated, "the first half")):
        res = post(web, multipart(path.read_bytes(), filename=path.name, title=title))
        assert res.status_code == 202, res.text
        ids[name] = res.json()["id"]
    # an upload recorded before titles were checked (or by a program of its own)
    old = new_video_id()
    source = web.platform.files.put(f"uploads/{old}/source.mp4", clips["tiny"],
                                    content_type="video/mp4")
    web.platform.send("uploads", Upload(video_id=old, title=STORED_TITLE, source=source,
                                        uploaded_at=time.time(), size=source.size), key=old)
    web.accepted.append(old)
    ids["old title"] = old
    return ids


def test_refused_uploads_leave_nothing_half_written(web: Web, in_pipeline: dict[str, str],
                                                    bad_files: dict[str, Path]) -> None:
    # after every other test of this module that uploads (they run first, in file order)
    stored = _stored(web)
    assert stored == sorted(f"uploads/{v}/source.mp4" for v in web.accepted)
    assert all(UPLOAD_NAME.match(name) for name in stored)
    assert len({u.video_id for u in web.platform.values("uploads")}) == len(web.accepted)
    tmp = web.platform.directory / "files" / ".tmp"
    assert sorted(os.listdir(tmp)) == []


@pytest.fixture(scope="module")
def processed(web: Web, in_pipeline: dict[str, str]) -> dict[str, str]:
    # the limit is lowered after the uploads were accepted: the probe refuses "too long"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VIDEOSITE_MAX_DURATION_S", str(MAX_DURATION_S))
        for service in STAGES:
            web.platform.run_until_idle(service, timeout=60.0)
    return in_pipeline


def test_a_video_over_the_limits_fails_and_the_others_are_processed(
        web: Web, processed: dict[str, str]) -> None:
    doc = web.client.get(f"/api/videos/{processed['too long']}").json()
    assert doc["status"] == "failed"
    assert doc["reason"].startswith("rejected: "), doc["reason"]
    assert "duration" in doc["reason"] and str(MAX_DURATION_S) in doc["reason"]
    page = web.client.get(f"/videos/{processed['too long']}")
    assert page.status_code == 200
    assert 'data-status="failed"' in page.text
    assert f'<p class="reason">{escape(doc["reason"])}</p>' in page.text
    good = web.client.get(f"/api/videos/{processed['good']}").json()
    assert good["status"] == "ready" and good["reason"] is None
    assert good["title"] == HTML_TITLE
    # every path-trick upload was processed too
    for video_id in web.accepted:
        if video_id not in processed.values():
            status = web.client.get(f"/api/videos/{video_id}").json()["status"]
            assert status == "ready", video_id
    # each failed video is reported once to the exceptions stream, by the join
    reported = {e.key(): (e.service, e.document["stage"], e.error_type, e.message)
                for e in web.platform.exceptions()}
    assert sorted(reported) == sorted(processed[n].encode() for n in ("too long", "truncated"))
    vid = processed["too long"]
    assert reported[vid.encode()] == (
        "join", "reported", "videosite.join.VideoFailed",
        f"video {vid} failed in probe (rejected): {doc['reason']}")
    ops = web.client.get("/ops", headers=AUTH).text
    assert "None." not in ops
    assert str(escape(f"video {vid} failed in probe (rejected): {doc['reason']}")) in ops


def test_the_originals_of_videos_over_a_limit_or_failed_in_processing_are_kept(
        web: Web, processed: dict[str, str]) -> None:
    # "too long" was refused by the probe over a limit (lowered after the upload: a wrong
    # limit must not delete valid videos); "truncated" failed while being processed: both
    # kept, to be processed again once the cause is fixed
    uploads = [name for name in _stored(web) if name.startswith("uploads/")]
    assert uploads == sorted(f"uploads/{v}/source.mp4" for v in web.accepted)
    assert f"uploads/{processed['too long']}/source.mp4" in uploads
    assert f"uploads/{processed['truncated']}/source.mp4" in uploads
    doc = web.client.get(f"/api/videos/{processed['too long']}").json()
    assert (doc["status"], doc["title"]) == ("failed", "three seconds")  # still listed


def test_a_truncated_mp4_with_its_index_first_fails(web: Web, processed: dict[str, str]
                                                    ) -> None:
    # the first half of an MP4 whose index comes first opens and probes at the full
    # duration (the index says so); the transcode finds it short and fails it
    doc = web.client.get(f"/api/videos/{processed['truncated']}").json()
    assert doc["status"] == "failed", doc
    assert "truncated" in doc["reason"], doc


def test_a_stored_title_is_shown_without_control_or_bidi_characters(
        web: Web, processed: dict[str, str]) -> None:
    vid = processed["old title"]
    doc = web.client.get(f"/api/videos/{vid}").json()
    # the API says what the catalog stores: the upload's title without its NUL, which no table
    # can hold (the other characters stay, and the pages leave them out)
    assert (doc["status"], doc["title"]) == ("ready", STORED_TITLE.replace("\x00", ""))
    page = web.client.get(f"/videos/{vid}").text
    assert "<title>nul evil line sep \u00b7 videosite</title>" in page
    assert "<h1>nul evil line sep</h1>" in page
    gallery = web.client.get("/").text
    assert '<span class="title">nul evil line sep</span>' in gallery
    for text in (page, gallery):
        assert not any(char in text for char in "\x00\u202e\u2066\u2069\u2028\x1b")


def test_an_html_title_is_shown_as_text(web: Web, processed: dict[str, str]) -> None:
    for path in ("/", f"/videos/{processed['good']}"):
        page = web.client.get(path).text
        assert HTML_TITLE not in page and "<img src=x" not in page
        assert str(escape(HTML_TITLE)) in page


# -- schemathesis ------------------------------------------------------------------------------


@pytest.mark.property  # its @given tests are built inside
def test_the_api_gives_no_server_error(web: Web) -> None:
    """Every operation of the app's OpenAPI schema, 30 generated requests each (with the
    token, so writes get past the 401), and not one answered 5xx."""
    api = schemathesis.openapi.from_asgi("/openapi.json", web.client.app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /api/videos", "GET /api/videos/{video_id}", "GET /videos/{video_id}",
        "GET /media/{video_id}/{name}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

        no_server_error()


# -- when the streams cannot record an upload ---------------------------------------------------


def test_an_upload_ffmpeg_cannot_check_for_want_of_memory_gets_503_and_leaves_nothing(
        web: Web, clips: dict[str, Path]) -> None:
    before = _stored(web)
    with ffmpeg_allocations_at_most(STARVED):
        res = post(web, multipart(clips["tiny"].read_bytes()))
    assert (res.status_code, res.headers["retry-after"]) == (503, "30"), res.text
    assert res.json()["detail"].startswith(
        "the upload could not be checked: reading the video failed for a reason outside the "
        "file, to be retried: MemoryError: "), res.json()
    assert _stored(web) == before


@contextmanager
def streams_locked(directory: Path) -> Iterator[None]:
    """Another process's write lock on the embedded log's database (``BEGIN EXCLUSIVE``):
    appends wait for it up to the log's busy timeout. Released on leaving (not after a
    fixed time: a loaded machine could reach the append only after that)."""
    lock = sqlite3.connect(directory / "streams.db", isolation_level=None,
                           check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        lock.execute("COMMIT")
        lock.close()


@dataclass
class Unrecorded:
    directory: Path
    files: FileStore
    tables: Tables

    def app(self, busy_timeout_ms: int, **settings: Any) -> Any:
        url = f"local:{self.directory / 'streams'}?busy_timeout_ms={busy_timeout_ms}"
        return create_app(url, self.files, self.tables, token=TOKEN, **settings)

    def uploads(self) -> list[str]:
        root = self.files.url.rstrip("/") + "/"
        return sorted(ref.url.removeprefix(root) for ref in self.files.list("uploads/"))

    def recorded(self) -> list[str]:
        with open_streams(f"local:{self.directory / 'streams'}") as streams:
            return [r.key.decode() for r in read_to_end(streams, "uploads") if r.key]


@pytest.fixture
def unrecorded(tmp_path: Path) -> Iterator[Unrecorded]:
    files = open_files((tmp_path / "files").as_uri())
    tables = open_tables(f"sqlite:///{tmp_path / 'tables.db'}")
    yield Unrecorded(tmp_path, files, tables)
    tables.close()
    files.close()


def test_an_upload_the_streams_cannot_record_gets_503_and_gc_removes_its_original(
        unrecorded: Unrecorded, clips: dict[str, Path]) -> None:
    body = multipart(clips["tiny"].read_bytes())
    with TestClient(unrecorded.app(busy_timeout_ms=300)) as client:
        with streams_locked(unrecorded.directory / "streams"):
            res = client.post("/api/videos", content=body, headers={**AUTH, **FORM})
        assert (res.status_code, res.headers["retry-after"]) == (503, "30"), res.text
        detail = res.json()["detail"]
        assert detail.startswith("the upload could not be queued for processing (records for "
                                 "uploads["), detail
        assert "stayed locked by another process beyond the busy timeout" in detail
        assert detail.endswith("): send it again later")
        (orphan,) = unrecorded.uploads()
        assert UPLOAD_NAME.match(orphan) and unrecorded.recorded() == []

        # the web server's producer failed a write: replaced, so the next upload is recorded
        again = client.post("/api/videos", content=body, headers={**AUTH, **FORM})
        assert again.status_code == 202, again.text
        kept = f"uploads/{again.json()['id']}/source.mp4"
        assert unrecorded.recorded() == [again.json()["id"]]
        assert unrecorded.uploads() == sorted([orphan, kept])

    # no record refers to the first original: millstream files gc removes it, and only it
    with open_streams(f"local:{unrecorded.directory / 'streams'}") as streams:
        report = run_gc(unrecorded.files, streams, unrecorded.tables, older_than_s=0)
    root = unrecorded.files.url.rstrip("/") + "/"
    assert [ref.url.removeprefix(root) for ref in report.deleted] == [orphan]
    assert unrecorded.uploads() == [kept]


def test_an_upload_not_confirmed_in_time_gets_503_and_may_still_be_recorded(
        unrecorded: Unrecorded, clips: dict[str, Path]) -> None:
    body = multipart(clips["tiny"].read_bytes())
    app_ = unrecorded.app(busy_timeout_ms=20_000, record_timeout_s=0.5)
    with TestClient(app_) as client, streams_locked(unrecorded.directory / "streams"):
        res = client.post("/api/videos", content=body, headers={**AUTH, **FORM})
        assert (res.status_code, res.headers["retry-after"]) == (503, "30"), res.text
        (stored,) = unrecorded.uploads()
        video_id = stored.split("/")[1]
        assert res.json() == {"detail": (
            "the upload could not be queued for processing (the streams did not confirm it "
            f"within 0.5 s; it may still be processed as video {video_id}): send it again "
            "later")}
    # the lock went: the record was stored after the answer, and its original is there
    deadline = time.monotonic() + 30
    while not unrecorded.recorded() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert unrecorded.recorded() == [video_id]
    assert unrecorded.uploads() == [stored]
