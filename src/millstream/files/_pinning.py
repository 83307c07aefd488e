"""``millstream.files.pinned``: keep objects from ``millstream files gc`` while the record that
will refer to them is on its way (the public face of ``_pins``)."""

from __future__ import annotations

from millstream.files._base import FileStore
from millstream.files._pins import Pins

__all__ = ["pinned"]


class pinned:
    """``with pinned(store, name) as pin:`` — pin ``name`` *before* storing or reusing it,
    store it, send the record that refers to it and wait for the acknowledgement, then leave
    the block: ``millstream files gc`` (even with ``--older-than 0s``) deletes no pinned
    object. ``pin.hold(name)`` pins a name known only later (again before storing it). The
    pins go when the block ends, or on ``release()`` — kept, marked for it, while a gc runs.

    Blocking calls (one small PUT and one LIST per name; a LIST and a DELETE on release): an
    async caller runs them with ``asyncio.to_thread``."""

    def __init__(self, store: FileStore, *names: str) -> None:
        self._pins = Pins(store)
        self._names = names

    def hold(self, *names: str) -> None:
        """Pin ``names`` (waits while a gc is deleting one: store it afresh after)."""
        if names:
            self._pins.hold(names, sent=True)

    def release(self) -> None:
        """The records referring to the pinned objects are acknowledged (or will never be
        sent): drop the pins."""
        self._pins.release()

    def __enter__(self) -> pinned:
        self.hold(*self._names)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
