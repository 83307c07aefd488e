"""The exceptions stream summed up for the console (console/_failures.py): summaries, facets,
filters, the bounded scan, one exception by id, and where replays went."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from millstream.console._failures import Filter, read_one, replayed_in, scan
from millstream.errors import NotFoundError
from millstream.operations._replay import list_exceptions, replay
from millstream.service import App
from millstream.testing import TestPlatform


class Order(BaseModel):
    id: int


app = App("shop", partitions=1)


@app.service(inputs={"orders": Order}, outputs={"done": Order})
def billing(order: Order) -> Order:
    if order.id % 2:
        raise KeyError(f"odd order {order.id}")
    if order.id == 4:
        raise ValueError("order 4 is refused")
    return order


def test_a_scan_sums_up_filters_and_counts_the_exceptions() -> None:
    with TestPlatform(app) as platform:
        assert scan(platform.streams) == scan(platform.streams, max_scan=1)  # none yet
        with pytest.raises(NotFoundError, match="no service has failed yet"):
            read_one(platform.streams, 0)
        platform.send_many("orders", [Order(id=i) for i in range(8)], key=lambda o: str(o.id))
        platform.run_until_idle("billing")

        found = scan(platform.streams)
        assert [(s.id, s.short_type, s.input) for s in found.summaries] == [
            (0, "KeyError", "orders[0]@1"), (1, "KeyError", "orders[0]@3"),
            (2, "ValueError", "orders[0]@4"), (3, "KeyError", "orders[0]@5"),
            (4, "KeyError", "orders[0]@7")]
        assert (found.total, found.older) == (5, 0)
        assert found.facets() == {"service": [("billing", 5)], "stage": [("handle", 5)],
                                  "type": [("builtins.KeyError", 4),
                                           ("builtins.ValueError", 1)]}
        assert [s.id for s in found.matching(Filter(error_type="builtins.ValueError"))] == [2]
        assert found.matching(Filter(service="shipping")) == []
        assert Filter("billing", "handle", "builtins.KeyError").query() == (
            "service=billing&stage=handle&type=builtins.KeyError")

        bounded = scan(platform.streams, max_scan=2)
        assert ([s.id for s in bounded.summaries], bounded.total, bounded.older) == (
            [3, 4], 5, 3)

        assert read_one(platform.streams, 2).message == "order 4 is refused"
        with pytest.raises(NotFoundError) as missing:
            read_one(platform.streams, 9)
        assert str(missing.value) == ("there is no exception 9: the exceptions stream holds "
                                      "ids 0 to 4")

        assert replayed_in(platform.streams, ["shop.billing"]) == {"shop.billing": {}}
        replay(platform.streams, list_exceptions(platform.streams, ids=[1, 3]))
        assert replayed_in(platform.streams, ["shop.billing", ""]) == {
            "shop.billing": {1: 0, 3: 1}}


def test_replays_read_only_the_newest_records_of_a_retry_stream_when_bounded() -> None:
    import millstream
    from millstream._wellknown import REPLAY_HEADER, retry_stream
    from millstream.operations._replay import replays

    with millstream.open_streams("local:") as streams:
        stream = retry_stream("shop.billing")
        streams.admin().ensure_stream(stream, partitions=1)
        with streams.open_producer() as producer:
            for ident in (7, 9, 11):
                producer.send(stream, b"{}", headers=((REPLAY_HEADER, str(ident).encode()),))
            producer.flush()
        assert replays(streams, "shop.billing") == {7: 0, 9: 1, 11: 2}
        assert replays(streams, "shop.billing", last=2) == {9: 1, 11: 2}
