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


# -- the raw-values layout (batches whose values average RAW_VALUES_FROM bytes or more) ------

large_records = st.lists(
    st.tuples(
        st.integers(0, 2**62),
        st.one_of(st.none(), st.binary(max_size=20)),
        st.one_of(st.none(), st.binary(min_size=batch.RAW_VALUES_FROM,
                                       max_size=3 * batch.RAW_VALUES_FROM)),
        st.lists(st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=5))),
                 max_size=3).map(tuple),
    ),
    min_size=1, max_size=12,
).filter(lambda rows: sum(len(r[2] or b"") for r in rows)
         >= batch.RAW_VALUES_FROM * len(rows))


@given(large_records)
def test_large_values_round_trip_in_the_raw_layout(
        rows: list[tuple[int, bytes | None, bytes | None, tuple]]) -> None:
    payload, crc = _encode(rows)
    assert payload[0] == batch.RAW_FORMAT
    ts, keys, values, headers, offsets = batch.decode(payload, crc, 7, 3, 1000, len(rows), "t")
    assert list(zip(ts, keys, values, headers or [()] * len(rows), strict=True)) == rows
    assert all(type(v) is bytes for v in values if v is not None)
    assert offsets is None


def test_ten_kilobyte_values_come_back_exact_with_sparse_offsets() -> None:
    values = [bytes([i]) * 10240 for i in range(51)]
    payload = batch.encode(list(range(51)), [None] * 51, values, None, list(range(0, 102, 2)))
    crc = batch.checksum(batch.payload_crc(payload), 1, 0, 500, 51)
    assert payload[0] == batch.RAW_FORMAT
    assert len(payload) < 51 * 10240 + 1024  # the values once, plus a small header
    ts, keys, got, headers, offsets = batch.decode(payload, crc, 1, 0, 500, 51, "t")
    assert got == values and ts == list(range(51)) and keys == [None] * 51
    assert headers is None and offsets == list(range(0, 102, 2))


@given(large_records, st.data())
def test_any_flipped_bit_in_a_raw_layout_batch_is_caught(
        rows: list[tuple[int, bytes | None, bytes | None, tuple]], data: st.DataObject) -> None:
    payload, crc = _encode(rows)
    bit = data.draw(st.integers(0, len(payload) * 8 - 1))
    damaged = bytearray(payload)
    damaged[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CorruptDataError, match=r"where: stored batch at offsets 1000\.\."):
        batch.decode(bytes(damaged), crc, 7, 3, 1000, len(rows), "where")


@given(st.binary(max_size=2000), st.integers(1, 50))
def test_random_bytes_in_the_raw_layout_with_a_matching_crc_are_refused(
        tail: bytes, count: int) -> None:
    payload = bytes([batch.RAW_FORMAT]) + tail
    crc = batch.checksum(zlib.crc32(payload), 1, 0, 0, count)
    with pytest.raises(CorruptDataError):
        batch.decode(payload, crc, 1, 0, 0, count, "forged")


@pytest.mark.parametrize("cut", [1, 100, 10240])
def test_a_raw_layout_batch_cut_short_or_padded_with_a_matching_crc_is_refused(cut: int) -> None:
    values = [b"v" * 10240, None, b"w" * 10240]
    payload = batch.encode([1, 2, 3], [b"k", None, b"k"], values, None)
    for forged in (payload[:-cut], payload + b"\0" * cut):
        crc = batch.checksum(zlib.crc32(forged), 1, 0, 0, 3)
        with pytest.raises(CorruptDataError, match="unknown layout"):
            batch.decode(forged, crc, 1, 0, 0, 3, "forged")


@given(st.one_of(records, large_records))
def test_the_pieces_a_segment_is_written_from_are_the_payload_and_carry_its_crc(
        rows: list[tuple[int, bytes | None, bytes | None, tuple]]) -> None:
    columns = ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
               [r[3] for r in rows])
    parts = batch.encode_parts(*columns)
    payload = batch.encode(*columns)
    assert b"".join(parts) == payload
    assert batch.payload_crc(parts) == batch.payload_crc(payload) == zlib.crc32(payload)
