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

The writer's side is here (``Pins``); gc's side is ``_gc_marks``, and what both share (the
area's layout, ``Limits``, the store's clock) ``_pin_area``.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterable

from millstream.errors import NotFoundError, UnavailableError
from millstream.files._base import FileStore
from millstream.files._gc_marks import condemned, running_gcs
from millstream.files._pin_area import (
    CONDEMNED,
    LIMITS,
    PINS,
    Limits,
    StoreClock,
    key_of,
    make_note,
)

__all__ = ["Pins"]


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
                self.store.put(ticket[-1].name, make_note(fresh), content_type="application/json")
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
                self.store.put(pin.name, make_note(pin.names, running),
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
