"""Pins: how running writers and ``files gc`` agree on objects no record refers to *yet*.

A platform writer (a service's ``ctx.files``, the claim-check, a checkpoint's state) stores or
reuses an object, then sends the record that refers to it; until that record is durable, no
scan can find the reference. The writer therefore **pins** the object first, and gc never
deletes a pinned object. Everything lives in the file store itself, under ``millstream.gc/``
(ordinary objects, so every backend has it, and every process that shares the store sees it):

    millstream.gc/pins/<token>-<n>      a writer holds the objects it names
    millstream.gc/condemned/<key>/<id>  the gc <id> is about to delete that object
    millstream.gc/running/<id>          a gc is running

The protocol, per object ``X`` (``<key>`` is a hash of X's name; a writer's pin names every
object it holds until its next release, rewritten as it grows):

* writer — ``hold(X)``: (w1) write a pin; (w2) wait while X is condemned; then store X, or
  reuse it if it exists; send the record referring to it. ``release()`` once the record is
  durable: (w3) list the running gcs; if there are none, delete the pins; else rewrite each
  pin to name those gcs ("released, keep me for them") and delete it later.
* gc — (g0) write its running marker, list the objects, scan every reference; then for X:
  (g1) condemn X; (g2) read X's pins — a live pin counts, a released one only if it names
  this gc; (g3) read the records appended to every stream since the scan; delete X only if
  none of them keeps it; (g4) lift the condemnation.

Why a reference written by a writer is never left dangling: both sides write before they read
(w1 before w2, g1 before g2), so at least one sees the other — if g2 finds no pin that counts,
the pin was written after g2, or released before it without naming this gc. Written after:
then w2 came after g1, the writer sees the condemnation, waits for g4, and stores X again if
it was deleted. Released without naming this gc: its w3 saw no marker of this gc, so the
record was durable before g0 and the scan found it. A record appended between the scan and
g3 is also read at g3. This needs only what every backend gives: a completed write is seen by
every later read and list (``file://`` by POSIX, S3 by its strong read-after-write
consistency), and no atomic compare-and-delete. A released pin whose gcs have all ended is
deleted by the next gc.

Leftovers of killed processes expire: a pin after ``LEASE_S`` (a writer that holds an object
for longer is not protected); a running marker after ``MARKER_S`` — a running gc rewrites its
marker at least every ``MARKER_S / 10`` and deletes nothing once its last rewrite is over
``MARKER_S / 2`` old (it stops, asking to be run again); a condemnation after ``CONDEMN_S`` —
gc deletes an object only within ``CONDEMN_S / 2`` of condemning it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from millstream.errors import CorruptDataError, NotFoundError, UnavailableError
from millstream.files.base import FileRef, FileStore

__all__ = [
    "AREA",
    "CONDEMN_S",
    "LEASE_S",
    "MARKER_S",
    "Pins",
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
#: A pin older than this is a leftover of a killed writer.
LEASE_S = 24 * 3600.0
#: A running marker not rewritten for this long is a leftover of a killed gc.
MARKER_S = 600.0
#: A condemnation older than this is a leftover; gc deletes only in the first half of it.
CONDEMN_S = 120.0


@runtime_checkable
class Dated(Protocol):
    """A store that can tell when an object was written."""

    def modified(self, ref: FileRef | str) -> float: ...


def key_of(name: str) -> str:
    """The fixed-length key of object ``name`` in the pin area."""
    return hashlib.sha256(name.encode()).hexdigest()[:40]


def _age(store: FileStore, ref: FileRef | str, now: float) -> float:
    """Seconds since ``ref`` was written (0 when the store cannot tell: never stale).
    ``NotFoundError`` if it is gone — or going: on ``file://`` a delete removes the object's
    record before its file, and a look in between finds a file without a record."""
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


class Pins:
    """The pins one writer holds: objects it stored or reuses whose referring record is not
    durable yet. Not thread-safe: one per producer or service runner.

    The objects held between two releases share one pin object, rewritten (atomically, as
    every put) with each name added, so a release deletes one object whatever it held."""

    def __init__(self, store: FileStore, *, wait_s: float = CONDEMN_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._token = uuid.uuid4().hex
        self._made = 0
        self._pin = ""  # the pin object of the objects held now
        self._held: list[str] = []  # their names, in the order held
        self._deferred: list[str] = []  # pins released while a gc ran: dropped after it
        self._wait_s = wait_s
        self._clock = clock

    @property
    def holding(self) -> bool:
        return bool(self._held or self._deferred)

    def hold(self, name: str) -> None:
        """Pin ``name`` before storing or reusing it; waits while a gc is deleting it (then
        the caller finds it gone and stores it again). ``UnavailableError`` if a gc keeps it
        condemned for longer than the wait."""
        if name in self._held:
            return
        if not self._held:  # a fresh pin after each release: a released one may be removed
            self._made += 1
            self._pin = f"{PINS}{self._token}-{self._made}"
        self._held.append(name)
        self.store.put(self._pin, _note(self._held), content_type="application/json")
        self._wait_not_condemned(name)

    def _wait_not_condemned(self, name: str) -> None:
        marks = f"{CONDEMNED}{key_of(name)}/"
        deadline = time.monotonic() + self._wait_s
        while condemned(self.store, marks, self._clock()):
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"object {name!r} has been condemned by `millstream files gc` for over "
                    f"{self._wait_s:.0f} s; retry once that gc has finished")
            time.sleep(0.02)

    def release(self) -> None:
        """What refers to every held object is durable: drop the pins — unless a gc is
        running (it may have scanned before those references were written). Then the pin is
        rewritten to name the gcs running now, which honour it; it is deleted by a later
        ``release`` that finds no gc running, or by any gc once those have ended."""
        if not self.holding:
            return
        running = running_gcs(self.store, self._clock())
        if running:
            if self._held:
                self.store.put(self._pin, _note(self._held, running),
                               content_type="application/json")
                self._deferred.append(self._pin)
                self._held = []
            return
        for pin in (*([self._pin] if self._held else []), *self._deferred):
            try:
                self.store.delete(pin)
            except NotFoundError:
                pass  # removed by a gc
        self._held = []
        self._deferred.clear()


def running_gcs(store: FileStore, now: float | None = None) -> list[str]:
    """The running markers of the gcs running on ``store`` (not leftovers of killed ones)."""
    now = time.time() if now is None else now
    found = []
    for ref in store.list(RUNNING):
        try:
            if _age(store, ref, now) <= MARKER_S:
                found.append(ref.url.rsplit("/", 1)[-1])
        except NotFoundError:
            continue  # that gc has just ended
    return found


def gc_running(store: FileStore, now: float | None = None) -> bool:
    """Whether a gc (not a leftover of a killed one) is running on ``store``."""
    return bool(running_gcs(store, now))


class running_marker:
    """``with running_marker(store) as marker:`` — announce a running gc (step g0) for the
    block; ``marker.refresh()`` often, ``marker.check()`` before deleting."""

    def __init__(self, store: FileStore, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self.id = uuid.uuid4().hex
        self.name = f"{RUNNING}{self.id}"
        self._monotonic = monotonic
        self._written = 0.0  # monotonic time of the last rewrite

    def __enter__(self) -> running_marker:
        self._write()
        return self

    def _write(self) -> None:
        started = self._monotonic()
        self._store.put(self.name, _note("gc"), content_type="application/json")
        self._written = started

    def refresh(self) -> None:
        """Rewrite the marker if it was last written over ``MARKER_S / 10`` ago."""
        if self._monotonic() - self._written > MARKER_S / 10:
            self._write()

    def check(self) -> None:
        """``UnavailableError`` if the marker may look expired to writers (this gc was held
        up for too long): nothing may be deleted then."""
        late = self._monotonic() - self._written
        if late > MARKER_S / 2:
            raise UnavailableError(
                f"files gc was held up for {late:.0f} s, long enough for writers to stop "
                "waiting for it; it deleted nothing more — run it again")

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._store.delete(self.name)
        except NotFoundError:
            pass


def condemned(store: FileStore, marks: str, now: float) -> bool:
    """Whether any gc (not a leftover of a killed one) condemns the object of ``marks``."""
    for ref in store.list(marks):
        try:
            if _age(store, ref, now) <= CONDEMN_S:
                return True
        except NotFoundError:
            continue  # lifted meanwhile
    return False


def condemn(store: FileStore, names: Iterable[str], gc: str) -> float:
    """Condemn ``names`` for the gc ``gc`` (step g1; each gc its own mark, so one that ends
    does not lift another's); returns the monotonic time after the last write, from which
    the deletes have ``CONDEMN_S / 2``."""
    for name in names:
        store.put(f"{CONDEMNED}{key_of(name)}/{gc}", _note(name),
                  content_type="application/json")
    return time.monotonic()


def uncondemn(store: FileStore, names: Iterable[str], gc: str) -> None:
    """Lift the condemnations of ``names`` by the gc ``gc`` (step g4)."""
    for name in names:
        try:
            store.delete(f"{CONDEMNED}{key_of(name)}/{gc}")
        except NotFoundError:
            pass


def pinned(store: FileStore, names: Iterable[str], *, gc: str | None = None,
           drop_stale: bool = False, now: float | None = None) -> set[str]:
    """Which of ``names`` a writer holds, for the gc whose running marker is ``gc`` (step
    g2): a live pin, or a released one that waits for that gc. Pins older than ``LEASE_S``,
    and released ones whose gcs have all ended, do not count; ``drop_stale`` deletes them."""
    now = time.time() if now is None else now
    running = set(running_gcs(store, now))
    held: set[str] = set()
    for ref in store.list(PINS):
        try:
            stale = _age(store, ref, now) > LEASE_S
            # by URL, not by reference: a pin rewritten meanwhile is read in its new version
            note = b"{}" if stale else store.read_bytes(ref.url)
        except (NotFoundError, CorruptDataError):
            continue  # deleted meanwhile
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


def drop_leftovers(store: FileStore, now: float | None = None) -> int:
    """Delete the condemnations and running markers killed gcs left (older than
    ``CONDEMN_S`` and ``MARKER_S``); returns how many."""
    now = time.time() if now is None else now
    dropped = 0
    for prefix, limit in ((CONDEMNED, CONDEMN_S), (RUNNING, MARKER_S)):
        for ref in store.list(prefix):
            try:
                if _age(store, ref, now) > limit:
                    store.delete(ref)
                    dropped += 1
            except NotFoundError:
                continue
    return dropped
