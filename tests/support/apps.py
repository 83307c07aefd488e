"""A small app for service tests, importable by child processes as ``tests.support.apps:app``.

``MILLSTREAM_TEST_DELAY_MS`` slows every handler (so kills land mid-stream) and
``MILLSTREAM_TEST_TRACE=1`` makes the stateful service print ``seen <id>`` per record it
applies, for counting re-reads after a restart.
"""

from __future__ import annotations

import os
import sys
import time

from pydantic import BaseModel

from millstream.service import App, Context

_DELAY = float(os.environ.get("MILLSTREAM_TEST_DELAY_MS", "0")) / 1000
_TRACE = os.environ.get("MILLSTREAM_TEST_TRACE") == "1"


class Item(BaseModel):
    id: int
    n: int


class Doubled(BaseModel):
    id: int
    n: int


class Total(BaseModel):
    bucket: str
    total: int


app = App("testapp", partitions=2)


@app.service(inputs={"items": Item}, outputs={"doubled": Doubled}, max_batch=50)
def double(item: Item) -> Doubled:
    """Doubles n (at-least-once)."""
    if _DELAY:
        time.sleep(_DELAY)
    return Doubled(id=item.id, n=item.n * 2)


@app.service(inputs={"items": Item}, outputs={"doubled-eos": Doubled}, exactly_once=True,
             max_batch=50)
def double_eos(item: Item) -> Doubled:
    """Doubles n, exactly once."""
    if _DELAY:
        time.sleep(_DELAY)
    return Doubled(id=item.id, n=item.n * 2)


@app.service(inputs={"items": Item}, outputs={"totals": Total}, stateful=True, max_batch=20,
             checkpoint_records=100, checkpoint_interval=60.0)
def summer(item: Item, ctx: Context) -> Total:
    """Running totals per bucket (id mod 5), checkpointed every 100 records."""
    if _DELAY:
        time.sleep(_DELAY)
    bucket = str(item.id % 5)
    total = ctx.state.get(bucket, 0) + item.n
    ctx.state[bucket] = total
    if _TRACE:
        sys.stdout.write(f"seen {item.id}\n")
        sys.stdout.flush()
    return Total(bucket=bucket, total=total)
