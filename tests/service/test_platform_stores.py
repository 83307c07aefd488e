"""The test kit gives services a file store and tables; declared retention is applied."""

from __future__ import annotations

from pydantic import BaseModel

from millstream.service import App, Context
from millstream.streams._base import Retention
from millstream.testing import TestPlatform


class Doc(BaseModel):
    id: int
    text: str


def test_services_under_the_test_kit_get_files_tables_and_declared_retention() -> None:
    app = App("kit", partitions=2)
    app.stream("docs", Doc)
    app.stream("index", Doc, retention=Retention(compact=True))

    @app.service(inputs={"docs": Doc}, outputs={"index": Doc})
    def store(doc: Doc, ctx: Context) -> Doc:
        ref = ctx.files.put("text.txt", doc.text.encode())
        ctx.tables.ensure_table("docs").put(str(doc.id), {"url": ref.url, "size": ref.size})
        assert ctx.shadow is None
        return doc

    with TestPlatform(app) as platform:
        platform.send_many("docs", [Doc(id=i, text="x" * i) for i in range(1, 4)],
                           key=lambda d: str(d.id))
        platform.run_until_idle("store")
        assert platform.tables.table("docs").count() == 3
        row = platform.tables.table("docs").get("2")
        assert row is not None and row["size"] == 2
        assert platform.files.read_bytes(next(
            r for r in platform.files.list() if r.url == row["url"])) == b"xx"
        info = platform.streams.admin().describe_stream("index")
        assert info.retention == Retention(compact=True)
        assert platform.exceptions() == []
