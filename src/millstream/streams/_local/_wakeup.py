"""Waking an idle consumer of the embedded log when something it waits for was committed.

Writers ring **doorbells** after their commit: one empty file per stream and per group in
``streams.db-wake/`` beside the database (``ring``, an ``os.utime``; a bell that does not
exist has no listener and is skipped). The producer rings the streams it appended to, a
transaction the streams its records went to, and a group's membership change (join, leave,
expiry, release) rings the group's bell. A consumer's ``Wakeup`` watches the bells of the
streams it reads and of its group with Linux inotify (``inotify_simple``); ``wait`` returns
as soon as any of them rang since the previous ``wait`` (at once if one did), or after the
timeout. A ring between the consumer's look for records and its ``wait`` is therefore never
lost: the bell is watched before the first look, the inotify queue keeps the event, and a
writer rings only after its commit is visible. Nothing rings for heartbeats, offset commits
or metadata, so an idle consumer sleeps through them.

Where inotify is missing (not Linux, ``inotify_simple`` not installed, the per-user limit
``fs.inotify.max_user_instances`` reached) or ``wakeup=poll`` is set on the ``local:`` URL
(e.g. a database written by a program that does not ring), ``wait`` sleeps the consumer's
own polling interval instead. A notified wait still returns after ``RECHECK_S`` at the
latest, so a writer that does not ring is seen within that.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

__all__ = ["RECHECK_S", "Wakeup", "WakeupMode", "ring"]

log = logging.getLogger(__name__)

WakeupMode = Literal["auto", "poll"]
#: the longest a notified wait lasts: a writer that does not ring is seen within this
RECHECK_S = 1.0

_WATCH = 0x4 | 0x400  # IN_ATTRIB (a ring is a utime) | IN_DELETE_SELF (a bell is re-made)
_REARM = 0x8000 | 0x4000  # IN_IGNORED (the watch is gone) | IN_Q_OVERFLOW (events dropped)


def _inotify_module() -> Any:
    """``inotify_simple`` on Linux; None elsewhere, or without it (consumers then poll)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import inotify_simple
    except ImportError:  # pragma: no cover - installed with millstream on Linux
        return None
    return inotify_simple


_inotify = _inotify_module()

_warned = False
_dirs: dict[Path, str] = {}  # database → its bells' directory (ring is on the write path)


def bell_dir(db: Path) -> Path:
    """The directory of the database's doorbells."""
    return db.with_name(db.name + "-wake")


def _stream_bell(directory: Path, stream_id: int) -> Path:
    return directory / f"s{stream_id}"


def _group_bell(directory: Path, group: str) -> Path:
    return directory / f"g{hashlib.sha1(group.encode()).hexdigest()[:16]}"


def ring(db: Path, stream_ids: Iterable[int] = (), group: str | None = None) -> None:
    """Ring the bells of ``stream_ids`` and of ``group``: call after the commit that made
    their change visible. A bell nobody watches yet costs one failed ``utime``."""
    directory = _dirs.get(db)
    if directory is None:
        directory = _dirs[db] = str(bell_dir(db))
    bells = [f"{directory}/s{s}" for s in stream_ids]
    if group is not None:
        bells.append(str(_group_bell(Path(directory), group)))
    for bell in bells:
        try:
            os.utime(bell)
        except FileNotFoundError:
            pass  # no consumer ever waited for it
        except OSError as exc:  # e.g. another user's bell: its consumers poll every RECHECK_S
            log.debug("could not ring %s: %s", bell, exc)


class Wakeup:
    """A consumer's wait for new records: notified where the OS can, else a sleep.

    ``watch`` the bells before looking for records; ``wait`` after looking found nothing;
    ``close`` when the consumer closes. Used by one thread at a time."""

    def __init__(self, db: Path, mode: WakeupMode = "auto") -> None:
        self._dir = bell_dir(db)
        self._bells: list[Path] = []
        self._wds: list[int] = []
        self._inotify = _open_inotify() if mode == "auto" else None

    @property
    def notified(self) -> bool:
        """True when ``wait`` wakes on a ring; False when it only sleeps (polling)."""
        return self._inotify is not None

    def watch(self, stream_ids: Iterable[int], group: str | None) -> None:
        """Watch these streams' bells and the group's (instead of what was watched)."""
        self._bells = [_stream_bell(self._dir, s) for s in stream_ids]
        if group is not None:
            self._bells.append(_group_bell(self._dir, group))
        self._arm()

    def _arm(self) -> None:
        if self._inotify is None:
            return
        try:
            self._dir.mkdir(exist_ok=True)
            for wd in self._wds:
                try:
                    self._inotify.rm_watch(wd)
                except OSError:
                    pass  # its bell was deleted: the watch went with it
            self._wds = []
            for bell in self._bells:
                # made if missing without writing it (a touch would wake its other watchers)
                os.close(os.open(bell, os.O_RDONLY | os.O_CREAT, 0o666))
                self._wds.append(self._inotify.add_watch(str(bell), _WATCH))
        except OSError as exc:
            _fall_back(f"cannot watch {self._dir} ({exc})")
            self.close()

    def wait(self, timeout: float, poll_s: float) -> bool:
        """Return True when a watched bell rang since the last ``wait`` (at once if one
        did), False after ``timeout`` (at most ``RECHECK_S``) without a ring; when not
        notified, sleep ``poll_s`` (at most ``timeout``) and return False."""
        inotify = self._inotify
        if inotify is None:
            time.sleep(max(min(poll_s, timeout), 0.0))
            return False
        try:
            events = inotify.read(timeout=math.ceil(max(min(timeout, RECHECK_S), 0.0) * 1000))
        except OSError as exc:
            _fall_back(f"reading inotify events failed ({exc})")
            self.close()
            return True
        if any(event.mask & _REARM for event in events):
            self._arm()  # a bell was deleted (or events were dropped): watch anew
        return bool(events)

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None


def _open_inotify() -> Any:
    if _inotify is None:
        return None
    try:
        return _inotify.INotify(inheritable=False, nonblocking=True)
    except (OSError, AttributeError) as exc:  # EMFILE: fs.inotify.max_user_instances reached
        _fall_back(f"inotify is unavailable ({exc}; the per-user limit is "
                   "fs.inotify.max_user_instances)")
        return None


def _fall_back(why: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("%s: idle consumers of the embedded log poll instead of being woken "
                    "(a record then waits up to a few milliseconds longer)", why)
