"""Co-partitioning: a join's inputs must put each key in the same partition number.

A join meets the records of one key in one shard — one partition number of its inputs — so
its inputs must have the same partition count and be keyed by the join key with the default
(murmur2) partitioner. Three checks, each refusing with what to do (``app.rekey`` re-sends a
stream keyed by a field into an intermediate stream):

* ``check_declared`` — the declared partition counts, when the join is declared;
* ``check_backend`` — the partition counts the backend really has, when the service starts
  (a stream made earlier keeps its count, whatever the app declares);
* ``KeyCheck`` — per record: its key must be the one that partitions to where it was read
  (a producer that keyed by something else, or chose partitions itself, fails here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from millstream.errors import InvalidRequestError
from millstream.records import Record
from millstream.streams._base import Streams
from millstream.streams._partitioner import partition_for_key

__all__ = ["KeyCheck", "check_backend", "check_declared", "opener", "rekey_hint"]

#: keys remembered with their partition before the memory starts again
_KEYS_IN_MEMORY = 100_000


def rekey_hint(stream: str, partitions: int | None = None) -> str:
    """What to write to re-key ``stream``."""
    into = (f"app.stream('{stream}-by-key', ..., partitions={partitions})"
            if partitions is not None else f"'{stream}-by-key'")
    return (f"re-key it through an intermediate stream: "
            f"app.rekey('{stream}-rekey', {stream!r}, by=lambda value: ..., into={into})")


def check_declared(service: str, counts: Mapping[str, int]) -> None:
    """Refuse inputs declared with different partition counts."""
    if len(set(counts.values())) <= 1:
        return
    (first, n), *others = counts.items()
    other, m = next((s, c) for s, c in others if c != n)
    raise InvalidRequestError(
        f"join {service!r} reads {first!r} ({n} partitions) and {other!r} ({m} partitions): "
        "a join meets the records of a key in one partition number, so its inputs must have "
        f"the same partition count; declare them alike, or {rekey_hint(other, n)}")


def check_backend(streams: Streams, service: str, inputs: Iterable[str]) -> int:
    """The partition count the join's ``inputs`` have on ``streams``; refuses counts that
    differ (a stream that existed before the app declared it keeps its own count)."""
    admin = streams.admin()
    actual = {name: len(admin.describe_stream(name).partitions) for name in inputs}
    if len(set(actual.values())) > 1:
        (first, n), *others = actual.items()
        other, m = next((s, c) for s, c in others if c != n)
        raise InvalidRequestError(
            f"join {service!r} cannot start: on the backend, {first!r} has {n} partitions "
            f"and {other!r} has {m} (a stream made before keeps its count, whatever the app "
            "declares); a join meets the records of a key in one partition number, so its "
            f"inputs must have the same count: {rekey_hint(other, n)}")
    return next(iter(actual.values()))


class KeyCheck:
    """Checks that a record's key partitions to the partition it was read from.

    Called for every input record: a key's partition is computed once and remembered."""

    __slots__ = ("_kind", "_known", "_partitions", "_service")

    def __init__(self, service: str, partitions: int, kind: str = "join") -> None:
        self._service = service
        self._partitions = partitions
        self._kind = kind  # "join" or "windowed service": how the messages name it
        self._known: dict[bytes, int] = {}

    def __call__(self, record: Record) -> None:
        key = record.key
        if key is None:
            raise self.no_key(self._service, record, self._kind)
        known = self._known.get(key)
        if known is None:
            known = partition_for_key(key, self._partitions)
            if len(self._known) >= _KEYS_IN_MEMORY:
                self._known.clear()
            self._known[key] = known
        if known != record.partition:
            raise InvalidRequestError(
                f"record {record.stream}/{record.partition}@{record.offset} has key {key!r}, "
                f"which belongs in partition {known} of {self._partitions}, not "
                f"{record.partition}: {self._kind} {self._service!r} needs its inputs keyed by "
                f"{'the join key' if self._kind == 'join' else 'the key it groups by'} with "
                "the default partitioner (was it sent keyed by something else, or to a chosen "
                f"partition?); {rekey_hint(record.stream)}")

    @staticmethod
    def no_key(service: str, record: Record, kind: str = "join") -> InvalidRequestError:
        what = "matches" if kind == "join" else "groups"
        return InvalidRequestError(
            f"record {record.stream}/{record.partition}@{record.offset} has no key: {kind} "
            f"{service!r} {what} records by key; {rekey_hint(record.stream)}")


def opener(service: str, inputs: tuple[str, ...], kind: str = "join"
           ) -> Callable[[Any], AbstractContextManager[KeyCheck]]:
    """A service lifespan checking the backend's partition counts as the join starts; it
    gives the handler the ``KeyCheck`` to make per record."""

    @contextmanager
    def started(ctx: Any) -> Iterator[KeyCheck]:
        yield KeyCheck(service, check_backend(ctx.streams, service, inputs), kind)

    return started
