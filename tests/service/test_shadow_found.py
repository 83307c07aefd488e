"""A shadow found on the platform without its app (the console's way) is the one the app
declares, and diff and promote work from it; a bounded diff says it stopped early."""

from __future__ import annotations

import json

import millstream
from millstream._wellknown import DEPLOYMENTS
from millstream.operations._shadow import (
    ShadowTarget,
    diff_shadow,
    find_shadows,
    promote_shadow,
)
from millstream.runtime import ServiceRunner
from millstream.runtime._state import CheckpointStore
from tests.service.test_runtime import read_all, run_until, send_orders
from tests.service.test_shadow import Item, make


def test_a_shadow_found_without_the_app_diffs_and_promotes_as_the_app_says() -> None:
    v1, v2 = make(1), make(2)
    with millstream.open_streams() as streams:
        prod = ServiceRunner(v1, "scorer", streams, metrics_interval_s=60)
        prod.prepare()
        send_orders(streams, [Item(id=i, n=i) for i in range(30)], stream="items")
        run_until(prod, lambda r: r.metrics.records_in >= 30)
        shadow = ServiceRunner(v2, "scorer", streams, shadow="v2", metrics_interval_s=60)
        run_until(shadow, lambda r: r.metrics.records_in >= 30)

        (found,) = find_shadows(streams)
        assert found == ShadowTarget("scorer", "shop.scorer", "v2", ("items",), ("results",),
                                     "shop")
        declared = ShadowTarget.of_app(v2, "scorer", "v2")
        assert (declared.inputs, declared.outputs, declared.stateful) == (
            ("items",), ("results",), True)

        (result,) = diff_shadow(streams, found)
        assert (result.equal, result.differing, result.truncated) == (20, 10, False)
        assert dict(result.fields) == {"n": 9, "note": 10}
        # examples come in key order: ids 0, 12, 15, 18, 21 (id 3's key b"3" sorts after)
        assert [d.key for d in result.examples] == [b"0", b"12", b"15", b"18", b"21"]
        first = result.examples[1]
        assert (first.production, first.shadow, first.fields) == (
            {"id": 12, "n": 24, "note": ""}, {"id": 12, "n": 36, "note": "v2"}, ("n", "note"))

        (bounded,) = diff_shadow(streams, found, max_records=10)  # 5 of each of 2 partitions
        assert bounded.truncated
        assert (bounded.production_records, bounded.shadow_records) == (10, 10)

        record = promote_shadow(streams, found)
        assert record["to_group"] == "shop.scorer" and record["app"] == "shop"
        assert sum(record["offsets"]["items"].values()) == 30
        assert record["checkpoints"] == 2  # stateful not known: the shadow's are copied
        deployments = [json.loads(r.value or b"") for r in read_all(streams, DEPLOYMENTS)]
        assert [(d["service"], d["version"]) for d in deployments] == [("scorer", "v2")]
        store = CheckpointStore(streams, "shop.scorer")
        store.refresh()
        assert sum(store.latest(p).state["seen"] for p in (0, 1)) == 30  # type: ignore[union-attr]
