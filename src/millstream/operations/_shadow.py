"""Side-by-side versions: comparing a shadow's outputs with production's, and promoting it.

A shadow version of a service (``millstream run app SERVICE --shadow v2``) reads the same
input in its own group (``<group>.shadow.v2``) and writes every output to
``<stream>.shadow.v2``, so production never sees it.

What diff and promote need to know of the service is a ``ShadowTarget``: made from the App
by ``ShadowTarget.of_app`` (``millstream diff`` and ``promote``, which load the app), or
found on the platform by ``find_shadows`` (the console, which has no app: the shadow groups,
their streams and the metrics they report say it).

``diff_shadow`` pairs the two output streams record by record: the n-th record with a given
key in production against the n-th record with that key in the shadow (a service processes a
key's records in order, so equal code gives equal sequences per key). JSON values are
compared as documents, field by field; others as bytes. On a stream several services write,
only the records whose ``millstream-writer`` header names the service are compared; the
others are counted as ``other_writers``. ``max_records`` bounds how much of each stream is
read (evenly over its partitions, from their start) and the result says when it stopped.

``promote_shadow`` makes the shadow production: with both groups stopped, production's group
takes over the shadow's committed input offsets (so the promoted code continues where the
shadow got to, re-processing nothing) and, for a stateful service, the shadow's checkpoints;
a record of the promotion goes to ``millstream.deployments``. Run the new code as production
afterwards (``millstream run new_module:app SERVICE``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from millstream._wellknown import (
    CHECKPOINTS,
    DEPLOYMENTS,
    WRITER_HEADER,
    ensure_platform_stream,
    is_platform_stream,
)
from millstream.codecs import header
from millstream.errors import InvalidRequestError, NotFoundError
from millstream.records import Record
from millstream.runtime._state import CheckpointStore
from millstream.service._app import App
from millstream.service._shadow import (
    SHADOW_INFIX,
    is_shadow,
    production_name,
    shadow_group,
    shadow_stream,
)
from millstream.streams._base import Streams
from millstream.streams._reading import read_ranges

__all__ = ["Difference", "ShadowTarget", "StreamDiff", "diff_outputs", "diff_shadow",
           "find_shadows", "promote", "promote_shadow"]


@dataclass(frozen=True, slots=True)
class ShadowTarget:
    """A service and one of its shadow versions, as diff and promote need them."""

    service: str
    #: production's consumer group (the shadow's is ``shadow_group``)
    group: str
    version: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    app: str = ""
    #: the outputs other services write too (their records name their writer); None when
    #: not known: then a production record is compared unless its header names another
    shared: frozenset[str] | None = None
    #: None when not known: the shadow's checkpoints are copied if it has any
    stateful: bool | None = None

    @property
    def shadow_group(self) -> str:
        return shadow_group(self.group, self.version)

    @classmethod
    def of_app(cls, app: App, service: str, version: str) -> ShadowTarget:
        """The shadow ``version`` of ``service`` as ``app`` declares the service."""
        spec = app.get(service)
        shared = frozenset(s for s in spec.outputs if len(app.writers_of(s)) > 1)
        return cls(service, spec.group, version, spec.inputs, spec.outputs, app.name, shared,
                   spec.stateful)


@dataclass
class Difference:
    """One pair that differs: the key, its occurrence and the two values (decoded)."""

    key: bytes | None
    occurrence: int
    production: Any
    shadow: Any
    fields: tuple[str, ...]


@dataclass
class StreamDiff:
    """The comparison of one output stream."""

    stream: str
    shadow_stream: str
    production_records: int = 0
    #: production records of the stream written by other services (not compared)
    other_writers: int = 0
    shadow_records: int = 0
    equal: int = 0
    differing: int = 0
    only_production: int = 0
    only_shadow: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    examples: list[Difference] = field(default_factory=list)
    #: True when ``max_records`` stopped the reading before a stream's end
    truncated: bool = False

    @property
    def identical(self) -> bool:
        return self.differing == 0 and self.only_production == 0 and self.only_shadow == 0


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def _records(streams: Streams, stream: str, max_records: int | None
             ) -> tuple[Iterator[Record], bool]:
    """The records to compare of ``stream``: all, or the first of each partition up to
    ``max_records`` in all; and whether that left some out."""
    info = streams.admin().describe_stream(stream)
    each = None if max_records is None else max(max_records // max(len(info.partitions), 1), 1)
    ranges = {p.partition: (p.start, p.end if each is None else min(p.end, p.start + each))
              for p in info.partitions}
    cut = any(ranges[p.partition][1] < p.end for p in info.partitions)
    return read_ranges(streams, stream, ranges), cut


def _by_key(records: Iterator[Record], keep: Any) -> tuple[dict[bytes | None, list[Any]], int,
                                                            int]:
    """The values by key, how many there are and how many ``keep(writer)`` left out."""
    grouped: dict[bytes | None, list[Any]] = {}
    count = skipped = 0
    for record in records:
        if not keep(header(record.headers, WRITER_HEADER)):
            skipped += 1
            continue
        grouped.setdefault(record.key, []).append(_decode(record.value))
        count += 1
    return grouped, count, skipped


def _fields(a: Any, b: Any) -> tuple[str, ...]:
    if isinstance(a, dict) and isinstance(b, dict):
        return tuple(sorted(k for k in set(a) | set(b) if a.get(k, ...) != b.get(k, ...)))
    return ("(value)",)


def _keeper(target: ShadowTarget, stream: str) -> Any:
    """Which production records of ``stream`` are the service's, by their writer header."""
    service = target.service
    if target.shared is None:
        return lambda writer: writer is None or writer == service
    if stream in target.shared:
        return lambda writer: writer == service
    return lambda writer: True


def diff_shadow(streams: Streams, target: ShadowTarget, *, examples: int = 5,
                max_records: int | None = None) -> list[StreamDiff]:
    """Compare each output stream of ``target.service`` with its shadow's; read at most
    ``max_records`` of each stream when given."""
    if not target.outputs:
        raise InvalidRequestError(f"service {target.service!r} has no output streams to compare")
    existing = set(streams.admin().list_streams())
    results = []
    for stream in target.outputs:
        shadow = shadow_stream(stream, target.version)
        if shadow not in existing:
            raise NotFoundError(
                f"there is no {shadow!r}: run the shadow first (millstream run MODULE:APP "
                f"{target.service} --shadow {target.version})")
        result = StreamDiff(stream, shadow)
        production_records, cut_a = _records(streams, stream, max_records)
        shadow_records, cut_b = _records(streams, shadow, max_records)
        result.truncated = cut_a or cut_b
        prod, result.production_records, result.other_writers = _by_key(
            production_records, _keeper(target, stream))
        shad, result.shadow_records, _ = _by_key(shadow_records, lambda writer: True)
        for key in sorted(prod.keys() | shad.keys(), key=lambda k: (k is not None, k or b"")):
            a, b = prod.get(key, []), shad.get(key, [])
            for n in range(max(len(a), len(b))):
                if n >= len(b):
                    result.only_production += 1
                elif n >= len(a):
                    result.only_shadow += 1
                elif a[n] == b[n]:
                    result.equal += 1
                else:
                    result.differing += 1
                    changed = _fields(a[n], b[n])
                    result.fields.update(changed)
                    if len(result.examples) < examples:
                        result.examples.append(Difference(key, n, a[n], b[n], changed))
        results.append(result)
    return results


def diff_outputs(streams: Streams, app: App, service: str, version: str, *,
                 examples: int = 5) -> list[StreamDiff]:
    """Compare each output stream of ``service`` with its shadow ``version``."""
    return diff_shadow(streams, ShadowTarget.of_app(app, service, version), examples=examples)


def promote_shadow(streams: Streams, target: ShadowTarget) -> dict[str, Any]:
    """Hand the shadow's input offsets (and state) to production's group; see the module
    docstring. Returns the deployment record written."""
    production, shadow, version = target.group, target.shadow_group, target.version
    admin = streams.admin()
    for group in (production, shadow):
        live = admin.describe_group(group).members
        if live:
            raise InvalidRequestError(
                f"group {group!r} has {len(live)} live member(s); stop both the production "
                f"service and its shadow {version!r}, then promote")
    shadow_info = admin.describe_group(shadow)
    committed = {(p.stream, p.partition): p.committed for p in shadow_info.partitions}
    offsets: dict[str, dict[int, int]] = {}
    for stream in target.inputs:
        info = admin.describe_stream(stream)
        chosen: dict[int, int] = {}
        for part in info.partitions:
            got = committed.get((stream, part.partition))
            if got is None:
                if part.end > part.start:
                    raise InvalidRequestError(
                        f"the shadow {version!r} has not committed anything on "
                        f"{stream}[{part.partition}]; let it process its input first")
                got = part.start
            chosen[part.partition] = got
        offsets[stream] = chosen
    for stream, chosen in offsets.items():
        admin.reset_offsets(production, stream, chosen)
    copied = 0
    if target.stateful is not False and target.inputs:
        source = CheckpointStore(streams, shadow)
        source.refresh()
        destination = CheckpointStore(streams, production)
        partitions = admin.describe_stream(target.inputs[0]).partition_count
        with streams.open_producer() as producer:
            for number in range(partitions):
                latest = source.latest(number)
                if latest is not None:
                    producer.send(CHECKPOINTS, destination.encode(
                        number, latest.offsets, latest.state, latest.records),
                        key=destination.key(number))
                    copied += 1
    record = {"kind": "promotion", "app": target.app, "service": target.service,
              "version": version, "from_group": shadow, "to_group": production,
              "offsets": offsets, "checkpoints": copied, "time_ms": int(time.time() * 1000)}
    ensure_platform_stream(admin, DEPLOYMENTS)
    with streams.open_producer() as producer:
        producer.send(DEPLOYMENTS, json.dumps(record).encode(), key=production.encode()).wait()
    return record


def promote(streams: Streams, app: App, service: str, version: str) -> dict[str, Any]:
    """Make ``service``'s shadow ``version`` production (``promote_shadow``)."""
    return promote_shadow(streams, ShadowTarget.of_app(app, service, version))


def find_shadows(streams: Streams) -> list[ShadowTarget]:
    """The shadow versions the platform holds, found without the app: one per consumer group
    named ``<group>.shadow.<version>``, by group. Its service and app come from production's
    group (``<app>.<service>``); its inputs are the streams either group has read (but the
    platform's own); its outputs the streams ``S`` for which ``S.shadow.<version>`` exists.
    Whether an output is shared, or the service stateful, is not known (see ``ShadowTarget``)."""
    admin = streams.admin()
    names = admin.list_groups()
    existing = admin.list_streams()
    found = []
    for group in names:
        if not is_shadow(group):
            continue
        production = production_name(group)
        version = group.rsplit(SHADOW_INFIX, 1)[1]
        app, _, service = production.rpartition(".")
        read: set[str] = set()
        for name in (group, production):
            if name == group or name in names:
                read.update(p.stream for p in admin.describe_group(name).partitions)
        suffix = SHADOW_INFIX + version
        outputs = tuple(sorted(s.removesuffix(suffix) for s in existing
                               if s.endswith(suffix) and not is_platform_stream(s)))
        inputs = tuple(sorted(s for s in read if not is_platform_stream(s)
                              and not is_shadow(s)))
        found.append(ShadowTarget(service or production, production, version, inputs, outputs,
                                  app))
    return found
