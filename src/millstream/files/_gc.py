"""Garbage collection: delete the stored objects nothing on the platform refers to any more.

``run_gc(store, streams, tables)`` is what ``millstream files gc`` runs. It keeps every
object that

* a retained record of any stream refers to (``records``; a claim-check object's contents
  included), or a state checkpoint (``checkpoints``; its state object included);
* a document of any table refers to (``tables``);
* is a table snapshot, or is referred to by a document in one (``snapshots``);
* a running writer has pinned: stored or reused, its record not yet durable (``pins``);
* was written less than ``older_than_s`` ago (``young``): the grace for writers that do not
  pin — code that calls ``FileStore.put`` itself and sends its record afterwards;

and deletes the rest (see ``_references`` for what counts as a reference).

Races with writers are closed by the protocol in ``_pins``: gc announces itself before it
lists and scans; then, batch by batch, it condemns the objects it would delete, reads their
pins, reads the records appended to every stream since its scan, and deletes only what is
still unreferenced and unpinned. A writer pins an object before storing or reusing it (the
claim-check reuses an object with the same content, a checkpoint one with the same state),
waits while it is condemned, and keeps its pin until its record is durable — longer, if a gc
is running. So a writer that reuses an old, unreferenced object while gc runs either has its
pin seen before the delete, or sees the condemnation and stores the object again after it:
the record never dangles, on ``file://`` or on ``s3://``, whatever the age of the object.
The proof is in ``_pins``; the test holds gc at the fault point ``files.gc.before_delete``
while a writer reuses the object.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from millstream.errors import CorruptDataError, InvalidRequestError, NotFoundError
from millstream.faults import fault_point
from millstream.files._base import FileRef, FileStore
from millstream.files._gc_marks import (
    condemn,
    drop_leftovers,
    pinned,
    running_marker,
)
from millstream.files._gc_marks import uncondemn as _uncondemn
from millstream.files._pin_area import AREA, LIMITS, Dated, Limits
from millstream.files._references import (
    REASONS,
    Progress,
    References,
    find_references,
    is_snapshot,
)
from millstream.streams._base import Streams
from millstream.streams._reading import read_to_end
from millstream.tables._base import Tables

__all__ = [
    "REASONS",
    "GcReport",
    "collect_garbage",
    "find_references",
    "references_in_streams",
    "run_gc",
]

log = logging.getLogger(__name__)
#: Objects condemned, checked and deleted together.
BATCH = 100


@dataclass
class GcReport:
    """What a collection did: the objects deleted (or, in a dry run, that would be), how many
    it kept for each reason (each object under its first reason, in ``REASONS`` order), and
    the objects it could not read to scan (kept)."""

    deleted: list[FileRef] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    unreadable: list[str] = field(default_factory=list)
    dry_run: bool = False


def _check_age(store: FileStore, older_than_s: float) -> None:
    if older_than_s < 0:
        raise InvalidRequestError(f"older_than_s={older_than_s!r} must be ≥ 0")
    if older_than_s > 0 and not isinstance(store, Dated):
        raise InvalidRequestError(
            f"{type(store).__name__} cannot tell when objects were written; "
            "pass older_than_s=0 only if no writer is running")


def _name(store: FileStore, ref: FileRef) -> str:
    return ref.url.removeprefix(store.url + "/")


def _ours(store: FileStore, prefix: str, tick: Callable[[], None]) -> list[FileRef]:
    """The objects under ``prefix``, without gc's own area (``tick`` after each); refuses a
    prefix holding another store (its own ``millstream.gc/`` below the root): its pins are not
    this store's, so its writers' objects would not be protected."""
    listed = []
    for ref in store.list(prefix):
        tick()
        name = _name(store, ref)
        if name.startswith(AREA):
            continue
        if "/" + AREA in name:
            nested = f"{store.url}/{name[:name.index('/' + AREA)]}"
            raise InvalidRequestError(
                f"{store.url} holds another store, {nested} (it has its own {AREA}): its "
                f"writers pin their objects there, not here; collect it on its own "
                f"(--files {nested}), and this store with a --prefix that excludes it")
        listed.append(ref)
    return listed


def _nothing() -> None:
    pass


def run_gc(store: FileStore, streams: Streams, tables: Tables | None = None, *,
            older_than_s: float = 3600.0, dry_run: bool = False, prefix: str = "",
            progress: Progress | None = None, platform: FileStore | None = None,
            snapshots_in: Sequence[FileStore] = (),
            clock: Callable[[], float] | None = None, limits: Limits = LIMITS) -> GcReport:
    """Delete (unless ``dry_run``) every object under ``prefix`` that nothing on the platform
    refers to; see the module docstring. ``progress(what, name, count)`` is called after
    each stream, table and snapshot scanned. ``platform`` is the platform's store when
    ``store`` is another: the claim-check and checkpoint-state objects kept there are read
    for references to ``store``'s objects. The table snapshots of ``snapshots_in`` (stores
    ``tables snapshot --files`` wrote to) are scanned too, and keep what they refer to. Ages
    are measured on the store's clock unless ``clock`` is given; ``limits`` must be the
    writers' (tests shorten them)."""
    _check_age(store, older_than_s)
    announce = None if dry_run else running_marker(store, limits)
    with announce or contextlib.nullcontext():
        listed = _ours(store, prefix, announce.refresh if announce else _nothing)
        refs = References(store, progress, announce.refresh if announce else None, platform)
        refs.scan_streams(streams)
        if tables is not None:
            refs.scan_tables(tables)
        refs.scan_snapshots(r for r in store.list("tables/") if is_snapshot(_name(store, r)))
        for other in snapshots_in:
            if other.url == store.url:
                continue
            refs.add_reader(other)
            refs.scan_snapshots(r for r in other.list("tables/") if is_snapshot(_name(other, r)))
        report = _sweep(store, listed, refs, streams, older_than_s=older_than_s,
                        dry_run=dry_run, clock=clock, marker=announce, limits=limits)
    report.unreadable = refs.unreadable
    return report


def collect_garbage(store: FileStore, referenced: set[str], *, dry_run: bool = False,
                    older_than_s: float = 3600.0, prefix: str = "",
                    clock: Callable[[], float] | None = None,
                    limits: Limits = LIMITS) -> list[FileRef]:
    """Delete (unless ``dry_run``) every object under ``prefix`` whose URL is not in
    ``referenced``, that no running writer has pinned and that is at least ``older_than_s``
    seconds old; return them, by name. Table snapshots, and what their documents refer to,
    are kept too; nothing else is scanned (no stream, table or checkpoint): use ``run_gc``,
    which finds every reference itself, unless ``referenced`` already holds them all."""
    _check_age(store, older_than_s)
    refs = References(store)
    refs.found["records"] |= referenced
    announce = None if dry_run else running_marker(store, limits)
    with announce or contextlib.nullcontext():
        listed = _ours(store, prefix, announce.refresh if announce else _nothing)
        refs.scan_snapshots(r for r in store.list("tables/") if is_snapshot(_name(store, r)))
        return _sweep(store, listed, refs, None, older_than_s=older_than_s,
                      dry_run=dry_run, clock=clock, marker=announce, limits=limits).deleted


def _batches(items: list[FileRef], size: int) -> Iterator[list[FileRef]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _sweep(store: FileStore, listed: Iterable[FileRef], refs: References,
           streams: Streams | None, *, older_than_s: float, dry_run: bool,
           clock: Callable[[], float] | None, marker: running_marker | None,
           limits: Limits) -> GcReport:
    report = GcReport(dry_run=dry_run)
    gc = marker.id if marker is not None else None
    tick = marker.refresh if marker is not None else _nothing
    # the store's clock (gc's marker's time), so a host whose clock is off judges ages right
    now = clock or (marker.clock.now if marker is not None and marker.clock.known
                   else time.time)
    kept = report.kept
    cutoff = now() - older_than_s
    candidates: list[FileRef] = []
    for ref in listed:
        tick()
        reason = refs.reason(ref.url)
        try:
            if reason is None and older_than_s > 0 and store.modified(ref) > cutoff:  # type: ignore[attr-defined]
                reason = "young"
        except (NotFoundError, CorruptDataError):  # deleted, replaced or being deleted meanwhile
            continue
        if reason is not None:
            kept[reason] += 1
        else:
            candidates.append(ref)
    fault_point("files.gc.before_delete")
    seen_pins: dict[tuple[str, str], bytes] = {}  # each pin read once (they are small)
    tick()  # raises if this gc was held up for so long that writers may stop seeing it
    if not dry_run:  # what killed writers and gcs left, and pins no gc waits for any more
        pinned(store, (), gc=gc, drop_stale=True, now=now(), limits=limits, cache=seen_pins)
        drop_leftovers(store, now(), limits)
    for batch in _batches(candidates, BATCH):
        tick()
        names = {ref.url: _name(store, ref) for ref in batch}
        pending = set(names.values())
        started = time.monotonic() if gc is None else condemn(store, pending, gc)
        try:
            held = pinned(store, pending, gc=gc, drop_stale=not dry_run, now=now(),
                          limits=limits, cache=seen_pins)
            if streams is not None:
                refs.scan_tail(streams)
            fault_point("files.gc.condemned")
            for ref in batch:
                name = names[ref.url]
                reason = refs.reason(ref.url) or ("pins" if name in held else None)
                try:
                    if reason is not None:
                        kept[reason] += 1
                        continue
                    if marker is not None:
                        marker.check()  # writers still see this gc running
                        # a delete started now ends while writers still wait for it
                        if time.monotonic() - started > limits.condemn_s / 4:
                            log.warning("not deleting %s: condemned %.0f s ago, too close to "
                                        "when writers stop waiting; the next gc will",
                                        ref.url, time.monotonic() - started)
                            continue
                        try:
                            store.delete(ref)  # by reference: refused if replaced since
                        except NotFoundError:
                            continue
                    log.info("%s %s (%d bytes)", "would delete" if dry_run else "deleted",
                             ref.url, ref.size)
                    report.deleted.append(ref)
                finally:
                    if gc is not None:
                        _uncondemn(store, (name,), gc)
                        pending.discard(name)
        finally:
            if gc is not None:
                _uncondemn(store, pending, gc)
    return report


def references_in_streams(streams: Streams,
                          progress: Callable[[str, int], None] | None = None) -> set[str]:
    """URLs of every FileRef in a JSON value of any record still retained in any stream
    (in any store). ``progress(stream, records)`` is called after each stream. ``run_gc``
    looks further (tables, snapshots, checkpoints, claim-check objects, pins)."""
    found: set[str] = set()
    for name in streams.admin().list_streams():
        seen = 0
        for record in read_to_end(streams, name):
            seen += 1
            value = record.value
            if value and value.lstrip()[:1] in (b"{", b"["):
                try:
                    found |= find_references(json.loads(value))
                except ValueError:
                    pass  # not JSON after all: it can hold no reference
        if progress is not None:
            progress(name, seen)
    return found
