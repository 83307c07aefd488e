"""The ops page's rows (``videosite.web.ops.rows``) from the health model: each cell as the
page and ``GET /api/ops`` show it, the health word the console's."""

from __future__ import annotations

from millstream.observe import InstanceView
from millstream.observe._health import service_view
from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics_record import Counters
from videosite.web.ops import NUMBERS, rows


def instance(name: str, status: str, *, errors: int = 0, records_in: int = 0) -> InstanceView:
    return InstanceView(
        app="videosite", service="transcode", group="videosite.transcode", instance=name,
        version="1", run=f"run-{name}", time_ms=10_000, interval_ms=2_000,
        status=status,  # type: ignore[arg-type]
        interval=Counters(records_in=records_in, errors=errors),
        totals=Counters(records_in=40 + records_in), lag={"uploads/0": 3, "uploads/1": 4},
        assigned=("uploads/0", "uploads/1"), histogram=Histogram())


def test_a_row_says_each_cell_and_the_health_the_console_gives() -> None:
    [running] = rows([service_view([instance("a", "running", records_in=5),
                                    instance("b", "stopped")])])
    assert running == {"name": "transcode", "page": "services/videosite.transcode",
                       "status": "running", "instances": "1/2", "in_s": "2.5",
                       "p50_ms": "–", "p99_ms": "–", "errors": "0", "exceptions": "0",
                       "lag": "7", "total_in": "85"}
    assert set(running) == {"name", "page", "status", *NUMBERS}
    # errors in the latest interval of an instance that is up: erroring, as on the console
    [erroring] = rows([service_view([instance("a", "running", errors=2)])])
    assert (erroring["status"], erroring["errors"]) == ("erroring", "2")
    [stopped] = rows([service_view([instance("a", "stopped", errors=2)])])
    assert (stopped["status"], stopped["instances"]) == ("stopped", "0/1")
