"""A test kit for apps built on millstream: run their services in-process, on a throwaway
platform, with a clock the test controls.

``TestPlatform`` opens an embedded log in a temporary directory, creates the app's streams,
runs services in background threads with the real consumer-group, retry, commit and
checkpoint behaviour, and offers helpers to feed input and wait for output. ``ManualClock``
moves only when the test says (retry back-off costs no real time). ::

    from millstream.testing import TestPlatform

    from shop.app import Invoice, Order, app


    def test_billing_invoices_every_order() -> None:
        with TestPlatform(app) as platform:
            platform.send_many("orders", [Order(id=1, total=9.5), Order(id=2, total=3.0)],
                               key=lambda o: str(o.id))
            with platform.running("billing"):
                invoices = platform.wait_for("invoices", 2)
            assert sorted(invoices, key=lambda i: i.order_id) == [
                Invoice(order_id=1, amount=9.5), Invoice(order_id=2, amount=3.0)]
            assert platform.exceptions() == []

For one-shot tests, ``platform.run_until_idle("billing")`` runs the service until it has
processed everything and stops it; ``platform.state(service)`` then shows a stateful
service's checkpointed state, ``platform.metrics(service)`` its final metrics record.
"""

from __future__ import annotations

from millstream.testing._clock import DEFAULT_EPOCH, ManualClock
from millstream.testing._platform import TestPlatform
from millstream.testing._running import RunningService

__all__ = ["DEFAULT_EPOCH", "ManualClock", "RunningService", "TestPlatform"]
