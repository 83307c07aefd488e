"""State sizes read from millstream.checkpoints: inline states, states in the file store,
tombstones, incremental and bounded reading."""

from __future__ import annotations

import json
from pathlib import Path

from millstream._wellknown import CHECKPOINTS
from millstream.console._checkpoints import PartitionState, StateSizes
from millstream.files import open_files
from millstream.runtime._state import CheckpointStore
from millstream.streams import open_streams


def test_state_sizes_are_the_newest_checkpoint_of_each_partition_of_each_group(
    tmp_path: Path,
) -> None:
    with open_streams(f"local:{tmp_path / 'log'}") as streams, \
            open_files((tmp_path / "files").as_uri()) as files:
        sizes = StateSizes()
        assert sizes.refresh(streams) == 0  # no checkpoints stream yet
        streams.admin().create_stream(CHECKPOINTS)
        shop = CheckpointStore(streams, "shop.revenue", files=files, inline_limit=40)
        other = CheckpointStore(streams, "shop.other")
        small = {"total": 12.5, "n": 3}
        big = {"customers": ["c" * 10] * 5}  # 80 bytes of JSON: over the 40-byte limit
        with streams.open_producer() as producer:
            shop.write(producer, 0, {"invoices": 3}, {"total": 1}, 1)
            shop.write(producer, 0, {"invoices": 5}, small, 2)  # newer, replaces the first
            shop.write(producer, 1, {"invoices": 9}, big, 4)
            other.write(producer, 0, {"x": 1}, {}, 0)
        assert sizes.refresh(streams) == 4
        found = sizes.of("shop.revenue")
        assert [(s.partition, s.bytes, s.keys, s.in_files) for s in found] == [
            (0, len(json.dumps(small, separators=(",", ":"))), 2, False),
            (1, len(json.dumps(big, separators=(",", ":"))), None, True),
        ]
        assert found[0].bytes == 20 and found[1].bytes == 80
        assert [(s.partition, s.bytes, s.keys) for s in sizes.of("shop.other")] == [(0, 2, 0)]
        assert sizes.of("shop.nobody") == []
        # only what is new is read; a tombstone drops the partition
        with streams.open_producer() as producer:
            producer.send(CHECKPOINTS, None, key=shop.key(1))
        assert sizes.refresh(streams) == 1
        assert [s.partition for s in sizes.of("shop.revenue")] == [0]
        assert sizes.refresh(streams) == 0


def test_a_refresh_reads_at_most_max_scan_records_and_says_it_is_behind(tmp_path: Path) -> None:
    with open_streams(f"local:{tmp_path / 'log'}") as streams:
        streams.admin().create_stream(CHECKPOINTS)
        store = CheckpointStore(streams, "g")
        with streams.open_producer() as producer:
            for n in range(5):
                store.write(producer, n, {"s": n}, {"k": "v" * n}, 1)
        sizes = StateSizes(max_scan=3)
        assert sizes.refresh(streams) == 3
        assert sizes.behind
        assert [s.partition for s in sizes.of("g")] == [0, 1, 2]
        assert sizes.refresh(streams) == 2
        assert not sizes.behind
        assert sizes.of("g")[4] == PartitionState(4, len('{"k":"vvvv"}'), 1,
                                                   sizes.of("g")[4].time_ms, False)
