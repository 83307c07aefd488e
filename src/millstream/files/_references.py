"""Where the platform refers to stored objects: what ``files gc`` scans before deleting.

``References`` collects, per reason, the URLs of a store's objects that something still
refers to:

* ``records`` — a retained record of any stream: a ``FileRef`` anywhere in a JSON value, an
  object's URL anywhere in a JSON string, or the URL's bytes anywhere in a value, key or
  header that is not JSON. A claim-check record's object is followed: the value it holds is
  scanned too, JSON or not. An exception record's failed input (its value, key and headers,
  base64 in the JSON) is scanned as a record.
* ``checkpoints`` — a record of ``millstream.checkpoints``: its inline state, and the state
  object it names (read and scanned).

Claim-check and checkpoint-state objects are followed in the store collected and in the
platform's (``platform``), whichever is collected: a value kept there may refer to objects
of another store.
* ``tables`` — a document of any table.
* ``snapshots`` — every object under ``tables/<table>/snapshots/`` (what ``list_snapshots``
  lists) and every reference in the documents it holds.

It remembers where it stopped in each stream, so ``scan_tail`` reads only what was appended
since.
"""

from __future__ import annotations

import base64
import bisect
import gzip
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from millstream.errors import CorruptDataError, NotFoundError, OperationTimeoutError
from millstream.files._base import FileRef, FileStore
from millstream.files._claimcheck import PREFIX as CLAIM_PREFIX
from millstream.records import Record, StreamPartition
from millstream.streams._base import Streams
from millstream.streams._reading import read_ranges
from millstream.tables._base import Tables

__all__ = ["REASONS", "Progress", "References", "find_references", "is_snapshot"]

log = logging.getLogger(__name__)

#: Why gc keeps an object, in the order an object is counted under (its first reason).
REASONS = ("records", "tables", "snapshots", "checkpoints", "pins", "young")
#: ``progress(what, name, count)``: a stream, table or snapshot was scanned.
Progress = Callable[[str, str, int], None]
_CHECKPOINTS = "millstream.checkpoints"
_EXCEPTIONS = "millstream.exceptions"
#: the longest object name a mention is searched for (S3 keys are at most 1024 bytes)
_NAME_MAX = 4096
#: how long reading every stream to its end may take
_READ_S = 3600.0
_HEX = frozenset("0123456789abcdef")


def _is_ref(value: dict[Any, Any]) -> bool:
    url, size, sha256 = value.get("url"), value.get("size"), value.get("sha256")
    return (isinstance(url, str) and isinstance(size, int) and not isinstance(size, bool)
            and isinstance(sha256, str) and len(sha256) == 64 and set(sha256) <= _HEX)


def find_references(value: object, base: str | None = None) -> set[str]:
    """URLs of every FileRef-shaped dict (``url``, ``size``, ``sha256``) anywhere inside
    ``value`` (dicts, lists, tuples) — and, when ``base`` is given, every string that starts
    with ``base`` (an object's URL written as a plain string)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if _is_ref(item):
                found.add(str(item["url"]))
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif base is not None and isinstance(item, str) and item.startswith(base):
            found.add(item)
    return found


def _strings_mentioning(value: object, base: str) -> list[str]:
    """Every string anywhere inside ``value`` that holds ``base`` after its start (one that
    starts with it is an object's URL, found by ``find_references``)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(k for k in item if isinstance(k, str))
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str) and base in item and not item.startswith(base):
            found.append(item)
    return found


def is_snapshot(name: str) -> bool:
    """Whether object ``name`` is a table snapshot (``tables/<table>/snapshots/…``)."""
    parts = name.split("/")
    return len(parts) >= 4 and parts[0] == "tables" and parts[2] == "snapshots"


class References:
    """What refers to the objects of ``store``, by reason; see the module docstring."""

    def __init__(self, store: FileStore, progress: Progress | None = None,
                 tick: Callable[[], None] | None = None,
                 platform: FileStore | None = None) -> None:
        self.store = store
        #: the stores whose claim-check and checkpoint-state objects are followed: the one
        #: collected and the platform's (where services put them), whichever is collected
        self._readers = [store] + ([platform] if platform is not None
                                   and platform.url != store.url else [])
        self._tick = tick or (lambda: None)  # called for every record, row and document read
        self.base = store.url + "/"
        self._base_bytes = self.base.encode()
        self.found: dict[str, set[str]] = {reason: set() for reason in REASONS}
        #: non-JSON values mentioning the store's URL: an object is kept if its URL is in one
        self.mentions: dict[str, list[bytes]] = {reason: [] for reason in REASONS}
        #: stream -> partition -> the end offset scanned so far
        self.ends: dict[str, dict[int, int]] = {}
        self._followed: set[str] = set()
        #: per reason: how many mentions are indexed, and the text after the store's URL in
        #: each, sorted (see ``_mentioned``)
        self._index: dict[str, tuple[int, list[bytes]]] = {}
        self._progress = progress
        self.unreadable: list[str] = []

    # --- the verdict --------------------------------------------------------------------------
    def reason(self, url: str) -> str | None:
        """The first reason that keeps the object at ``url``, or None."""
        if not url.startswith(self.base):
            return next((r for r in REASONS if url in self.found[r]), None)
        name = url[len(self.base):].encode()
        for reason in REASONS:
            if url in self.found[reason] or self._mentioned(reason, name):
                return reason
        return None

    def _mentioned(self, reason: str, name: bytes) -> bool:
        """Whether a mention holds the store's URL followed by ``name``: the text after each
        place the URL appears is kept sorted, so the one that would start with ``name`` is
        where ``name`` sorts (a lookup in log time, not a search of every mention)."""
        done, after = self._index.setdefault(reason, (0, []))
        mentions = self.mentions[reason]
        if done < len(mentions):
            for text in mentions[done:]:
                at = text.find(self._base_bytes)
                while at >= 0:
                    start = at + len(self._base_bytes)
                    after.append(text[start:start + _NAME_MAX])
                    at = text.find(self._base_bytes, start)
            after.sort()
            self._index[reason] = (len(mentions), after)
        i = bisect.bisect_left(after, name)
        return i < len(after) and after[i].startswith(name)

    # --- values -------------------------------------------------------------------------------
    def add_bytes(self, reason: str, data: bytes | None) -> None:
        """A value that may be JSON (scanned as such) or not (kept as a mention)."""
        if not data:
            return
        head = data[:64].lstrip()
        if head[:1] in (b"{", b"[", b'"'):
            if b"sha256" not in data and self._base_bytes not in data:
                return  # JSON that can hold neither a FileRef nor a URL of this store
            try:
                self.add_json(reason, json.loads(data))
                return
            except (ValueError, UnicodeDecodeError):
                pass  # not JSON after all
        if self._base_bytes in data:
            self.mentions[reason].append(bytes(data))

    def add_json(self, reason: str, value: object) -> None:
        refs = find_references(value, self.base)
        self.found[reason] |= refs
        for text in _strings_mentioning(value, self.base):  # HTML, markdown, a sentence…
            self.mentions[reason].append(text.encode())
        for url in refs:
            self._follow(reason, url)

    def _add_failed_input(self, reason: str, value: bytes) -> None:
        """An exception record (``millstream.exceptions``) keeps the failed input's value, key
        and headers base64-encoded: scan their bytes as a record's."""
        try:
            doc = json.loads(value)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        inner = doc.get("input")
        fields = [doc.get("value_b64")]
        if isinstance(inner, dict):
            fields.append(inner.get("key_b64"))
            for pair in inner.get("headers") or ():
                if isinstance(pair, list) and len(pair) == 2:
                    fields.append(pair[1])
        for text in fields:
            if not isinstance(text, str) or not text:
                continue
            try:
                data = base64.b64decode(text, validate=True)
            except ValueError:
                continue  # not base64: the JSON scan above saw it as it is
            self.add_bytes(reason, data)
            if self._base_bytes in data:
                self.mentions[reason].append(data)

    def add_reader(self, store: FileStore) -> None:
        """Also read the objects of ``store`` (snapshots written to it, say)."""
        if all(r.url != store.url for r in self._readers):
            self._readers.append(store)

    def _reader(self, url: str) -> FileStore | None:
        """The store (collected, or the platform's) that holds the object at ``url``."""
        return next((r for r in self._readers if url.startswith(r.url + "/")), None)

    def _follow(self, reason: str, url: str) -> None:
        """Scan the contents of a claim-check object: the value it stands for."""
        reader = self._reader(url)
        if (reader is None or not url.startswith(reader.url + "/" + CLAIM_PREFIX)
                or url in self._followed):
            return
        self._followed.add(url)
        self._add_object(reason, url)

    def _add_object(self, reason: str, url: str) -> None:
        """Scan the object at ``url``. A damaged one (``CorruptDataError``) is scanned as it
        is, unverified: its bytes as JSON if they still parse, and as a mention either way,
        so that every URL still written in it keeps its object (keeping more is safe)."""
        try:
            self.add_bytes(reason, self._read(url))
        except CorruptDataError as exc:
            log.warning("%s is damaged (%s); scanning its bytes as they are", url, exc)
            self.unreadable.append(url)
            data = self._read_unverified(url)
            self.add_bytes(reason, data)
            if data and self._base_bytes in data:
                self.mentions[reason].append(data)

    def _read(self, url: str) -> bytes | None:
        """The object's bytes, whatever they start with: a value that is not JSON (msgpack,
        protobuf, text) can still hold an object's URL."""
        try:
            return (self._reader(url) or self.store).read_bytes(url)
        except NotFoundError:
            return None  # gone already: nothing it holds can be restored

    def _read_unverified(self, url: str) -> bytes | None:
        """The bytes stored at ``url`` as they are now, without the hash check, up to the
        recorded size (or to where they end, if the object was cut short)."""
        chunks: list[bytes] = []
        try:
            with (self._reader(url) or self.store).open(url, verify=False) as f:
                raw: Any = getattr(f, "raw", f)  # unbuffered: a cut-short end keeps the rest
                buffer = bytearray(1024 * 1024)
                while True:
                    try:
                        n = raw.readinto(buffer)
                    except CorruptDataError:
                        break  # cut short: what is there
                    if not n:
                        break
                    chunks.append(bytes(buffer[:n]))
        except (NotFoundError, CorruptDataError) as exc:
            log.warning("cannot read %s even unverified: %s", url, exc)
            return None
        return b"".join(chunks)

    # --- where references live ----------------------------------------------------------------
    def scan_streams(self, streams: Streams) -> None:
        """Every record retained in every stream, up to the ends seen now: read by one
        consumer of every stream that has records (on Kafka a consumer per stream costs about
        half a second before its first record, the broker's fetch wait)."""
        admin = streams.admin()
        todo: dict[str, dict[int, tuple[int, int]]] = {}
        for name in admin.list_streams():
            info = admin.describe_stream(name)
            todo[name] = {p.partition: (p.start, p.end) for p in info.partitions}
        seen = dict.fromkeys(todo, 0)
        wanted = {StreamPartition(name, partition): (first, end)
                  for name, ranges in todo.items()
                  for partition, (first, end) in ranges.items() if first < end}
        if wanted:
            with streams.open_consumer() as reader:
                reader.subscribe(sorted({sp.stream for sp in wanted}))
                for sp, (first, _) in wanted.items():
                    if reader.position(sp) < first:
                        reader.seek(sp, first)
                deadline = time.monotonic() + _READ_S
                while any(reader.position(sp) < end for sp, (_, end) in wanted.items()):
                    if time.monotonic() > deadline:
                        raise OperationTimeoutError(
                            f"reading every stream to its end took over {_READ_S:g} s")
                    for record in reader.poll(max_records=10_000, timeout=0.5):
                        sp = StreamPartition(record.stream, record.partition)
                        if sp in wanted and record.offset < wanted[sp][1]:
                            seen[record.stream] += 1
                            self._add_record(record)
        for name, ranges in todo.items():
            self._scanned(name, ranges)
            if self._progress is not None:
                self._progress("stream", name, seen[name])

    def scan_tail(self, streams: Streams) -> int:
        """The records appended since the last scan (new streams from their start); returns
        how many."""
        admin = streams.admin()
        seen = 0
        for name in admin.list_streams():
            info = admin.describe_stream(name)
            done = self.ends.get(name, {})
            ranges = {p.partition: (max(p.start, done.get(p.partition, 0)), p.end)
                      for p in info.partitions}
            seen += self._scan_ranges(streams, name, ranges)
        return seen

    def _scan_ranges(self, streams: Streams, name: str,
                     ranges: dict[int, tuple[int, int]]) -> int:
        seen = 0
        # nothing to read (most streams, in a tail): no consumer, which on Kafka costs a
        # subscription per stream
        todo = ranges if any(first < end for first, end in ranges.values()) else {}
        for record in read_ranges(streams, name, todo) if todo else ():
            seen += 1
            self._add_record(record)
        self._scanned(name, ranges)
        return seen

    def _add_record(self, record: Record) -> None:
        self._tick()
        reason = "checkpoints" if record.stream == _CHECKPOINTS else "records"
        self.add_bytes(reason, record.value)
        if record.stream == _EXCEPTIONS and record.value:
            self._add_failed_input(reason, record.value)
        if record.key and self._base_bytes in record.key:
            self.mentions[reason].append(bytes(record.key))
        for _, hvalue in record.headers or ():
            if hvalue and self._base_bytes in hvalue:
                self.mentions[reason].append(bytes(hvalue))

    def _scanned(self, name: str, ranges: dict[int, tuple[int, int]]) -> None:
        """``name`` was read up to the ends in ``ranges``: follow its checkpoint states."""
        ends = self.ends.setdefault(name, {})
        for partition, (_, end) in ranges.items():
            ends[partition] = max(ends.get(partition, 0), end)
        if name == _CHECKPOINTS:
            for url in list(self.found["checkpoints"]):
                self._follow_state(url)

    def _follow_state(self, url: str) -> None:
        """A checkpoint's state kept as an object (``<group>/checkpoints/<n>/<sha>.json``):
        scan it for the references it holds."""
        if (url in self._followed or self._reader(url) is None
                or "/checkpoints/" not in url or not url.endswith(".json")):
            return
        self._followed.add(url)
        self._add_object("checkpoints", url)

    def scan_tables(self, tables: Tables) -> None:
        """Every document of every table."""
        for name in tables.list_tables():
            try:
                table = tables.table(name)
                with table.export() as view:
                    seen = 0
                    for _, doc in view.rows():
                        seen += 1
                        self._tick()
                        self.add_bytes("tables", doc.encode())
            except NotFoundError:
                continue  # dropped meanwhile
            if self._progress is not None:
                self._progress("table", name, seen)

    def scan_snapshots(self, snapshots: Iterable[FileRef]) -> None:
        """Keep every snapshot listed, and what its documents refer to."""
        for ref in snapshots:
            self.found["snapshots"].add(ref.url)
            seen = self._scan_snapshot(ref)
            if self._progress is not None:
                name = ref.url.removeprefix(self.base) if ref.url.startswith(self.base) \
                    else ref.url
                self._progress("snapshot", name, seen)

    def _scan_snapshot(self, ref: FileRef) -> int:
        seen = 0
        try:
            reader = self._reader(ref.url) or self.store
            with reader.open(ref) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as lines:
                for number, line in enumerate(lines):
                    if number == 0 or line.startswith(b"{"):
                        continue  # the header and the trailer
                    _, _, doc = line.rstrip(b"\n").partition(b"\t")
                    seen += 1
                    self._tick()
                    self.add_bytes("snapshots", doc)
        except NotFoundError:
            pass  # deleted meanwhile (by `files rm`)
        except (CorruptDataError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
            # damage only: any other OSError (a disk, a store unavailable) ends the gc, as a
            # snapshot not read would let what it refers to be deleted
            # kept, and scanned as far as its bytes still inflate: restore refuses a damaged
            # snapshot, but a restored original would name the same objects
            log.warning("snapshot %s is damaged (%s); kept, scanned as far as it reads",
                        ref.url, exc)
            self.unreadable.append(ref.url)
            seen = self._scan_damaged_snapshot(ref)
        return seen

    def _scan_damaged_snapshot(self, ref: FileRef) -> int:
        data = self._read_unverified(ref.url) or b""
        inflate = zlib.decompressobj(wbits=31)
        text: list[bytes] = []
        for i in range(0, len(data), 4096):
            try:
                text.append(inflate.decompress(data[i:i + 4096]))
            except zlib.error:
                break  # the rest does not inflate
        seen = 0
        for number, line in enumerate(b"".join(text).split(b"\n")):
            if number == 0 or not line or line.startswith(b"{"):
                continue
            _, _, doc = line.partition(b"\t")
            seen += 1
            self.add_bytes("snapshots", doc)
            if self._base_bytes in line:
                self.mentions["snapshots"].append(line)  # a document cut short or altered
        return seen
