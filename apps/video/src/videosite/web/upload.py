"""Receiving one upload: the multipart body streamed, piece by piece, into the file store.

The body is read from the ASGI ``receive`` channel (never whole in memory) and parsed by
python-multipart's streaming parser. A declared ``Content-Length`` over the limit is refused
before anything is read; the bytes are counted as they arrive too (chunked bodies). The
form has two parts, ``title`` and ``file``, one each: any other part, or one sent twice, is
refused as soon as its headers name it. The title is checked (``videosite.titles``) as soon
as its part ends: a form that sends it first is refused before a byte of the file is read,
and one that sends it after the file is refused before the stored object is committed and
before anything probes it, so a bad title never costs storage. A form without a title is
refused once the body ends, before the object is committed. Nothing but the file's bytes is
held: the title up
to ``max_field_bytes``, a part's header line up to the same, and everything in the body but
the file's bytes (headers, title, boundaries, preamble, epilogue) up to ``max_form_bytes``
— past a cap the upload is refused at once (413), before the rest is read. The file
part's first bytes are sniffed before a single byte is stored — its name and declared type
are never trusted — and the stored object's headers are checked against the media limits
(before any frame is decoded; then one frame must decode) before it is accepted. A
client that sends nothing for ``idle_timeout_s`` (or takes longer than ``upload_timeout_s``)
is dropped. Every refusal is an ``UploadRefused`` carrying the HTTP status and the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from millstream.files import FileRef, FileStore, FileWriter, pinned
from videosite.config import media_limits
from videosite.media import MediaError, MediaRejected, NotAVideo, probe, sniff
from videosite.media.sniff import HEAD_BYTES
from videosite.titles import MAX_TITLE, BadTitle, check_title

from .settings import WebSettings

__all__ = ["CONTAINERS", "PARTS", "RETRY_AFTER_S", "Received", "UploadRefused", "receive_upload"]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

#: container (as sniff names it) -> (file suffix, content type) of the stored original
CONTAINERS: dict[str, tuple[str, str]] = {
    "mp4": (".mp4", "video/mp4"),
    "mov": (".mov", "video/quicktime"),
    "webm": (".webm", "video/webm"),
    "matroska": (".mkv", "video/x-matroska"),
    "avi": (".avi", "video/x-msvideo"),
    "mpegts": (".ts", "video/mp2t"),
    "flv": (".flv", "video/x-flv"),
    "ogg": (".ogv", "video/ogg"),
    "mpeg-ps": (".mpg", "video/mpeg"),
    "asf": (".wmv", "video/x-ms-asf"),
}
#: the names of the file's part and the title's, and every part a form may have (one each)
FILE = "file"
TITLE = "title"
PARTS = (TITLE, FILE)
PARTS_SHOWN = "'title' and 'file'"
#: how much of the file part is gathered before it is handed to the store's writer
WRITE_CHUNK = 1 << 20
#: seconds a client is asked to wait (``Retry-After``) before sending a 503'd upload again
RETRY_AFTER_S = 30


class UploadRefused(Exception):
    """Raised when an upload is refused; ``status`` is the HTTP status to answer, and
    ``retry_after`` (seconds) when trying again later may succeed (503)."""

    def __init__(self, status: int, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Received:
    """A stored upload: the original's reference, its checked title, and what it is."""

    ref: FileRef
    container: str
    content_type: str
    title: str
    filename: str | None


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    value: bytearray = field(default_factory=bytearray)


def _shown(name: str) -> str:
    """A part's name as an error message quotes it (a long one cut)."""
    return repr(name if len(name) <= 40 else name[:40] + "...")


class _Form:
    """The parser's callbacks: the title gathered (small), file bytes queued for the store.

    Only the parts ``PARTS`` are accepted, one each, and a part is refused as soon as its
    headers name it, so a form of thousands of fields is refused at the first one too
    many. The title is never held beyond ``max_field_bytes``."""

    def __init__(self, max_field_bytes: int) -> None:
        self.max_field_bytes = max_field_bytes
        self.fields: dict[str, str] = {}
        self.names: list[str] = []  # the parts seen, in order
        self.part = _Part()
        self._header = [bytearray(), bytearray()]
        self.in_file = False
        self.file_done = False
        self.file_bytes = 0  # the file's bytes seen so far
        self.filename: str | None = None
        self.pending = bytearray()
        self.ended = False

    @property
    def file_seen(self) -> bool:
        return FILE in self.names

    def callbacks(self) -> Any:  # python-multipart's MultipartCallbacks (a TypedDict)
        return {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.part = _Part()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_grows(0, data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_grows(1, data[start:end])

    def _header_grows(self, which: int, data: bytes) -> None:
        if len(self._header[0]) + len(self._header[1]) + len(data) > self.max_field_bytes:
            raise UploadRefused(413, "a header line of a form part is over "
                                     f"{self.max_field_bytes} bytes")
        self._header[which] += data

    def _header_end(self) -> None:
        name, value = (bytes(h).decode("latin-1") for h in self._header)
        self.part.headers[name.strip().lower()] = value.strip()
        self._header = [bytearray(), bytearray()]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get("content-disposition", ""))
        raw = options.get(b"name")
        if raw is None:
            raise UploadRefused(400, "a form part without a name: send only the parts "
                                     f"{PARTS_SHOWN}")
        name = raw.decode("utf-8", "replace")
        if name not in PARTS:
            raise UploadRefused(400, f"unexpected form part {_shown(name)}: send only the "
                                     f"parts {PARTS_SHOWN}")
        if name in self.names:
            raise UploadRefused(400, f"the form part {name!r} was sent twice: send one "
                                     "of each")
        self.names.append(name)
        self.part.name = name
        if name == FILE:
            self.in_file = True
            filename = options.get(b"filename")
            if filename is not None:
                self.filename = filename.decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.pending += data[start:end]
            self.file_bytes += end - start
            return
        if len(self.part.value) + end - start > self.max_field_bytes:
            raise UploadRefused(413, f"the form part {self.part.name!r} is over "
                                     f"{self.max_field_bytes} bytes")
        self.part.value += data[start:end]

    def _part_end(self) -> None:
        if self.in_file:
            self.in_file, self.file_done = False, True
            return
        try:
            value = bytes(self.part.value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UploadRefused(400, f"the form part {self.part.name!r} is not UTF-8 "
                                     f"(byte {exc.start + 1} of it)") from None
        if self.part.name == TITLE:  # here, so a bad title costs no storage
            try:
                value = check_title(value)
            except BadTitle as exc:
                raise UploadRefused(400, str(exc)) from None
        self.fields[self.part.name] = value

    def _end(self) -> None:
        self.ended = True


class _Upload:
    """One upload in progress: the parser fed from ``receive``, the writer fed from it."""

    def __init__(self, files: FileStore, name: str, settings: WebSettings,
                 pin: pinned | None) -> None:
        self.files = files
        self.pin = pin
        self.name = name
        self.settings = settings
        self.form = _Form(settings.max_field_bytes)
        self.writer: FileWriter | None = None
        self.container: str | None = None
        self.head = bytearray()

    async def drain(self, final: bool = False) -> None:
        """Sniff the first bytes once there are enough, then pass queued bytes to the store."""
        form = self.form
        if self.container is None and (len(form.pending) >= HEAD_BYTES or form.file_done
                                       or (final and form.pending)):
            head = bytes(form.pending[:HEAD_BYTES])
            try:
                self.container = sniff(head) if head else ""
            except NotAVideo as exc:
                raise UploadRefused(415, f"not a video: {exc}") from None
            if not head:
                raise UploadRefused(415, "not a video: an empty file")
            suffix, content_type = CONTAINERS[self.container]
            if self.pin is not None:  # before storing: gc must not take it until it is sent
                await asyncio.to_thread(self.pin.hold, self.name + suffix)
            self.writer = await asyncio.to_thread(
                self.files.writer, self.name + suffix, content_type=content_type)
        if self.writer is not None and form.pending and (
                len(form.pending) >= WRITE_CHUNK or form.file_done or final):
            data, form.pending = bytes(form.pending), bytearray()
            await asyncio.to_thread(self.writer.write, data)

    async def abort(self) -> None:
        if self.writer is not None:
            await asyncio.to_thread(self.writer.abort)


async def _next_message(receive: Receive, idle: float, deadline: float
                        ) -> MutableMapping[str, Any]:
    loop = asyncio.get_running_loop()
    wait = min(idle, deadline - loop.time())
    try:
        if wait <= 0:
            raise TimeoutError
        return await asyncio.wait_for(receive(), wait)
    except TimeoutError:
        raise UploadRefused(408, "the upload was too slow (timed out)") from None


async def receive_upload(receive: Receive, headers: MutableMapping[str, str] | Any,
                         files: FileStore, name: str, settings: WebSettings,
                         pin: pinned | None = None) -> Received:
    """Stream a ``multipart/form-data`` body into ``files`` as ``name`` + a suffix, pinned
    by ``pin`` (``millstream.files.pinned``) before it is stored, against ``files gc``.

    ``headers`` are the request's (case-insensitive mapping). Raises UploadRefused."""
    kind, options = parse_options_header(headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRefused(415, "send the video as multipart/form-data")
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise UploadRefused(400, "a malformed Content-Length") from None
        if size > settings.max_upload_bytes:
            raise UploadRefused(413, f"the upload declares {size} bytes, over the limit of "
                                     f"{settings.max_upload_bytes}")
    upload = _Upload(files, name, settings, pin)
    try:
        # _Form refuses a header line over max_field_bytes as the parser hands it over (at
        # the line's end, or the chunk's); the parser's own bound is only a backstop
        parser = MultipartParser(boundary, upload.form.callbacks(),
                                 max_header_size=settings.max_form_bytes)
    except FormParserError as exc:
        raise UploadRefused(400, f"a malformed multipart boundary ({exc})") from None
    deadline = asyncio.get_running_loop().time() + settings.upload_timeout_s
    count = 0
    try:
        while True:
            message = await _next_message(receive, settings.idle_timeout_s, deadline)
            if message["type"] == "http.disconnect":
                raise UploadRefused(400, "the client went away")
            body: bytes = message.get("body", b"")
            count += len(body)
            if count > settings.max_upload_bytes:
                raise UploadRefused(413, "the upload is over the limit of "
                                         f"{settings.max_upload_bytes} bytes")
            try:
                parser.write(body)
            except MultipartParseError as exc:
                raise UploadRefused(400, f"a malformed multipart body ({exc})") from None
            if count - upload.form.file_bytes > settings.max_form_bytes:
                raise UploadRefused(413, "the form, apart from the file, is over the limit "
                                         f"of {settings.max_form_bytes} bytes")
            more = bool(message.get("more_body"))
            await upload.drain(final=not more)
            if not more:
                break
        parser.finalize()
        if not upload.form.file_seen:
            raise UploadRefused(400, "no file in the upload (a part named 'file')")
        if not upload.form.ended or upload.writer is None:
            raise UploadRefused(400, "the multipart body ended early")
        if TITLE not in upload.form.fields:
            raise UploadRefused(400, f"no title in the upload (a part named 'title'): a "
                                     f"title of 1 to {MAX_TITLE} characters is needed")
        writer = upload.writer
        await asyncio.to_thread(writer.close)
    except BaseException:
        await upload.abort()
        raise
    assert writer.ref is not None and upload.container is not None
    ref = writer.ref
    try:  # the magic bytes looked right; the media limits and a decodable frame come next
        await asyncio.to_thread(_confirm, files, ref)
    except (NotAVideo, MediaRejected) as exc:
        await asyncio.to_thread(files.delete, ref)
        over = isinstance(exc, MediaRejected)
        raise UploadRefused(422 if over else 415,
                            f"{'rejected' if over else 'not a video'}: {exc}") from None
    except MediaError as exc:
        await asyncio.to_thread(files.delete, ref)
        if not exc.retriable:
            raise
        raise UploadRefused(503, f"the upload could not be checked: {exc}; send it again "
                                 "later", retry_after=RETRY_AFTER_S) from None
    except BaseException:  # whatever else refused it: nothing refused stays stored
        await asyncio.to_thread(files.delete, ref)
        raise
    return Received(ref, upload.container, CONTAINERS[upload.container][1],
                    upload.form.fields[TITLE], upload.form.filename)


def _confirm(files: FileStore, ref: FileRef) -> None:
    probe(files.local_path(ref), media_limits())  # headers checked before a frame decodes
