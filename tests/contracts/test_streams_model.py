"""Streams contract: random operation sequences against a model of the log (hypothesis).

The model is, per partition, the list of (key, value, headers) appended in order. After any
sequence of sends, batch sends, flushes, producer restarts, seeks and commits, reading a
partition from any offset gives exactly the model's suffix, with dense offsets.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from millstream import Headers, Producer, StreamPartition
from tests.support.backends import BackendUnderTest
from tests.support.waiting import wait_until

PARTITIONS = 3
keys = st.one_of(st.none(), st.binary(max_size=8))
values = st.one_of(st.none(), st.binary(max_size=64))
header_lists = st.lists(
    st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=5))), max_size=2,
).map(tuple)

Entry = tuple[bytes | None, bytes | None, Headers]


class LogModel(RuleBasedStateMachine):
    backend: BackendUnderTest

    def __init__(self) -> None:
        super().__init__()
        self.stream = self.backend.new_stream(partitions=PARTITIONS, prefix="model")
        self.streams = self.backend.open()
        self.producer: Producer = self.streams.open_producer()
        self.model: list[list[Entry]] = [[] for _ in range(PARTITIONS)]
        self.committed: dict[int, int] = {}
        self.group = self.backend.new_group()

    @initialize()
    def start(self) -> None:
        pass

    @rule(partition=st.integers(0, PARTITIONS - 1), key=keys, value=values, headers=header_lists)
    def send(self, partition: int, key: bytes | None, value: bytes | None,
             headers: Headers) -> None:
        pos = self.producer.send(self.stream, value, key=key, partition=partition,
                                 headers=headers).wait(30)
        assert pos == (self.stream, partition, len(self.model[partition]))
        self.model[partition].append((key, value, headers))

    @rule(partition=st.integers(0, PARTITIONS - 1), batch=st.lists(values, min_size=1,
                                                                    max_size=30))
    def send_batch(self, partition: int, batch: list[bytes | None]) -> None:
        start = len(self.model[partition])
        self.producer.send_batch(self.stream, batch, partition=partition)
        self.model[partition].extend((None, v, ()) for v in batch)
        if len(batch) % 2:
            self.producer.flush(30)
        else:
            self.restart_producer()
        assert self.end(partition) == start + len(batch)

    @rule()
    def restart_producer(self) -> None:
        self.producer.close()
        self.producer = self.streams.open_producer()

    def end(self, partition: int) -> int:
        info = self.streams.admin().describe_stream(self.stream)
        return info.partitions[partition].end

    @rule(partition=st.integers(0, PARTITIONS - 1), data=st.data())
    def read_from(self, partition: int, data: st.DataObject) -> None:
        self.producer.flush(30)
        entries = self.model[partition]
        start = data.draw(st.integers(0, len(entries)))
        sp = StreamPartition(self.stream, partition)
        with self.streams.open_consumer() as consumer:
            consumer.subscribe([self.stream])
            consumer.seek(sp, start)
            for other in range(PARTITIONS):
                if other != partition:
                    consumer.seek_to_end([StreamPartition(self.stream, other)])
            got = []
            deadline = time.monotonic() + 20
            while len(got) < len(entries) - start and time.monotonic() < deadline:
                got.extend(consumer.poll(1000, timeout=0.2))
            assert [r.offset for r in got] == list(range(start, len(entries)))
            assert [(r.key, r.value, r.headers) for r in got] == entries[start:]
            assert consumer.poll(10, timeout=0) == []

    @precondition(lambda self: any(self.model))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        self.producer.flush(30)
        partition = data.draw(st.sampled_from(
            [p for p in range(PARTITIONS) if self.model[p]]))
        offset = data.draw(st.integers(0, len(self.model[partition])))
        sp = StreamPartition(self.stream, partition)
        with self.streams.open_consumer(self.group) as consumer:
            consumer.subscribe([self.stream])
            wait_until(lambda: consumer.poll(1, timeout=0.1) is not None
                       and len(consumer.assignment()) == PARTITIONS,
                       self.backend.rebalance_s, "the consumer to be assigned every partition")
            consumer.commit({sp: offset})
            self.committed[partition] = offset
            expected = {StreamPartition(self.stream, p): self.committed.get(p)
                        for p in range(PARTITIONS)}
            assert consumer.committed(expected) == expected
        with self.streams.open_consumer(self.group) as resumed:
            # a fresh member starts every partition at the group's committed offset
            resumed.subscribe([self.stream])
            first: dict[int, int] = {}
            pending = {p for p, off in self.committed.items() if off < len(self.model[p])}

            def started() -> bool:
                for r in resumed.poll(100, timeout=0.1):
                    first.setdefault(r.partition, r.offset)
                return len(resumed.assignment()) == PARTITIONS and pending <= set(first)

            wait_until(started, self.backend.rebalance_s, "the resumed consumer to read")
            for p, off in self.committed.items():
                if p in pending:
                    assert first[p] == off
                else:
                    assert resumed.position(StreamPartition(self.stream, p)) == off

    @invariant()
    def ends_match_the_model(self) -> None:
        self.producer.flush(30)
        info = self.streams.admin().describe_stream(self.stream)
        assert [p.end for p in info.partitions] == [len(m) for m in self.model]
        assert all(p.start == 0 for p in info.partitions)

    def teardown(self) -> None:
        self.producer.close()


@pytest.mark.property  # a state machine: not a @given test, so marked by hand
def test_the_log_behaves_like_its_model(backend: BackendUnderTest) -> None:
    machine = type("Machine", (LogModel,), {"backend": backend})
    # a Kafka group join takes seconds, so fewer (equally long) sequences run there
    examples = 25 if backend.name == "local" else 5
    run_state_machine_as_test(
        machine, settings=settings(max_examples=examples, stateful_step_count=20, deadline=None))
