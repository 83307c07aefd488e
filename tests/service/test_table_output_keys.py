"""A table output's row whose key a table cannot hold is refused when it is emitted — it
goes to the exceptions stream, stage ``encode``, with a message naming the value — instead
of reaching the changelog, where the table feed would skip it and the row be lost."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from millstream.service import App
from millstream.testing import TestPlatform


class Tally(BaseModel):
    word: str
    count: int


class Reading(BaseModel):
    sensor: float
    value: int


def test_a_row_whose_key_field_holds_a_nul_goes_to_the_exceptions_naming_it() -> None:
    words = App("words", partitions=1)
    tallies = words.table("tallies", Tally, key="word")

    @words.service(inputs={"text": Tally}, outputs=[tallies])
    def tally(t: Tally) -> Tally:
        return t

    with TestPlatform(words) as platform:
        platform.send_many("text", [Tally(word="a", count=1), Tally(word="b\x00c", count=2),
                                    Tally(word="d", count=3)], key="k")
        stats = platform.run_until_idle("tally")
        assert (stats.records_in, stats.records_out, stats.exceptions) == (3, 2, 1)
        [failure] = platform.exceptions()
        assert failure.stage == "encode"
        assert failure.message == (
            "table 'tallies': a Tally row's word 'b\\x00c' cannot key a table row; keys are "
            "text without NUL characters, integers or UUIDs")
        assert [r.key for r in platform.records("tallies")] == [b"a", b"d"]
        assert dict(platform.tables.table("tallies").scan()) == {
            "a": {"word": "a", "count": 1}, "d": {"word": "d", "count": 3}}


def test_a_key_field_of_another_type_than_text_or_integer_is_refused_naming_it() -> None:
    sensors = App("sensors", partitions=1)
    readings = sensors.table("readings", Reading, key="sensor")

    @sensors.service(inputs={"raw": Reading}, outputs=[readings])
    def keep(r: Reading) -> Reading:
        return r

    with TestPlatform(sensors) as platform:
        platform.send_many("raw", [Reading(sensor=1.5, value=7)], key="k")
        assert platform.run_until_idle("keep").exceptions == 1
        assert [f.message for f in platform.exceptions()] == [
            "table 'readings': a Reading row's sensor 1.5 cannot key a table row; keys are "
            "text without NUL characters, integers or UUIDs"]
        assert platform.records("readings") == []


def test_a_table_keyed_by_the_record_key_refuses_a_row_that_has_none() -> None:
    words = App("words", partitions=1)
    tallies = words.table("tallies", Tally)  # keyed by the record key

    @words.service(inputs={"text": Tally}, outputs=[tallies])
    def tally(t: Tally, ctx: Any) -> None:
        ctx.emit(tallies, t, key=t.word if t.count > 1 else None)

    with TestPlatform(words) as platform:
        platform.send_many("text", [Tally(word="a", count=1), Tally(word="b", count=2)])
        stats = platform.run_until_idle("tally")
        assert (stats.records_out, stats.exceptions) == (1, 1)
        assert [f.message for f in platform.exceptions()] == [
            "table 'tallies' is keyed by the record key, and a Tally row came with key None; "
            "emit it with a key (non-empty text without NUL): ctx.emit(..., key=...)"]
        assert dict(platform.tables.table("tallies").scan()) == {
            "b": {"word": "b", "count": 2}}


def test_a_row_of_another_type_is_refused_naming_the_value() -> None:
    words = App("words", partitions=1)
    tallies = words.table("tallies", Tally, key="word")

    @words.service(inputs={"text": Tally}, outputs=[tallies])
    def tally(t: Tally) -> Any:
        return {"word": t.word, "count": t.count}

    with TestPlatform(words) as platform:
        platform.send_many("text", [Tally(word="a", count=1)], key="k")
        assert platform.run_until_idle("tally").exceptions == 1
        assert [f.message for f in platform.exceptions()] == [
            "table 'tallies' takes Tally rows, not dict {'word': 'a', 'count': 1}"]


def test_a_returned_row_of_a_table_keyed_by_the_record_key_takes_the_input_key() -> None:
    words = App("words", partitions=1)
    tallies = words.table("tallies", Tally)  # keyed by the record key

    @words.service(inputs={"text": Tally}, outputs=[tallies])
    def tally(t: Tally) -> Tally:
        return t

    with TestPlatform(words) as platform:
        platform.send_many("text", [Tally(word="a", count=1), Tally(word="b", count=2)],
                           key=lambda t: t.word.upper())
        platform.send_many("text", [Tally(word="c", count=3)])  # no key
        stats = platform.run_until_idle("tally")
        assert (stats.records_out, stats.exceptions) == (2, 1)
        assert [f.message for f in platform.exceptions()] == [
            "table 'tallies' is keyed by the record key, and a Tally row came with key None; "
            "emit it with a key (non-empty text without NUL): ctx.emit(..., key=...)"]
        assert dict(platform.tables.table("tallies").scan()) == {
            "A": {"word": "a", "count": 1}, "B": {"word": "b", "count": 2}}
