"""Window kinds: which windows a record at event time ``t`` (integer milliseconds) falls in.

Durations are given in seconds (``int``/``float``) or as ``timedelta`` and kept in
milliseconds. A window is ``[start, end)`` in milliseconds; its rows in the window table are
keyed ``<record key>/<start, 15 digits>``.

* ``Tumbling(size)`` — back to back: ``[floor(t/size)·size, +size)``.
* ``Hopping(size, every)`` — every ``every`` a window of ``size``: each one containing t.
* ``Sliding(size)`` — Kafka Streams' sliding windows, one per distinct set of records
  (see ``Sliding``).
* ``Session(gap)`` — per key, records less than ``gap`` apart share a window.
* ``Counted(n)`` — per key, every ``n`` records make a window; no time, never late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from millstream.errors import InvalidRequestError

__all__ = ["Counted", "Hopping", "Session", "Sliding", "Tumbling", "Window", "duration_ms"]

#: what a duration may be given as
Seconds = int | float | timedelta


def duration_ms(value: object, what: str, *, zero: bool = False) -> int:
    """``value`` (seconds, or a ``timedelta``) in whole milliseconds; refused unless it is
    positive (or zero, when ``zero``)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidRequestError(
            f"{what}={value!r} must be a number of seconds or a timedelta (e.g. 60 or "
            "timedelta(minutes=1))")
    ms = round(seconds * 1000)
    if seconds != seconds or ms < 0 or (ms == 0 and not zero):
        raise InvalidRequestError(
            f"{what}={value!r} must be {'≥ 0' if zero else '> 0'} seconds, in whole "
            "milliseconds or more")
    return ms


@dataclass(frozen=True, slots=True)
class Tumbling:
    """Fixed-size windows back to back: each record is in exactly one."""

    size: Seconds
    size_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_ms", duration_ms(self.size, "Tumbling size"))

    def spans(self, t: int) -> list[tuple[int, int]]:
        """The windows ``[start, end)`` containing ``t`` (ms)."""
        size = self.size_ms
        start = t - t % size
        return [(start, start + size)]


@dataclass(frozen=True, slots=True)
class Hopping:
    """Windows of ``size`` starting every ``every`` (``every`` ≤ ``size``): a record is in
    ``size / every`` of them (rounded up)."""

    size: Seconds
    every: Seconds
    size_ms: int = field(init=False, repr=False, compare=False)
    every_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        size = duration_ms(self.size, "Hopping size")
        every = duration_ms(self.every, "Hopping every")
        if every > size:
            raise InvalidRequestError(
                f"Hopping(size={self.size!r}, every={self.every!r}): every must be ≤ size "
                "(windows further apart than their size would leave records in none)")
        object.__setattr__(self, "size_ms", size)
        object.__setattr__(self, "every_ms", every)

    def spans(self, t: int) -> list[tuple[int, int]]:
        """The windows ``[start, end)`` containing ``t`` (ms), oldest first."""
        size, every = self.size_ms, self.every_ms
        last = t - t % every
        first = (t - size) // every * every + every  # the first start after t - size
        return [(s, s + size) for s in range(first, last + 1, every)]


@dataclass(frozen=True, slots=True)
class Sliding:
    """Kafka Streams' sliding windows of ``size``: a window ``[t − size, t]`` (both ends
    included) ends at each record's time, and one starts just after it when a record falls
    in it; a record counts in every such window that contains it. Rows show them as
    ``[start, start + size + 1)`` in milliseconds."""

    size: Seconds
    size_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_ms", duration_ms(self.size, "Sliding size"))


@dataclass(frozen=True, slots=True)
class Session:
    """Per key, records less than ``gap`` apart share a window ``[first, last + 1)``;
    windows a record bridges merge (with the aggregate's ``merge``)."""

    gap: Seconds
    gap_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gap_ms", duration_ms(self.gap, "Session gap"))


@dataclass(frozen=True, slots=True)
class Counted:
    """Per key, every ``n`` records make a window (its start and end count records, not
    time); it closes at its ``n``-th record, so no record is ever late."""

    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise InvalidRequestError(f"Counted(n={self.n!r}): n must be an integer ≥ 1")


#: the window kinds a windowed service accepts
Window = Tumbling | Hopping | Sliding | Session | Counted
