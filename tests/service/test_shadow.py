"""Side-by-side versions: a shadow v2 that really differs, ``millstream diff``, ``promote``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import millstream
from millstream._wellknown import DEPLOYMENTS
from millstream.cli.main import cli
from millstream.errors import InvalidRequestError
from millstream.operations._shadow import diff_outputs, promote
from millstream.runtime import ServiceRunner
from millstream.runtime._state import CheckpointStore
from millstream.service import App, Context
from tests.service.test_runtime import read_all, run_until, send_orders


class Item(BaseModel):
    id: int
    n: int


class Result(BaseModel):
    id: int
    n: int
    note: str = ""


def make(version: int) -> App:
    app = App("shop", partitions=2)

    @app.service(inputs={"items": Item}, outputs={"results": Result}, stateful=True)
    def scorer(item: Item, ctx: Context) -> Result:
        ctx.state["seen"] = ctx.state.get("seen", 0) + 1
        if version == 2 and item.id % 3 == 0:
            return Result(id=item.id, n=item.n * 3, note="v2")  # a real change
        return Result(id=item.id, n=item.n * 2)

    return app


def count(streams: millstream.Streams, stream: str) -> int:
    return streams.admin().describe_stream(stream).records


def test_shadow_is_isolated_diff_finds_the_change_and_promote_hands_over() -> None:
    v1, v2 = make(1), make(2)
    with millstream.open_streams() as streams:
        prod = ServiceRunner(v1, "scorer", streams, metrics_interval_s=60)
        prod.prepare()
        send_orders(streams, [Item(id=i, n=i) for i in range(30)], stream="items")
        run_until(prod, lambda r: r.metrics.records_in >= 30)
        shadow = ServiceRunner(v2, "scorer", streams, shadow="v2", metrics_interval_s=60)
        assert shadow.group == "shop.scorer.shadow.v2"
        run_until(shadow, lambda r: r.metrics.records_in >= 30)
        # production's output untouched by the shadow; the shadow's in its own stream
        assert count(streams, "results") == 30
        assert count(streams, "results.shadow.v2") == 30

        (result,) = diff_outputs(streams, v2, "scorer", "v2")
        assert (result.equal, result.differing) == (20, 10)
        assert (result.only_production, result.only_shadow) == (0, 0)
        assert dict(result.fields) == {"n": 9, "note": 10}  # id 0: 0 * 3 == 0 * 2
        example = result.examples[0]
        assert example.shadow["n"] == 3 * example.production["n"] // 2

    cli_diff = CliRunner().invoke(cli, ["diff", "tests.service.test_shadow:V2", "scorer",
                                        "--shadow", "v2"])
    assert cli_diff.exit_code == 1, cli_diff.output
    assert "note (10), n (9)" in cli_diff.output and "outputs differ" in cli_diff.output

    with millstream.open_streams() as streams:
        record = promote(streams, v2, "scorer", "v2")
        assert sum(record["offsets"]["items"].values()) == 30
        assert record["checkpoints"] == 2
        deployments = [json.loads(r.value or b"") for r in read_all(streams, DEPLOYMENTS)]
        assert [d["version"] for d in deployments] == ["v2"]
        # production state is now the shadow's (copied checkpoints)
        store = CheckpointStore(streams, "shop.scorer")
        store.refresh()
        assert sum(store.latest(p).state["seen"] for p in (0, 1)) == 30  # type: ignore[union-attr]

        # v2 now runs as production: it continues after the shadow's offsets
        send_orders(streams, [Item(id=i, n=i) for i in range(30, 36)], stream="items")
        now_prod = ServiceRunner(v2, "scorer", streams, metrics_interval_s=60)
        run_until(now_prod, lambda r: r.metrics.records_in >= 6)
        assert now_prod.statistics().records_in == 6  # nothing processed twice
        new = [Result.model_validate_json(r.value or b"") for r in read_all(streams, "results")
               if Result.model_validate_json(r.value or b"").id >= 30]
        assert sorted((r.id, r.n, r.note) for r in new) == [
            (i, i * 3 if i % 3 == 0 else i * 2, "v2" if i % 3 == 0 else "") for i in
            range(30, 36)]


def test_identical_shadow_and_refusals() -> None:
    v1 = make(1)
    with millstream.open_streams() as streams:
        prod = ServiceRunner(v1, "scorer", streams, metrics_interval_s=60)
        prod.prepare()
        send_orders(streams, [Item(id=i, n=i) for i in range(8)], stream="items")
        run_until(prod, lambda r: r.metrics.records_in >= 8)
        shadow = ServiceRunner(v1, "scorer", streams, shadow="same", metrics_interval_s=60)
        run_until(shadow, lambda r: r.metrics.records_in >= 8)
        (result,) = diff_outputs(streams, v1, "scorer", "same")
        assert result.identical and result.equal == 8
        with streams.open_consumer("shop.scorer") as live:
            live.subscribe(["items"])
            with pytest.raises(InvalidRequestError, match="1 live member"):
                promote(streams, v1, "scorer", "same")
    missing = CliRunner().invoke(cli, ["diff", "tests.service.test_shadow:V2", "scorer",
                                       "--shadow", "nope"])
    assert missing.exit_code == 1
    assert "there is no 'results.shadow.nope': run the shadow first" in missing.output
    same = CliRunner().invoke(cli, ["diff", "tests.service.test_shadow:V2", "scorer",
                                    "--shadow", "same"])
    assert same.exit_code == 0 and "outputs are identical" in same.output


V2 = make(2)
