"""Services for the delivery-mode crash tests (``tests/service/test_delivery_crash.py``),
importable by child processes as ``tests.support.delivery_apps:app``.

Each handler prints ``seen <id>`` per record it applies. ``DELIVERY_DELAY_MS`` slows every
handler, ``DELIVERY_COMMIT_S`` sets the commit interval of ``copy`` and ``tally`` (a long
one: they commit only when partitions are revoked or they stop), and ``DELIVERY_FAIL_ID``
makes ``count`` fail on that item (no retries: it goes to the exceptions stream at once).
"""

from __future__ import annotations

import os
import sys
import time

from millstream.service import App, Context, RetryPolicy
from tests.support.apps import Item, Total

_DELAY = float(os.environ.get("DELIVERY_DELAY_MS", "0")) / 1000
_COMMIT_S = float(os.environ.get("DELIVERY_COMMIT_S", "0.2"))
_FAIL = os.environ.get("DELIVERY_FAIL_ID")

app = App("delivery", partitions=2)


def _seen(item: Item) -> None:
    if _DELAY:
        time.sleep(_DELAY)
    sys.stdout.write(f"seen {item.id}\n")
    sys.stdout.flush()


@app.service(inputs={"items": Item}, outputs={"copies": Item}, exactly_once=True,
             max_batch=5, commit_interval=_COMMIT_S)
def copy(item: Item) -> Item:
    """Copies each item, exactly once."""
    _seen(item)
    return item


@app.service(inputs={"items": Item}, outputs={"tallies": Item}, exactly_once=True,
             stateful=True, max_batch=5, commit_interval=_COMMIT_S)
def tally(item: Item, ctx: Context) -> Item:
    """Running totals per bucket (id mod 5), exactly once: each item with its bucket's total."""
    _seen(item)
    bucket = str(item.id % 5)
    ctx.state[bucket] = ctx.state.get(bucket, 0) + item.n
    return Item(id=item.id, n=ctx.state[bucket])


@app.service(inputs={"items": Item}, outputs={"counts": Total}, stateful=True, max_batch=10,
             checkpoint_records=10_000, checkpoint_interval=60.0,
             retry=RetryPolicy(attempts=1))
def count(item: Item, ctx: Context) -> Total:
    """Running totals per bucket (id mod 5); checkpointed only when it stops or is revoked."""
    if _FAIL is not None and item.id == int(_FAIL):
        raise ValueError(f"item {item.id} refused (DELIVERY_FAIL_ID)")
    _seen(item)
    bucket = str(item.id % 5)
    total = ctx.state.get(bucket, 0) + item.n
    ctx.state[bucket] = total
    return Total(bucket=bucket, total=total)
