"""How the test platform turns what a test gives into a record: keys, timestamps, and an
app whose streams have other partition counts."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime

from millstream.errors import InvalidRequestError
from millstream.service._app import App
from millstream.service._stream import Stream

__all__ = ["KeyLike", "When", "key_bytes", "millis", "with_partitions"]

KeyLike = bytes | str | None
#: a record's timestamp: seconds since the epoch, a ``datetime`` (naive = UTC), or None (now)
When = float | datetime | None


def key_bytes(key: KeyLike) -> bytes | None:
    """``key`` as a record's key; ``InvalidRequestError`` naming it unless str, bytes or
    None."""
    if isinstance(key, str):
        return key.encode()
    if key is None or isinstance(key, bytes):
        return key
    raise InvalidRequestError(
        f"key={key!r} ({type(key).__name__}): a record's key is a str or bytes (or None); "
        "convert it, e.g. key=str(order.id), or key=lambda v: str(v.id) in send_many")


def millis(when: When) -> int | None:
    if when is None:
        return None
    if isinstance(when, datetime):
        return round((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
    if isinstance(when, int | float) and not isinstance(when, bool):
        return round(when * 1000)
    raise InvalidRequestError(
        f"timestamp={when!r}: give seconds since the epoch (e.g. platform.clock.time()) or a "
        "datetime")


def with_partitions(app: App, override: int | Mapping[str, int] | None) -> App:
    """A copy of ``app`` whose streams have the overridden partition counts."""
    if override is None:
        return app
    counts = dict.fromkeys(app.streams, override) if isinstance(override, int) \
        else dict(override)
    unknown = sorted(set(counts) - set(app.streams))
    if unknown:
        raise InvalidRequestError(
            f"partitions_override names stream(s) {', '.join(unknown)} that app {app.name!r} "
            f"does not declare; its streams: {', '.join(sorted(app.streams))}"
        )
    for name, count in counts.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidRequestError(f"partitions_override[{name!r}]={count!r} must be ≥ 1")
    changed = copy.copy(app)
    changed.streams = {name: Stream(name, spec.codec, counts.get(name, spec.partitions))
                       for name, spec in app.streams.items()}
    for service in app.services.values():
        found = {changed.streams[s].partitions for s in service.inputs}
        if service.stateful and len(found) > 1:
            raise InvalidRequestError(
                f"partitions_override gives the inputs of stateful service {service.name!r} "
                "different partition counts; its inputs must stay co-partitioned"
            )
    return changed
