"""Named fault points: make a process die, or wait, at an exact moment, for crash and race tests.

Set ``MILLSTREAM_FAULT`` to a point's name (optionally ``name:N`` to fire on the N-th visit)
and the process exits abruptly (``os._exit``, no cleanup, no flush) when it gets there.

Set ``MILLSTREAM_FAULT_PAUSE`` the same way, and ``MILLSTREAM_FAULT_PAUSE_FILE`` to a path, and
the process stops at the point instead: it creates ``PATH.reached`` (holding the point's name),
then waits until ``PATH`` exists, and carries on. A test holds a process there while it acts
(a writer races a collector), then releases it by creating ``PATH``.

The code marks its critical moments with ``fault_point("...")``; the call costs one global
lookup when nothing is armed. Points in use:

- ``log.append.after_segment_write`` a large batch's payload appended to its segment file and
  synced, its row not yet inserted (``streams._local._segments``)
- ``log.append.before_directory_sync`` a segment file no committed row refers to yet got its
  first payload, synced, and its directory is not yet synced (``streams._local._segments``)
- ``log.append.before_commit``   batches inserted, transaction not yet committed (not synced)
- ``log.append.after_commit``    committed and synced, acknowledgement not yet given
- ``log.commit_offsets.before_commit`` / ``log.commit_offsets.after_commit``
- ``log.retention.before_commit`` retention deleted batches, transaction not committed
- ``log.read.before_segment``    a reader has a batch row that points into a segment file (its
  snapshot open) and has not opened the file yet
- ``log.segments.before_delete``  segment files no row refers to were found (write lock held),
  none deleted yet
- ``log.group.after_release``     an embedded group member handed partitions to their next
  holders, and has not yet looked at the group again
- ``files.put.before_commit``     an object's bytes written and synced, not yet in place
- ``files.put.between_renames``  ``file://``: the data file in place, its record still in ``.tmp/``
- ``files.put.after_commit``      ``file://``: data and record in place, folders not yet synced
- ``files.read.after_record``   a read (``open``, ``local_path``) has the object's record and
  has not opened its file yet
- ``files.gc.before_delete``      ``files gc`` has scanned every reference, deleted nothing yet
- ``files.gc.condemned``          ``files gc`` condemned a batch and checked its pins and the
  streams' new records; the batch's deletes come next
- ``tables.materialize.before_commit`` / ``tables.materialize.after_commit``  a table's rows and
  offsets in one transaction
- ``tables.feed.before_commit`` / ``tables.feed.after_commit``  a table output's batch: its
  rows and offsets in one transaction
- ``service.tables.before_apply``  a service's commit is done (its table rows are durable in
  the table's stream, its inputs committed) and the table batch has not begun
- ``service.batch.after_send``    a batch's outputs handed to the producer, nothing committed
- ``service.commit.after_flush`` / ``service.commit.after_commit``  around an at-least-once commit
- ``service.transaction.before_commit`` / ``service.transaction.after_commit``  exactly-once
- ``service.checkpoint.before_write`` / ``service.checkpoint.after_write``  state checkpoints
- ``windows.flush.before_emit`` / ``windows.flush.after_emit``  a window operator's flush
  (before a shard's checkpoint or transaction): no table row of its changed windows sent yet
  / all of them sent, the checkpoint or commit not yet done
- ``service.concurrent.full``     an async service's record began in its last free slot and
  reached its first ``await``: ``concurrency`` records are in their handlers (each time)
- ``videosite.upload.before_send``  the video site stored (and probed) an upload's original,
  pinned, and has not sent its record yet
- ``videosite.stage.before_store``  a video stage has read its original and made its outputs;
  the original is checked again next, then the outputs stored

A public module, for apps' own crash tests: an app marks its moments with ``fault_point`` too
(the video site's points above), and a test reads a killed process's exit code as
``FAULT_EXIT_CODE``.
"""

from __future__ import annotations

import os
import time

__all__ = ["FAULT_EXIT_CODE", "fault_point"]

FAULT_EXIT_CODE = 86


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, int(nth) if nth else 1


_ARMED = _parse(os.environ.get("MILLSTREAM_FAULT"))
_PAUSE = _parse(os.environ.get("MILLSTREAM_FAULT_PAUSE"))
_PAUSE_FILE = os.environ.get("MILLSTREAM_FAULT_PAUSE_FILE")
#: Anything armed at all: the one lookup ``fault_point`` makes when nothing is.
_ACTIVE = _ARMED is not None or _PAUSE is not None
_visits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Exit the process at once (or wait to be released) if a fault is armed for ``name``
    on this visit."""
    if _ACTIVE:
        _visit(name)


def _visit(name: str) -> None:
    if _ARMED is not None and _ARMED[0] == name:
        _visits["exit"] = _visits.get("exit", 0) + 1
        if _visits["exit"] >= _ARMED[1]:
            os.write(2, f"millstream: fault point {name!r} reached, exiting\n".encode())
            os._exit(FAULT_EXIT_CODE)
    if _PAUSE is not None and _PAUSE[0] == name:
        _visits["pause"] = _visits.get("pause", 0) + 1
        if _visits["pause"] == _PAUSE[1]:
            _wait(name)


def _wait(name: str) -> None:
    if not _PAUSE_FILE:
        raise RuntimeError(f"MILLSTREAM_FAULT_PAUSE={name} needs MILLSTREAM_FAULT_PAUSE_FILE "
                           "(the path whose creation releases the process)")
    with open(_PAUSE_FILE + ".reached", "w") as f:
        f.write(name)
    os.write(2, f"millstream: fault point {name!r} reached, waiting for {_PAUSE_FILE}\n"
             .encode())
    while not os.path.exists(_PAUSE_FILE):
        time.sleep(0.01)
