"""``JsonCodec`` reads and writes exactly what the standard library's ``json`` does, though it
uses pydantic-core's parser and serializer where they agree (``millstream.codecs``)."""

from __future__ import annotations

import datetime
import json
import math
from decimal import Decimal
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millstream.codecs import DecodeError, JsonCodec
from millstream.errors import InvalidRequestError

CODEC = JsonCodec()
HEADERS = CODEC.headers

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def stdlib_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and types compared (1 is not 1.0, -0.0 is not 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


@given(json_values)
def test_what_it_writes_reads_back_as_the_standard_library_reads_its_own_output(
        value: Any) -> None:
    data, headers = CODEC.encode(value)
    assert headers == HEADERS
    if value is None:
        assert data is None
        return
    assert data is not None
    assert same(json.loads(data), json.loads(stdlib_bytes(value)))
    assert same(CODEC.decode(data, headers), json.loads(stdlib_bytes(value)))


@given(json_values)
def test_what_the_standard_library_writes_is_read_as_json_loads_reads_it(value: Any) -> None:
    data = stdlib_bytes(value)
    assert same(CODEC.decode(data, HEADERS), json.loads(data))


@pytest.mark.parametrize("data", [
    b'"\\udc00"',  # a lone surrogate escape: pydantic-core refuses it, json.loads reads it
    b'"\xed\xa0\x80"',  # a surrogate encoded in the bytes
    b"\xef\xbb\xbf{\"a\": 1}",  # a UTF-8 byte-order mark
    "{\"a\": 1}".encode("utf-16"),  # UTF-16, which json.loads detects
    b"[" * 300 + b"]" * 300,  # deeper than pydantic-core's nesting limit
    b"NaN", b"-Infinity", b"12345678901234567890123456789", b"1e400", b"-0",
    b'{"a":1,"a":2}',
])
def test_records_pydantic_core_reads_differently_are_read_as_json_loads_reads_them(
        data: bytes) -> None:
    assert same(CODEC.decode(data, HEADERS), json.loads(data))


@pytest.mark.parametrize("data", [b"", b"[1,", b"{'a': 1}", b"\xff", b"[1,]", b"1 2",
                                  b"[" * 100_000])
def test_records_that_are_not_json_are_refused_with_the_reason(data: bytes) -> None:
    with pytest.raises(DecodeError, match="the record is not valid JSON"):
        CODEC.decode(data, HEADERS)


class Level(IntEnum):
    LOW = 1


@pytest.mark.parametrize("value", [
    {"at": datetime.datetime(2026, 1, 1)}, {"b": b"x"}, {"s": {1, 2}}, [Decimal("1.5")],
    {(1, 2): 3}, {"deep": [[[[{"x": object()}]]]]}, {"lone": "\ud800"},
])
def test_values_that_are_not_json_are_still_refused(value: Any) -> None:
    with pytest.raises(InvalidRequestError, match="cannot be written as JSON"):
        CODEC.encode(value)
    with pytest.raises((TypeError, ValueError)):  # as the standard library refuses it
        stdlib_bytes(value)


@pytest.mark.parametrize("value", [
    {None: 1, True: 2, 1.5: 3, 7: 4},  # keys json.dumps turns into strings its own way
    {"level": Level.LOW}, [float("nan"), float("inf"), -0.0, 1e-7, 1e16],
    {"s": "a\nb\x01\u2028é😀\"\\"}, {"t": (1, [2, (3,)])},
])
def test_values_are_written_as_json_dumps_writes_them(value: Any) -> None:
    data, _ = CODEC.encode(value)
    assert data is not None
    assert same(json.loads(data), json.loads(stdlib_bytes(value)))


def test_a_cycle_is_refused_as_json_dumps_refuses_it() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(InvalidRequestError, match="Circular reference"):
        CODEC.encode({"c": cycle})
