"""Async services for the kill tests (``tests/service/test_async_crash.py``), importable by child
processes as ``tests.support.async_apps:app``.

``ASYNC_SUFFIX`` names the streams (``items-<suffix>``, ``fetched-<suffix>``: a fresh pair per
test on a shared Kafka), ``ASYNC_CONCURRENCY`` sets ``concurrency``. Each handler prints
``start <partition> <offset> <id>`` when it begins and ``end <partition> <offset> <id>`` just
before it returns, and awaits 20 ms — 1 s for every item whose id is 5 mod 37, so finished
records pile up behind unfinished ones on their partition.
"""

from __future__ import annotations

import asyncio
import os
import sys

from millstream.service import App, Context
from tests.support.apps import Item

SUFFIX = os.environ.get("ASYNC_SUFFIX", "0")
CONCURRENCY = int(os.environ.get("ASYNC_CONCURRENCY", "8"))
ITEMS, FETCHED, EXACT = f"items-{SUFFIX}", f"fetched-{SUFFIX}", f"exact-{SUFFIX}"

app = App(f"async{SUFFIX}", partitions=2)


async def _fetch(item: Item, ctx: Context) -> Item:
    where = f"{ctx.record.partition} {ctx.record.offset} {item.id}"
    sys.stdout.write(f"start {where}\n")
    sys.stdout.flush()
    await asyncio.sleep(1.0 if item.id % 37 == 5 else 0.02)
    sys.stdout.write(f"end {where}\n")
    sys.stdout.flush()
    return Item(id=item.id, n=item.n * 2)


@app.service(inputs={ITEMS: Item}, outputs={FETCHED: Item}, concurrency=CONCURRENCY,
             commit_interval=0.05)
async def fetch(item: Item, ctx: Context) -> Item:
    """At least once: outputs flushed, then the offsets below the lowest unfinished record."""
    return await _fetch(item, ctx)


@app.service(inputs={ITEMS: Item}, outputs={EXACT: Item}, concurrency=CONCURRENCY,
             exactly_once=True, commit_interval=0.05)
async def exact(item: Item, ctx: Context) -> Item:
    """Exactly once: outputs and offsets of the finished records in one transaction."""
    return await _fetch(item, ctx)
