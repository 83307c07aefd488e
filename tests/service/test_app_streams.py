"""``ensure_app_streams``: the one place an app's streams are made — exactly which streams,
with which partitions and retention, for a whole app, for some services, for a shadow."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

import millstream
from millstream import Retention
from millstream.runtime import ServiceRunner, ensure_app_streams
from millstream.service import App
from millstream.testing import TestPlatform

WEEK = Retention(max_age=7 * 24 * 3600)
COMPACTED = Retention(compact=True)
DAY = Retention(max_age=24 * 3600)


class Order(BaseModel):
    id: int


def make_app() -> App:
    app = App("shop", partitions=4)
    app.stream("orders", Order, partitions=6, retention=DAY)
    app.stream("totals", dict, retention=COMPACTED)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Order})
    def billing(order: Order) -> Order:
        return order

    @app.service(inputs={"invoices": Order, "millstream.metrics": dict}, outputs=["totals"])
    def report(value: object) -> None:
        return None

    return app


def layout(streams: millstream.Streams) -> dict[str, tuple[int, Retention]]:
    admin = streams.admin()
    return {name: (info.partition_count, info.retention)
            for name in admin.list_streams() for info in [admin.describe_stream(name)]}


FOREVER = Retention()
PLATFORM = {
    "millstream.metrics": (1, WEEK),
    "millstream.exceptions": (1, FOREVER),
    "millstream.checkpoints": (1, COMPACTED),
}


def test_an_apps_streams_are_made_with_their_declared_partitions_and_retention(
        tmp_path: Path) -> None:
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        made = ensure_app_streams(make_app(), streams)
        expected = {
            **PLATFORM,  # report reads millstream.metrics: still one partition, not the app's 4
            "orders": (6, DAY),
            "invoices": (4, FOREVER),
            "totals": (4, COMPACTED),
            "millstream.retry.shop.billing": (1, FOREVER),
            "millstream.retry.shop.report": (1, FOREVER),
        }
        assert layout(streams) == expected
        assert {n: (i.partition_count, i.retention) for n, i in made.items()} == expected
        assert list(made)[:3] == list(PLATFORM)


def test_a_services_streams_and_a_shadows_are_only_its_own(tmp_path: Path) -> None:
    app = make_app()
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        ensure_app_streams(app, streams, services=["billing"])
        assert layout(streams) == {**PLATFORM, "orders": (6, DAY), "invoices": (4, FOREVER),
                                   "millstream.retry.shop.billing": (1, FOREVER)}
        ensure_app_streams(app, streams, services=["report"], shadow="v2")
        assert set(layout(streams)) - {"orders", "invoices", *PLATFORM} == {
            "millstream.retry.shop.billing",
            "totals.shadow.v2", "millstream.retry.shop.report.shadow.v2"}
        assert layout(streams)["totals.shadow.v2"] == (4, COMPACTED)


def test_a_stream_that_exists_is_left_as_it_is(tmp_path: Path) -> None:
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        streams.admin().create_stream("orders", 2)
        made = ensure_app_streams(make_app(), streams)
        assert (made["orders"].partition_count, made["orders"].retention) == (2, FOREVER)
        assert streams.admin().describe_stream("orders").partition_count == 2


def test_an_unknown_service_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        with pytest.raises(millstream.InvalidRequestError, match="nope"):
            ensure_app_streams(make_app(), streams, services=["nope"])
        assert streams.admin().list_streams() == []


def test_the_runner_and_the_test_kit_make_the_same_streams(tmp_path: Path) -> None:
    app = make_app()
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        for service in app.services:
            ServiceRunner(app, service, streams).prepare()
        by_runners = layout(streams)
    with TestPlatform(app) as platform:
        assert layout(platform.streams) == by_runners
