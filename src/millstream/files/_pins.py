"""Pins: how running writers and ``files gc`` agree on objects no record refers to *yet*.

A platform writer (a service's ``ctx.files``, the claim-check, a checkpoint's state, the
public ``millstream.files.pinned``) stores or reuses an object, then sends the record that
refers to it; until that record is durable, no scan can find the reference. The writer
therefore **pins** the object first, and gc never deletes a pinned object. Everything lives in
the file store itself, under ``millstream.gc/`` (ordinary objects, so every process that
shares the store sees it):

    millstream.gc/pins/<token>-<n>      a writer holds the objects it names (one small
                                        object per hold: a send_batch, a ctx.files.put)
    millstream.gc/condemned/<key>/<id>  the gc <id> is about to delete that object
    millstream.gc/running/<id>          a gc is running

The protocol, per object ``X`` (``<key>`` is a hash of X's name):

* writer — ``hold(X)``: (w1) write a pin; (w2) wait while X is condemned; then store X, or
  reuse it if it exists; send the record referring to it. ``release()`` once the record is
  durable: (w3) list the running gcs; if there are none, delete the pins; else rewrite each
  pin to name those gcs ("released, keep me for them") and delete it later.
* gc — (g0) write its running marker, list the objects, scan every reference; then for X:
  (g1) condemn X; (g2) read X's pins — a live pin counts, a released one only if it names
  this gc, an unreadable one keeps everything; (g3) read the records appended to every
  stream since the scan; delete X only if none of them keeps it; (g4) lift the condemnation.

Why a reference written by a writer is never left dangling: both sides write before they read
(w1 before w2, g1 before g2), so at least one sees the other — if g2 finds no pin that counts,
the pin was written after g2, or released before it without naming this gc. Written after:
then w2 came after g1, the writer sees the condemnation, waits for g4, and stores X again if
it was deleted. Released without naming this gc: its w3 saw no marker of this gc, so the
record was durable before g0 and the scan found it. A record appended between the scan and
g3 is also read at g3. A released pin whose gcs have all ended is deleted by the next gc.

What this needs from the store, and from the processes:

* a completed write is seen by every later read and **list** (``file://`` by POSIX, S3 by
  its strong read-after-write and list-after-write consistency; an S3-compatible store whose
  listings lag behind its writes breaks the argument above);
* **bounded pauses**, because leftovers of killed processes expire (``Limits``): a running
  marker after ``marker_s`` — gc rewrites it on time (``running_marker.refresh``, from a
  heartbeat thread every few seconds and as it lists, scans and deletes) and stops,
  deleting nothing more, once its last rewrite began over ``marker_s / 2`` ago (the whole
  process stopped, or the store stalled); a condemnation after ``condemn_s`` — gc starts
  deletes only within ``condemn_s / 4`` of beginning to condemn the batch, so a single delete (an S3
  request with its retries) must finish within the remaining ``3/4``; a pin after
  ``lease_s`` (a writer that holds an object for longer is not protected);
* no common clock: every age is measured on the **store's** clock — the modification time of
  an object this process has just written (its pin, or gc's marker) plus the monotonic time
  since — so a host whose clock is off does not misjudge a condemnation or a marker. No
  atomic compare-and-delete is needed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from millstream.errors import CorruptDataError, NotFoundError, UnavailableError
from millstream.files._base import FileRef, FileStore

__all__ = [
    "AREA",
    "LIMITS",
    "Limits",
    "Pins",
    "StoreClock",
    "condemn",
    "condemned",
    "drop_leftovers",
    "gc_running",
    "key_of",
    "pinned",
    "running_gcs",
    "running_marker",
    "uncondemn",
]

log = logging.getLogger(__name__)

AREA = "millstream.gc/"
PINS = AREA + "pins/"
CONDEMNED = AREA + "condemned/"
RUNNING = AREA + "running/"


@dataclass(frozen=True)
class Limits:
    """When leftovers of killed processes expire; see the module docstring. Every process
    that shares a store must use the same limits (tests shorten them)."""

    #: A pin older than this is a leftover of a killed writer.
    lease_s: float = 24 * 3600.0
    #: A running marker not rewritten for this long is a leftover of a killed gc.
    marker_s: float = 600.0
    #: A condemnation older than this is a leftover; gc starts deletes only in its first 1/4.
    condemn_s: float = 120.0


LIMITS = Limits()


@runtime_checkable
class Dated(Protocol):
    """A store that can tell when an object was written."""

    def modified(self, ref: FileRef | str) -> float: ...


def key_of(name: str) -> str:
    """The fixed-length key of object ``name`` in the pin area."""
    return hashlib.sha256(name.encode()).hexdigest()[:40]


class StoreClock:
    """The store's clock, read off an object this process wrote: its modification time plus
    the monotonic time since the write *ended* — never ahead of the store's own clock, so
    ages come out short (a writer waits longer, gc counts pins and markers as fresher)."""

    def __init__(self, store: FileStore) -> None:
        self._store = store
        self._anchor: tuple[float, float] | None = None  # (store mtime, monotonic after)

    def wrote(self, name: str, after: float) -> None:
        """``name`` was written, the write ending at monotonic ``after``: read its time."""
        if isinstance(self._store, Dated):
            try:
                self._anchor = (self._store.modified(name), after)
            except (NotFoundError, CorruptDataError):
                pass  # removed meanwhile: the previous anchor serves

    @property
    def known(self) -> bool:
        return self._anchor is not None

    def now(self) -> float:
        if self._anchor is None:
            raise RuntimeError("StoreClock.now() before any write was read")
        mtime, after = self._anchor
        return mtime + (time.monotonic() - after)

    def probe(self) -> float:
        """Write and remove a probe object to read the store's clock now."""
        name = f"{AREA}clock/{uuid.uuid4().hex}"
        self._store.put(name, b"", content_type="application/octet-stream")
        self.wrote(name, time.monotonic())
        try:
            self._store.delete(name)
        except NotFoundError:
            pass
        return self.now()


def _age(store: FileStore, ref: FileRef | str, now: float) -> float:
    """Seconds since ``ref`` was written by the store's clock ``now`` (0 when the store
    cannot tell: never stale). ``NotFoundError`` if it is gone — or going: on ``file://`` a
    delete removes the object's record before its file, and a look in between finds a file
    without a record."""
    if not isinstance(store, Dated):
        return 0.0
    try:
        return now - store.modified(ref)
    except CorruptDataError as exc:
        raise NotFoundError(f"{ref!r} is being deleted") from exc


def _note(what: str | list[str], after: list[str] | None = None) -> bytes:
    doc: dict[str, object] = {"what": what, "host": socket.gethostname(), "pid": os.getpid(),
                              "time": time.time()}
    if after is not None:
        doc["after"] = after
    return json.dumps(doc).encode()


class _Pin:
    __slots__ = ("attached", "name", "names", "pending")

    def __init__(self, name: str, names: list[str]) -> None:
        self.name = name
        self.names = names
        self.pending = 0  # holders whose record is not handed to the producer yet
        self.attached = 0  # sequence number of the last hold that used this pin


class Pins:
    """The pins one writer holds: objects it stored or reuses whose referring record is not
    durable yet. Thread-safe: threads sharing one producer each hold what they send, and a
    release drops only what was handed to the producer before its flush began.

    Each ``hold`` of new names writes one small pin object naming them (one PUT); a name
    already held joins the pin that holds it. ``hold`` returns a ticket; ``sent(ticket)``
    once the record is handed to the producer; ``mark()`` before the producer's flush and
    ``release(mark)`` after it. A caller that sends and flushes in one thread may pass
    ``sent=True`` to ``hold`` and call ``release()`` alone."""

    def __init__(self, store: FileStore, *, wait_s: float | None = None,
                 limits: Limits = LIMITS) -> None:
        self.store = store
        self.limits = limits
        self._token = uuid.uuid4().hex
        self._made = itertools.count(1)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._by_name: dict[str, _Pin] = {}  # every name held, and the pin holding it
        self._pins: dict[str, _Pin] = {}  # live pins, by object name
        self._deferred: list[str] = []  # pins released while a gc ran: dropped after it
        self._wait_s = limits.condemn_s if wait_s is None else wait_s
        self._clock = StoreClock(store)

    @property
    def holding(self) -> bool:
        with self._lock:
            return bool(self._pins or self._deferred)

    def hold(self, names: str | Iterable[str], *, sent: bool = False) -> list[_Pin]:
        """Pin ``names`` before storing or reusing them (one pin object for the new ones);
        waits while a gc is deleting one (then the caller finds it gone and stores it again).
        ``UnavailableError`` if a gc keeps it condemned for longer than the wait. Returns the
        ticket for ``sent``; with ``sent=True`` the hold counts as sent at once."""
        wanted = list(dict.fromkeys([names] if isinstance(names, str) else names))
        ticket: list[_Pin] = []
        fresh: list[str] = []
        with self._lock:
            seq = next(self._seq)
            for name in wanted:
                pin = self._by_name.get(name)
                if pin is not None and not sent:
                    pin.pending += 1
                if pin is not None:
                    pin.attached = seq
                    ticket.append(pin)
                else:
                    fresh.append(name)
            if fresh:
                pin = _Pin(f"{PINS}{self._token}-{next(self._made)}", fresh)
                pin.pending = 0 if sent else 1
                pin.attached = seq
                for name in fresh:
                    self._by_name[name] = pin
                self._pins[pin.name] = pin
                ticket.append(pin)
        if fresh:
            try:
                self.store.put(ticket[-1].name, _note(fresh), content_type="application/json")
            except BaseException:
                with self._lock:
                    for name in fresh:
                        self._by_name.pop(name, None)
                    self._pins.pop(ticket[-1].name, None)
                    if not sent:  # the pins it joined are not held up by it any more
                        for pin in ticket[:-1]:
                            pin.pending -= 1
                raise
            after = time.monotonic()
            if not self._clock.known:
                self._clock.wrote(ticket[-1].name, after)
        try:
            for name in wanted:
                self._wait_not_condemned(name)
        except BaseException:
            if not sent:
                self.sent(ticket)
            raise
        return ticket

    def sent(self, ticket: list[_Pin]) -> None:
        """The record of a ``hold`` has been handed to the producer (or will never be)."""
        with self._lock:
            for pin in ticket:
                pin.pending -= 1

    def _wait_not_condemned(self, name: str) -> None:
        marks = f"{CONDEMNED}{key_of(name)}/"
        deadline = time.monotonic() + self._wait_s
        while condemned(self.store, marks, self._clock, self.limits):
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"object {name!r} has been condemned by `millstream files gc` for over "
                    f"{self._wait_s:.0f} s; retry once that gc has finished")
            time.sleep(0.02)

    def mark(self) -> tuple[int, list[_Pin]]:
        """What a flush beginning now makes durable: the pins whose records are all handed
        to the producer."""
        with self._lock:
            return next(self._seq), [p for p in self._pins.values() if p.pending == 0]

    def release(self, mark: tuple[int, list[_Pin]] | None = None) -> None:
        """What refers to the pins of ``mark`` (default: every pin sent so far) is durable:
        drop them — unless a gc is running (it may have scanned before those references were
        written). Then each is rewritten to name the gcs running now, which honour it; it is
        deleted by a later ``release`` that finds no gc running, or by any gc once those have
        ended. A pin held again after ``mark`` was taken stays."""
        seq, candidates = self.mark() if mark is None else mark
        with self._lock:
            done = [p for p in candidates
                    if p.pending == 0 and p.attached < seq and self._pins.get(p.name) is p]
            for pin in done:
                del self._pins[pin.name]
                for name in pin.names:
                    if self._by_name.get(name) is pin:
                        del self._by_name[name]
            if not done and not self._deferred:
                return
        try:
            running = running_gcs(self.store, self._now(done), self.limits)
        except BaseException:
            self._restore(done)
            raise
        if running:
            for pin in done:
                self.store.put(pin.name, _note(pin.names, running),
                               content_type="application/json")
            with self._lock:
                self._deferred.extend(p.name for p in done)
            return
        with self._lock:
            drop, self._deferred = [*(p.name for p in done), *self._deferred], []
        for name in drop:
            try:
                self.store.delete(name)
            except NotFoundError:
                pass  # removed by a gc

    def _restore(self, pins: list[_Pin]) -> None:
        with self._lock:
            for pin in pins:
                self._pins[pin.name] = pin

    def _now(self, pins: list[_Pin]) -> float:
        if not self._clock.known:
            for pin in pins:
                self._clock.wrote(pin.name, time.monotonic())
                if self._clock.known:
                    break
        return self._clock.now() if self._clock.known else self._clock.probe()


def _store_now(store: FileStore, now: StoreClock | float | None) -> float:
    if isinstance(now, StoreClock):
        return now.now() if now.known else now.probe()
    return StoreClock(store).probe() if now is None else now


def running_gcs(store: FileStore, now: StoreClock | float | None = None,
                limits: Limits = LIMITS) -> list[str]:
    """The running markers of the gcs running on ``store`` (not leftovers of killed ones);
    ``now`` is the store's clock (read off a probe object when not given)."""
    found: list[str] = []
    refs = list(store.list(RUNNING))
    if not refs:
        return found
    at = _store_now(store, now)
    for ref in refs:
        try:
            if _age(store, ref, at) <= limits.marker_s:
                found.append(ref.url.rsplit("/", 1)[-1])
        except NotFoundError:
            continue  # that gc has just ended
    return found


def gc_running(store: FileStore, now: StoreClock | float | None = None,
               limits: Limits = LIMITS) -> bool:
    """Whether a gc (not a leftover of a killed one) is running on ``store``."""
    return bool(running_gcs(store, now, limits))


class running_marker:
    """``with running_marker(store) as marker:`` — announce a running gc (step g0) for the
    block. A heartbeat thread calls ``refresh()`` every few seconds whatever the gc is doing
    (a long S3 listing included), and gc calls it too as it goes; ``marker.check()`` before
    each delete. Once the last rewrite began over ``marker_s / 2`` ago (the whole process
    was stopped, or its store stalled) both raise ``UnavailableError`` from then on: writers
    may have stopped seeing this gc, so nothing more may be deleted. ``marker.clock`` is the
    store's clock."""

    def __init__(self, store: FileStore, limits: Limits = LIMITS) -> None:
        self._store = store
        self.limits = limits
        self.id = uuid.uuid4().hex
        self.name = f"{RUNNING}{self.id}"
        self._written = 0.0  # monotonic time the last rewrite began
        self._late: float | None = None  # how late it was found: nothing may be deleted
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.clock = StoreClock(store)

    def __enter__(self) -> running_marker:
        self._write()
        self._beat = threading.Thread(target=self._heartbeat, name="gc-marker", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        every = min(5.0, self.limits.marker_s / 20)
        while not self._stop.wait(every):
            try:
                self.refresh()
            except UnavailableError:
                return  # late: gc stops at its next check
            except Exception as exc:  # a failed rewrite: the next beat tries again
                log.warning("could not rewrite the gc marker %s: %s", self.name, exc)

    def _write(self) -> None:
        started = time.monotonic()
        self._store.put(self.name, _note("gc"), content_type="application/json")
        self.clock.wrote(self.name, time.monotonic())
        self._written = started

    def refresh(self) -> None:
        """Check lateness, then rewrite the marker if it was last written over
        ``marker_s / 10`` ago."""
        with self._lock:
            self.check()
            if time.monotonic() - self._written > self.limits.marker_s / 10:
                self._write()

    def check(self) -> None:
        """``UnavailableError`` if the marker may look expired to writers (this gc was held
        up for too long): nothing may be deleted then, nor ever after in this gc."""
        late = time.monotonic() - self._written
        if late > self.limits.marker_s / 2 and self._late is None:
            self._late = late
        if self._late is not None:
            raise UnavailableError(
                f"files gc was held up for {self._late:.0f} s, long enough for writers to stop "
                "waiting for it; it deleted nothing more — run it again")

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        try:
            self._store.delete(self.name)
        except NotFoundError:
            pass


def condemned(store: FileStore, marks: str, now: StoreClock | float | None = None,
              limits: Limits = LIMITS) -> bool:
    """Whether any gc (not a leftover of a killed one) condemns the object of ``marks``."""
    refs = list(store.list(marks))
    if not refs:
        return False
    at = _store_now(store, now)
    for ref in refs:
        try:
            if _age(store, ref, at) <= limits.condemn_s:
                return True
        except NotFoundError:
            continue  # lifted meanwhile
    return False


def condemn(store: FileStore, names: Iterable[str], gc: str) -> float:
    """Condemn ``names`` for the gc ``gc`` (step g1; each gc its own mark, so one that ends
    does not lift another's); returns the monotonic time *before the first write*, from
    which the deletes have ``condemn_s / 4``."""
    started = time.monotonic()
    for name in names:
        store.put(f"{CONDEMNED}{key_of(name)}/{gc}", _note(name),
                  content_type="application/json")
    return started


def uncondemn(store: FileStore, names: Iterable[str], gc: str) -> None:
    """Lift the condemnations of ``names`` by the gc ``gc`` (step g4)."""
    for name in names:
        try:
            store.delete(f"{CONDEMNED}{key_of(name)}/{gc}")
        except NotFoundError:
            pass


def _read_pin(store: FileStore, ref: FileRef, now: float,
              limits: Limits) -> tuple[bool, bytes | None]:
    """``(stale, note)``: ``note`` None if the pin is gone; ``CorruptDataError`` if it cannot
    be read twice in a row (on ``file://`` once may be a delete halfway)."""
    for attempt in (0, 1):
        try:
            try:
                if isinstance(store, Dated) and now - store.modified(ref) > limits.lease_s:
                    return True, b"{}"
            except NotFoundError:
                return False, None  # deleted meanwhile
            # by URL, not by reference: a pin rewritten meanwhile is read in its new version
            return False, store.read_bytes(ref.url)
        except NotFoundError:
            return False, None  # deleted meanwhile
        except CorruptDataError:
            if attempt:
                raise
        time.sleep(0.05)
    raise AssertionError("unreachable")


def pinned(store: FileStore, names: Iterable[str], *, gc: str | None = None,
           drop_stale: bool = False, now: StoreClock | float | None = None,
           limits: Limits = LIMITS,
           cache: dict[tuple[str, str], bytes] | None = None) -> set[str]:
    """Which of ``names`` a writer holds, for the gc whose running marker is ``gc`` (step
    g2): a live pin, or a released one that waits for that gc. A pin that cannot be read
    (damaged, or not JSON) keeps every name. Pins older than ``lease_s``, and released ones
    whose gcs have all ended, do not count; ``drop_stale`` deletes them. ``cache`` keeps the
    pins read, by URL and SHA-256 (a pin rewritten on release is read again): a gc passes
    one for all its batches, so each pin is read once."""
    names = list(names)
    refs = list(store.list(PINS))
    if not refs:
        return set()
    at = _store_now(store, now)
    running = set(running_gcs(store, at, limits))
    held: set[str] = set()
    for ref in refs:
        try:
            cached = cache.get((ref.url, ref.sha256)) if cache is not None else None
            # a cached pin was within its lease when read: counting it longer keeps more
            stale, note = (False, cached) if cached else _read_pin(store, ref, at, limits)
        except CorruptDataError as exc:
            log.warning("pin %s cannot be read (%s); it keeps every object", ref.url, exc)
            return set(names)
        if note is None:
            continue
        if cache is not None and not stale:
            cache[ref.url, ref.sha256] = note
        try:
            doc = json.loads(note)
            what, after = doc.get("what"), doc.get("after")
        except (ValueError, AttributeError):
            log.warning("pin %s is unreadable; it keeps every object", ref.url)
            return set(names)
        if after is not None and not stale:
            stale = not running.intersection(after)  # every gc it waited for has ended
            if not stale and gc not in after:
                continue  # released before this gc started: its record was scanned
        if stale:
            if drop_stale:
                log.info("removing the pin %s (its writer is gone or done)", ref.url)
                try:
                    store.delete(ref)
                except NotFoundError:
                    pass
            continue
        held.update([what] if isinstance(what, str) else what or ())
    return {name for name in names if name in held}


def drop_leftovers(store: FileStore, now: StoreClock | float | None = None,
                   limits: Limits = LIMITS) -> int:
    """Delete the condemnations and running markers killed gcs left (older than
    ``condemn_s`` and ``marker_s``); returns how many."""
    dropped = 0
    at: float | None = None
    for prefix, limit in ((CONDEMNED, limits.condemn_s), (RUNNING, limits.marker_s)):
        for ref in store.list(prefix):
            at = _store_now(store, now) if at is None else at
            try:
                if _age(store, ref, at) > limit:
                    store.delete(ref)
                    dropped += 1
            except NotFoundError:
                continue
    return dropped
