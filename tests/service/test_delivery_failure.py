"""A service whose delivery fails (here: its output stream is deleted under it, so outputs it
sent are never stored) stops with the error and commits nothing more as it closes — in every
delivery mode, on the embedded log. Leaving the group runs the revocation callback: after a
failure it must not deliver, or the inputs of the lost outputs would be committed."""

from __future__ import annotations

import pytest

import millstream
from millstream.errors import MillstreamError
from millstream.runtime import ServiceRunner
from tests.service.test_delivery import MODES, N, billing_app
from tests.service.test_runtime import Order, run_until, send_orders


@pytest.mark.parametrize("mode", list(MODES))
def test_a_service_whose_outputs_were_not_stored_commits_nothing_more_as_it_closes(
        mode: str) -> None:
    app = billing_app(mode)
    with millstream.open_streams() as streams:
        admin = streams.admin()

        def committed() -> int:
            return sum(p.committed or 0 for p in admin.describe_group("hooks.bill").partitions
                       if p.stream == "orders")

        runner = ServiceRunner(app, "bill", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=i) for i in range(N)])
        deleted = False

        def until(r: ServiceRunner) -> bool:
            nonlocal deleted
            if not deleted and committed() >= N:
                # every order so far is committed with its invoice; the next invoices cannot
                # be stored
                admin.delete_stream("invoices")
                send_orders(streams, [Order(id=i, total=i) for i in range(N, 2 * N)])
                deleted = True
            return False

        with pytest.raises(MillstreamError) as failure:
            run_until(runner, until)
        assert deleted, failure.value
        assert runner.statistics().records_in > N  # it handled orders whose invoices failed
        assert committed() == N  # and committed none of them
