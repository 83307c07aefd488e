"""Side-by-side versions: comparing a shadow's outputs with production's, and promoting it.

A shadow version of a service (``millstream run app SERVICE --shadow v2``) reads the same
input in its own group (``<group>.shadow.v2``) and writes every output to
``<stream>.shadow.v2``, so production never sees it.

``diff`` pairs the two output streams record by record: the n-th record with a given key in
production against the n-th record with that key in the shadow (a service processes a key's
records in order, so equal code gives equal sequences per key). JSON values are compared as
documents, field by field; others as bytes. On a stream several services write, only the
records whose ``millstream-writer`` header names the service are compared; the others are
counted as ``other_writers``.

``promote`` makes the shadow production: with both groups stopped, production's group takes
over the shadow's committed input offsets (so the promoted code continues where the shadow
got to, re-processing nothing) and, for a stateful service, the shadow's checkpoints; a
record of the promotion goes to ``millstream.deployments``. Run the new code as production
afterwards (``millstream run new_module:app SERVICE``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from millstream._wellknown import (
    CHECKPOINTS,
    DEPLOYMENTS,
    WRITER_HEADER,
    ensure_platform_stream,
)
from millstream.codecs import header
from millstream.errors import InvalidRequestError, NotFoundError
from millstream.runtime._state import CheckpointStore
from millstream.service._app import App
from millstream.service._shadow import shadow_group, shadow_stream
from millstream.streams._base import Streams
from millstream.streams._reading import read_to_end

__all__ = ["Difference", "StreamDiff", "diff_outputs", "promote"]


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


def _by_key(streams: Streams, stream: str, writer: str | None
            ) -> tuple[dict[bytes | None, list[Any]], int, int]:
    """The stream's values by key, how many there are and how many were skipped as written
    by another service than ``writer`` (None: keep every record)."""
    grouped: dict[bytes | None, list[Any]] = {}
    count = skipped = 0
    for record in read_to_end(streams, stream):
        if writer is not None and header(record.headers, WRITER_HEADER) != writer:
            skipped += 1
            continue
        grouped.setdefault(record.key, []).append(_decode(record.value))
        count += 1
    return grouped, count, skipped


def _fields(a: Any, b: Any) -> tuple[str, ...]:
    if isinstance(a, dict) and isinstance(b, dict):
        return tuple(sorted(k for k in set(a) | set(b) if a.get(k, ...) != b.get(k, ...)))
    return ("(value)",)


def diff_outputs(streams: Streams, app: App, service: str, version: str, *,
                 examples: int = 5) -> list[StreamDiff]:
    """Compare each output stream of ``service`` with its shadow ``version``."""
    spec = app.get(service)
    if not spec.outputs:
        raise InvalidRequestError(f"service {service!r} has no output streams to compare")
    existing = set(streams.admin().list_streams())
    results = []
    for stream in spec.outputs:
        shadow = shadow_stream(stream, version)
        if shadow not in existing:
            raise NotFoundError(
                f"there is no {shadow!r}: run the shadow first (millstream run MODULE:APP "
                f"{service} --shadow {version})")
        result = StreamDiff(stream, shadow)
        shared = len(app.writers_of(stream)) > 1
        prod, result.production_records, result.other_writers = _by_key(
            streams, stream, service if shared else None)
        shad, result.shadow_records, _ = _by_key(streams, shadow, None)
        for key in prod.keys() | shad.keys():
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


def promote(streams: Streams, app: App, service: str, version: str) -> dict[str, Any]:
    """Hand the shadow's input offsets (and state) to production's group; see the module
    docstring. Returns the deployment record written."""
    spec = app.get(service)
    production, shadow = spec.group, shadow_group(spec.group, version)
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
    for stream in spec.inputs:
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
    if spec.stateful:
        source = CheckpointStore(streams, shadow)
        source.refresh()
        target = CheckpointStore(streams, production)
        with streams.open_producer() as producer:
            for number in range(app.streams[spec.inputs[0]].partitions):
                latest = source.latest(number)
                if latest is not None:
                    producer.send(CHECKPOINTS, target.encode(number, latest.offsets,
                                                             latest.state, latest.records),
                                  key=target.key(number))
                    copied += 1
    record = {"kind": "promotion", "app": app.name, "service": service, "version": version,
              "from_group": shadow, "to_group": production, "offsets": offsets,
              "checkpoints": copied, "time_ms": int(time.time() * 1000)}
    ensure_platform_stream(admin, DEPLOYMENTS)
    with streams.open_producer() as producer:
        producer.send(DEPLOYMENTS, json.dumps(record).encode(), key=production.encode()).wait()
    return record
