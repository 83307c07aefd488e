"""Named fault points: make a process die at an exact moment, for crash tests.

Set ``MILLSTREAM_FAULT`` to a point's name (optionally ``name:N`` to fire on the N-th visit)
and the process exits abruptly (``os._exit``, no cleanup, no flush) when it gets there. The
code marks its critical moments with ``fault_point("...")``; the call costs one global lookup
when no fault is set. Points in use:

- ``log.append.before_commit``   batches inserted, transaction not yet committed (not synced)
- ``log.append.after_commit``    committed and synced, acknowledgement not yet given
- ``log.commit_offsets.before_commit`` / ``log.commit_offsets.after_commit``
- ``log.retention.before_commit`` retention deleted batches, transaction not committed
- ``files.put.before_commit``     an object's bytes written and synced, not yet in place
- ``files.put.between_renames``  ``file://``: the data file in place, its record still in ``.tmp/``
- ``files.put.after_commit``      ``file://``: data and record in place, folders not yet synced
- ``tables.materialize.before_commit`` / ``tables.materialize.after_commit``  a table's rows and
  offsets in one transaction
- ``service.batch.after_send``    a batch's outputs handed to the producer, nothing committed
- ``service.commit.after_flush`` / ``service.commit.after_commit``  around an at-least-once commit
- ``service.transaction.before_commit`` / ``service.transaction.after_commit``  exactly-once
- ``service.checkpoint.before_write`` / ``service.checkpoint.after_write``  state checkpoints
"""

from __future__ import annotations

import os

__all__ = ["FAULT_EXIT_CODE", "fault_point"]

FAULT_EXIT_CODE = 86


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, int(nth) if nth else 1


_ARMED = _parse(os.environ.get("MILLSTREAM_FAULT"))
_visits = 0


def fault_point(name: str) -> None:
    """Exit the process at once if the fault named ``name`` is armed for this visit."""
    global _visits
    if _ARMED is None or _ARMED[0] != name:
        return
    _visits += 1
    if _visits >= _ARMED[1]:
        os.write(2, f"millstream: fault point {name!r} reached, exiting\n".encode())
        os._exit(FAULT_EXIT_CODE)
