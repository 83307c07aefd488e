"""A table output's row that a table cannot store is refused when it is emitted, on every
backend: a NUL character in its text (PostgreSQL cannot hold ``\\u0000`` in a document).
Before, the row reached the changelog; on PostgreSQL its batch — and every retry of it —
failed after the service's commit, so the table kept none of the batch's rows and the
service could not start again."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

import millstream
from millstream.runtime import ServiceRunner, parse_exception
from millstream.service import App
from millstream.tables import open_tables


class Note(BaseModel):
    id: str
    text: str


@pytest.fixture(params=["sqlite", "postgres"])
def tables_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    return str(request.getfixturevalue("pg_url"))


def test_a_row_holding_a_nul_goes_to_the_exceptions_and_the_others_reach_the_table(
        tmp_path: Path, tables_url: str) -> None:
    notes = App("notes", partitions=1)
    table = notes.table("notes", Note, key="id")

    @notes.service(inputs={"raw": Note}, outputs=[table])
    def keep(n: Note) -> Note:
        return n

    sent = [Note(id="a", text="fine"), Note(id="b", text="x\x00y"),
            Note(id="c", text="a backslash and u0000: \\u0000")]
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams, \
            open_tables(tables_url) as tables:
        runner = ServiceRunner(notes, "keep", streams, tables=tables)
        runner.prepare()
        with notes.open_writer(streams) as writer:
            writer.send_many("raw", sent, key=lambda n: n.id)
        runner.run(until=lambda r: r.statistics().records_in == 3)
        stats = runner.statistics()
        assert (stats.records_in, stats.records_out, stats.exceptions) == (3, 2, 1)
        assert dict(tables.table("notes").scan()) == {
            "a": {"id": "a", "text": "fine"},
            "c": {"id": "c", "text": "a backslash and u0000: \\u0000"}}
        with streams.open_consumer() as consumer:
            consumer.subscribe(["millstream.exceptions"])
            [failure] = [parse_exception(r) for r in consumer.poll(10, 5.0)]
        assert failure is not None
        assert (failure.stage, failure.message) == ("encode", (
            "a row of table 'notes' (key 'b') holds a NUL character (\\u0000) in its text, "
            "which a table cannot store (PostgreSQL refuses it); remove it from the row "
            "before emitting it"))
