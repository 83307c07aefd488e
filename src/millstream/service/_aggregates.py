"""Aggregations: what a window keeps of its records.

Each aggregation keeps an *accumulator* — a JSON value, since it lives in the checkpointed
state — and has four steps: ``initial()``, ``add(acc, value, t)`` (``value``: what its
``field`` picks out of the record's payload; ``t``: the record's event time in ms),
``merge(a, b)`` (two windows become one: sessions) and ``result(acc)`` (the value a window
row shows). ``field`` is a payload field name (an attribute of a model, a key of a dict) or a
function of the payload; None means the payload itself.

``Count()``, ``Sum(field)``, ``Min(field)``, ``Max(field)``, ``Mean(field)``,
``Latest(field=None)`` (the value with the largest event time; the later record on a tie),
``Collect(field=None, limit=None)`` (values in arrival order; the last ``limit``), and
``Reducer(initial, add, merge=None)`` for anything else.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

from pydantic_core import to_jsonable_python

from millstream.errors import InvalidRequestError

__all__ = ["Aggregate", "Collect", "Count", "Latest", "Max", "Mean", "Min", "Reducer", "Sum",
           "json_value", "picker"]

#: a payload field name, a function of the payload, or None (the payload itself)
Field = str | Callable[[Any], Any] | None


def picker(field: Field, what: str) -> Callable[[Any], Any] | None:
    """A function picking ``field`` out of a payload (None: the payload itself is used)."""
    if field is None:
        return None
    if callable(field):
        return field
    if not isinstance(field, str) or not field:
        raise InvalidRequestError(
            f"{what}: field={field!r} must be a payload field name, a function of the "
            "payload, or None")
    name = field

    def pick(value: Any) -> Any:
        if isinstance(value, dict):
            try:
                return value[name]
            except KeyError:
                raise InvalidRequestError(
                    f"{what}: the payload has no field {name!r} (it has "
                    f"{', '.join(map(str, value)) or 'none'})") from None
        try:
            return getattr(value, name)
        except AttributeError:
            raise InvalidRequestError(
                f"{what}: a {type(value).__name__} payload has no field {name!r}") from None

    return pick


def _number(value: Any, what: str) -> int | float:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):  # a table row holds no NaN
        return value
    raise InvalidRequestError(
        f"{what} takes finite numbers, not {type(value).__name__} {value!r}")


class Aggregate:
    """What every aggregation has; subclasses override the steps they need."""

    #: picks the aggregated value out of a payload (None: the payload, or nothing to pick)
    pick: Callable[[Any], Any] | None = None

    def initial(self) -> Any:
        return None

    def add(self, acc: Any, value: Any, t: int) -> Any:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise InvalidRequestError(
            f"{self!r} cannot merge two windows (session windows need it); give the "
            "Reducer a merge function")

    def result(self, acc: Any) -> Any:
        return acc

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Count(Aggregate):
    """The number of records."""

    def initial(self) -> int:
        return 0

    def add(self, acc: int, value: Any, t: int) -> int:
        return acc + 1

    def merge(self, a: int, b: int) -> int:
        return a + b


class _FieldAggregate(Aggregate):
    def __init__(self, field: Field = None) -> None:
        self.field = field
        self.pick = picker(field, f"{type(self).__name__}({field!r})")

    def __repr__(self) -> str:  # a function by its name: the same text in every process
        if self.field is None:
            return f"{type(self).__name__}()"
        shown = self.field if isinstance(self.field, str) else getattr(
            self.field, "__name__", type(self.field).__name__)
        return f"{type(self).__name__}({shown!r})"


class Sum(_FieldAggregate):
    """The sum of a numeric field."""

    def initial(self) -> int:
        return 0

    def add(self, acc: Any, value: Any, t: int) -> Any:
        return acc + _number(value, repr(self))

    def merge(self, a: Any, b: Any) -> Any:
        return a + b


class Min(_FieldAggregate):
    """The smallest value of a numeric field (None for no records)."""

    def add(self, acc: Any, value: Any, t: int) -> Any:
        value = _number(value, repr(self))
        return value if acc is None or value < acc else acc

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else min(a, b)


class Max(_FieldAggregate):
    """The largest value of a numeric field (None for no records)."""

    def add(self, acc: Any, value: Any, t: int) -> Any:
        value = _number(value, repr(self))
        return value if acc is None or value > acc else acc

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else max(a, b)


class Mean(_FieldAggregate):
    """The mean of a numeric field (kept as ``[sum, count]``; None for no records)."""

    def initial(self) -> list[Any]:
        return [0, 0]

    def add(self, acc: list[Any], value: Any, t: int) -> list[Any]:
        return [acc[0] + _number(value, repr(self)), acc[1] + 1]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, acc: list[Any]) -> float | None:
        return acc[0] / acc[1] if acc[1] else None


class Latest(_FieldAggregate):
    """The value of the record with the largest event time (the later one on a tie); kept
    as ``[t, value]``."""

    def add(self, acc: Any, value: Any, t: int) -> Any:
        return [t, json_value(value)] if acc is None or t >= acc[0] else acc

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else (b if b[0] >= a[0] else a)

    def result(self, acc: Any) -> Any:
        return None if acc is None else acc[1]


class Collect(_FieldAggregate):
    """The values in arrival order (the last ``limit`` of them)."""

    def __init__(self, field: Field = None, *, limit: int | None = None) -> None:
        super().__init__(field)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 1):
            raise InvalidRequestError(f"Collect limit={limit!r} must be an integer ≥ 1 or None")
        self.limit = limit

    def initial(self) -> list[Any]:
        return []

    def add(self, acc: list[Any], value: Any, t: int) -> list[Any]:
        acc = [*acc, json_value(value)]
        return acc if self.limit is None else acc[-self.limit:]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        both = [*a, *b]
        return both if self.limit is None else both[-self.limit:]


class Reducer(Aggregate):
    """A user aggregation: ``initial`` (a JSON value, or a function returning one),
    ``add(acc, value) -> acc``, and ``merge(a, b) -> acc`` for session windows. The
    accumulator must be a JSON value (it is checkpointed); return a new one rather than
    changing ``acc`` in place."""

    def __init__(self, initial: Any, add: Callable[[Any, Any], Any],
                 merge: Callable[[Any, Any], Any] | None = None, *, field: Field = None) -> None:
        if not callable(add):
            raise InvalidRequestError(f"Reducer add={add!r} must be a function (acc, value)")
        if merge is not None and not callable(merge):
            raise InvalidRequestError(f"Reducer merge={merge!r} must be a function (a, b)")
        self._initial = initial
        self._add = add
        self._merge = merge
        self.field = field
        self.pick = picker(field, "Reducer")

    def initial(self) -> Any:
        return self._initial() if callable(self._initial) else copy.deepcopy(self._initial)

    def add(self, acc: Any, value: Any, t: int) -> Any:
        return self._checked(self._add(acc, value), "add")

    def merge(self, a: Any, b: Any) -> Any:
        if self._merge is None:
            return super().merge(a, b)
        return self._checked(self._merge(a, b), "merge")

    def _checked(self, acc: Any, what: str) -> Any:
        """``acc`` if it is JSON (the window's state is checkpointed as JSON); else the
        record fails here, alone, before the state changes — not the service at its next
        checkpoint."""
        try:
            json.dumps(acc)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"{self!r}: {what} returned {type(acc).__name__} {acc!r:.80}, which is not "
                f"JSON ({exc}); a window's accumulator is checkpointed as JSON: return a "
                "dict, list, str, number, bool or None") from None
        return acc

    def __repr__(self) -> str:
        return f"Reducer({getattr(self._add, '__name__', self._add)!r})"


def json_value(value: Any) -> Any:
    """A payload value as JSON data: a model as its dict, a datetime, UUID, Decimal or enum
    as pydantic writes it in JSON (the window's state is checkpointed as JSON)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    return to_jsonable_python(value)
