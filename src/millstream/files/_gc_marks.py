"""What ``files gc`` writes and reads in the pin area (steps g0–g4 of ``_pins``'s protocol):
its running marker and heartbeat, condemnations, which objects writers hold, and the
leftovers killed gcs left."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable

from millstream.errors import CorruptDataError, NotFoundError, UnavailableError
from millstream.files._base import FileRef, FileStore
from millstream.files._pin_area import (
    CONDEMNED,
    LIMITS,
    PINS,
    RUNNING,
    Dated,
    Limits,
    StoreClock,
    age,
    key_of,
    make_note,
    store_now,
)

__all__ = [
    "condemn",
    "condemned",
    "drop_leftovers",
    "gc_running",
    "pinned",
    "running_gcs",
    "running_marker",
    "uncondemn",
]

log = logging.getLogger(__name__)


def running_gcs(store: FileStore, now: StoreClock | float | None = None,
                limits: Limits = LIMITS) -> list[str]:
    """The running markers of the gcs running on ``store`` (not leftovers of killed ones);
    ``now`` is the store's clock (read off a probe object when not given)."""
    found: list[str] = []
    refs = list(store.list(RUNNING))
    if not refs:
        return found
    at = store_now(store, now)
    for ref in refs:
        try:
            if age(store, ref, at) <= limits.marker_s:
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
        self._store.put(self.name, make_note("gc"), content_type="application/json")
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
    at = store_now(store, now)
    for ref in refs:
        try:
            if age(store, ref, at) <= limits.condemn_s:
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
        store.put(f"{CONDEMNED}{key_of(name)}/{gc}", make_note(name),
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
    at = store_now(store, now)
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
            at = store_now(store, now) if at is None else at
            try:
                if age(store, ref, at) > limit:
                    store.delete(ref)
                    dropped += 1
            except NotFoundError:
                continue
    return dropped
