"""Services and the file store: ``ctx.files`` with deterministic names, state too large for
a record kept in a file, and the claim-check for large outputs."""

from __future__ import annotations

import json

from pydantic import BaseModel

import millstream
from millstream._wellknown import CHECKPOINTS
from millstream.files import FileRef, open_files
from millstream.files._claimcheck import HEADER, ClaimCheck, claim_checked
from millstream.runtime import ServiceRunner
from millstream.runtime._state import INLINE_STATE_LIMIT, CheckpointStore
from millstream.service import App, Context, RetryPolicy
from tests.service.test_runtime import read_all, run_until, send_orders


class Upload(BaseModel):
    id: int
    size: int


class Stored(BaseModel):
    id: int
    ref: FileRef


def test_ctx_files_names_objects_per_input_record_so_a_retry_rewrites() -> None:
    app = App("media", partitions=2)
    attempts: dict[int, int] = {}

    @app.service(inputs={"uploads": Upload}, outputs={"stored": Stored},
                 retry=RetryPolicy(attempts=2, backoff=0.001))
    def store(upload: Upload, ctx: Context) -> Stored:
        ref = ctx.files.put("blob.bin", bytes([upload.id % 256]) * upload.size)
        attempts[upload.id] = attempts.get(upload.id, 0) + 1
        if upload.id == 4 and attempts[4] == 1:
            raise RuntimeError("fails after writing its object")
        return Stored(id=upload.id, ref=ref)

    files = open_files()
    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "store", streams, metrics_interval_s=60, files=files)
        runner.prepare()
        send_orders(streams, [Upload(id=i, size=1000 + i) for i in range(8)], stream="uploads")
        run_until(runner, lambda r: r.metrics.records_in >= 8)
        outputs = [Stored.model_validate_json(r.value or b"") for r in read_all(streams,
                                                                               "stored")]
    assert sorted(o.id for o in outputs) == list(range(8))
    objects = list(files.list("media.store/"))
    assert len(objects) == 8  # the retried record rewrote its object, no duplicate
    for out in outputs:
        assert out.ref in objects
        assert out.ref.size == 1000 + out.id
        assert files.read_bytes(out.ref) == bytes([out.id]) * (1000 + out.id)
        assert out.ref.url.endswith("/blob.bin")
        assert "/media.store/uploads/" in out.ref.url


def test_state_over_the_inline_limit_is_checkpointed_through_the_file_store() -> None:
    app = App("big", partitions=1)

    @app.service(inputs={"uploads": Upload}, stateful=True)
    def remember(upload: Upload, ctx: Context) -> None:
        ctx.state[str(upload.id)] = "x" * upload.size

    files = open_files()
    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "remember", streams, metrics_interval_s=60, files=files)
        runner.prepare()
        send_orders(streams, [Upload(id=i, size=100_000) for i in range(4)], stream="uploads")
        run_until(runner, lambda r: r.metrics.records_in >= 4)
        (record,) = [r for r in read_all(streams, CHECKPOINTS) if r.key == b"big.remember/0"]
        doc = json.loads(record.value or b"")
        assert doc["state"] is None and len(record.value or b"") < 2000
        ref = FileRef.model_validate(doc["state_ref"])
        assert ref.size > INLINE_STATE_LIMIT
        assert "big.remember/checkpoints/0/" in ref.url
        store = CheckpointStore(streams, "big.remember", files=files)
        store.refresh()
        latest = store.latest(0)
        assert latest is not None and latest.offsets == {"uploads": 4}
        assert sorted(latest.state) == ["0", "1", "2", "3"]
        assert all(v == "x" * 100_000 for v in latest.state.values())
        # a restarted service gets its state back from the file
        seen: list[int] = []

        @app.service("recall", inputs={"uploads": Upload}, stateful=True,
                     group="big.remember")
        def recall(upload: Upload, ctx: Context) -> None:
            seen.append(len(ctx.state))

        send_orders(streams, [Upload(id=9, size=1)], stream="uploads")
        again = ServiceRunner(app, "recall", streams, metrics_interval_s=60, files=files)
        run_until(again, lambda r: r.metrics.records_in >= 1)
        assert seen == [4]  # the four from the file


def test_claim_checked_outputs_travel_as_references() -> None:
    app = App("cc", partitions=1, claim_check_bytes=4096)

    @app.service(inputs={"uploads": Upload}, outputs={"blobs": bytes})
    def blob(upload: Upload) -> bytes:
        return bytes([upload.id]) * upload.size

    files = open_files()
    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "blob", streams, metrics_interval_s=60, files=files)
        runner.prepare()
        send_orders(streams, [Upload(id=1, size=100), Upload(id=2, size=2_000_000)],
                    stream="uploads")
        run_until(runner, lambda r: r.metrics.records_in >= 2)
        raw = read_all(streams, "blobs")
        assert [len(r.value or b"") < 1000 for r in raw] == [True, True]
        assert [dict(r.headers).get(HEADER) is not None for r in raw] == [False, True]
        with claim_checked(streams, ClaimCheck(files, threshold_bytes=4096)) as resolved:
            values = [r.value for r in read_all(resolved, "blobs")]
        assert values == [b"\x01" * 100, b"\x02" * 2_000_000]


def test_ctx_tables_and_a_shadow_writes_its_own_namespace() -> None:
    from millstream.tables import open_tables

    app = App("idx", partitions=1)

    @app.service(inputs={"uploads": Upload})
    def index(upload: Upload, ctx: Context) -> None:
        ctx.tables.ensure_table("sizes").put(str(upload.id), {"size": upload.size})

    with open_tables() as tables:
        with millstream.open_streams() as streams:
            runner = ServiceRunner(app, "index", streams, metrics_interval_s=60, tables=tables)
            runner.prepare()
            send_orders(streams, [Upload(id=i, size=10 * i) for i in range(5)], stream="uploads")
            run_until(runner, lambda r: r.metrics.records_in >= 5)
            shadow = ServiceRunner(app, "index", streams, metrics_interval_s=60, tables=tables,
                                   shadow="v2")
            run_until(shadow, lambda r: r.metrics.records_in >= 5)
        assert sorted(tables.list_tables()) == ["sizes", "sizes.shadow.v2"]
        for name in ("sizes", "sizes.shadow.v2"):
            table = tables.table(name)
            assert table.count() == 5
            assert table.get("3") == {"size": 30}
