"""The stored batch format: round trips, and damage of any kind is a CorruptDataError (L13)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millstream import CorruptDataError
from millstream.streams._local import batch

records = st.lists(
    st.tuples(
        st.integers(0, 2**62),
        st.one_of(st.none(), st.binary(max_size=20)),
        st.one_of(st.none(), st.binary(max_size=200)),
        st.lists(st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=5))),
                 max_size=3).map(tuple),
    ),
    min_size=1, max_size=40,
)


def _encode(rows: list[tuple[int, bytes | None, bytes | None, tuple]]) -> tuple[bytes, int]:
    payload = batch.encode([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                           [r[3] for r in rows])
    return payload, batch.checksum(batch.payload_crc(payload), 7, 3, 1000, len(rows))


@given(records)
def test_round_trip(rows: list[tuple[int, bytes | None, bytes | None, tuple]]) -> None:
    payload, crc = _encode(rows)
    ts, keys, values, headers, offsets = batch.decode(payload, crc, 7, 3, 1000, len(rows), "t")
    assert list(zip(ts, keys, values, headers or [()] * len(rows), strict=True)) == rows
    assert offsets is None


@given(records, st.data())
def test_any_flipped_bit_is_caught(rows: list[tuple[int, bytes | None, bytes | None, tuple]],
                                   data: st.DataObject) -> None:
    payload, crc = _encode(rows)
    bit = data.draw(st.integers(0, len(payload) * 8 - 1))
    damaged = bytearray(payload)
    damaged[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CorruptDataError, match=r"where: stored batch at offsets 1000\.\."):
        batch.decode(bytes(damaged), crc, 7, 3, 1000, len(rows), "where")


@given(records)
def test_a_row_moved_to_another_place_is_caught(
        rows: list[tuple[int, bytes | None, bytes | None, tuple]]) -> None:
    payload, crc = _encode(rows)
    for stream_id, partition, base in [(8, 3, 1000), (7, 4, 1000), (7, 3, 1001)]:
        with pytest.raises(CorruptDataError):
            batch.decode(payload, crc, stream_id, partition, base, len(rows), "w")


@given(st.binary(max_size=2000), st.integers(0, 2**32 - 1), st.integers(1, 5000))
def test_random_bytes_never_decode(payload: bytes, crc: int, count: int) -> None:
    with pytest.raises(CorruptDataError):
        batch.decode(payload, crc, 1, 0, 0, count, "fuzz")


@given(st.binary(max_size=2000), st.integers(1, 50))
def test_random_bytes_with_a_matching_crc_are_refused_not_crashed_on(
        payload: bytes, count: int) -> None:
    """Even past the CRC gate (a row forged with a valid CRC), garbage is refused cleanly."""
    crc = batch.checksum(zlib.crc32(payload), 1, 0, 0, count)
    with pytest.raises(CorruptDataError):
        batch.decode(payload, crc, 1, 0, 0, count, "forged")
