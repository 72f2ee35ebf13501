"""The merged source reads every partition of a topic with one consumer and hands messages
on in broker-timestamp order (ties: the event's own time), as lists; a snapshot's offsets
resume exactly after what was handed on. Real broker."""

from __future__ import annotations

import json
import random
import time
import uuid

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearline.pipelines.connectors.merged_source import MergedSource

pytestmark = pytest.mark.kafka


@pytest.fixture
def topic(kafka_bootstrap):
    name = f"test.merged.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(name, 4, 1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


def produce(bootstrap: str, topic: str, seed: int, n: int = 600) -> list[tuple[int, int, str]]:
    """n messages over 4 partitions, each partition's timestamps non-decreasing (as a
    producer's clock gives them), many sharing a millisecond; returns (ts, partition, id).
    Idempotent, as the project's producers are: without it a batch retried under load
    (the topic's leader not ready yet) lands after the next one, and a partition's
    timestamps go back (CI: a partition whose offset 0 was 585 ms newer than its next)."""
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    start = int(time.time() * 1000) - 3_600_000  # in the past: the broker refuses timestamps ahead of its clock
    clock = {p: start for p in range(4)}
    sent, errors = [], []
    for i in range(n):
        p = rng.randrange(4)
        clock[p] += rng.choice([0, 0, 1, 3, 40])
        body = json.dumps({"event_id": f"e{i}", "occurred_at": f"2026-01-01T00:00:{i % 60:02d}Z"}).encode()
        producer.produce(
            topic, body, partition=p, timestamp=clock[p], on_delivery=lambda err, _msg: err and errors.append(err.str())
        )
        sent.append((clock[p], p, f"e{i}"))
    assert producer.flush(30) == 0 and errors == []
    return sent


def read_all(bootstrap: str, topic: str) -> list[list]:
    batches: list[list] = []
    flow = Dataflow("merged_test")
    batch = op.input("read", flow, MergedSource(bootstrap, topic, once=True, batch_size=100))
    op.output(
        "out",
        op.map("ids", batch, lambda msgs: [(m.timestamp()[1], json.loads(m.value())["event_id"]) for m in msgs]),
        TestingSink(batches),
    )
    run_main(flow)
    return batches


@pytest.mark.parametrize("seed", [1, 2])
def test_every_message_once_in_timestamp_order_in_lists(kafka_bootstrap, topic, seed):
    sent = produce(kafka_bootstrap, topic, seed)
    batches = read_all(kafka_bootstrap, topic)
    got = [m for b in batches for m in b]
    assert sorted(e for _, e in got) == sorted(e for _, _, e in sent)  # each once
    assert [ts for ts, _ in got] == sorted(ts for ts, _ in got)  # merged by broker time
    assert len(batches) < len(got) / 5  # lists, not one item per message


def drain(part, seen: list[str], until: int | None = None, deadline_s: float = 120) -> None:
    """Hand on batches into `seen` until it holds `until` ids (None: until the source ends),
    failing with the source's state if it stops moving: a stalled source must fail in
    seconds, not spin until the suite's timeout."""
    deadline = time.monotonic() + deadline_s
    try:
        while until is None or len(seen) < until:
            for batch in part.next_batch():
                seen += [json.loads(m.value())["event_id"] for m in batch]
            if time.monotonic() > deadline:
                held = {p: len(h) for p, h in part._held.items()}
                pytest.fail(
                    f"stalled at {len(seen)} handed on: held {held}, ended {part._ended}, paused {part._paused}, "
                    f"offsets {part._offsets}"
                )
    except StopIteration:
        assert until is None, f"the source ended after {len(seen)} messages, before {until}"


def test_a_snapshot_resumes_right_after_what_was_handed_on(kafka_bootstrap, topic):
    sent = produce(kafka_bootstrap, topic, 3)
    source = MergedSource(kafka_bootstrap, topic, once=True, batch_size=50)
    first = source.build_part("read", "merged", None)
    seen: list[str] = []
    drain(first, seen, until=200)
    state = first.snapshot()
    first.close()
    handed = sum(max(offset, 0) for offset in state.values())  # a partition not handed from yet: from its start
    assert set(state) == {0, 1, 2, 3} and handed == len(seen)  # held-but-not-handed is not counted
    again = source.build_part("read", "merged", state)
    drain(again, seen)
    again.close()
    assert sorted(seen) == sorted(e for _, _, e in sent)


def test_a_partition_whose_fetch_goes_quiet_is_fetched_again(kafka_bootstrap, topic):
    """librdkafka can stop fetching a partition around a pause without saying so (no
    message, no end of partition: librdkafka#1435). Here one partition's fetch is stopped
    behind the source's back; the source finds it holding the limit back, asks the broker
    for its end and fetches it again, so every message is still handed on, in order."""
    sent = produce(kafka_bootstrap, topic, 4)
    part = MergedSource(kafka_bootstrap, topic, once=True, batch_size=50).build_part("read", "merged", None)
    part._client.consumer.pause([TopicPartition(topic, 2)])
    seen: list[str] = []
    drain(part, seen, deadline_s=60)
    part.close()
    assert sorted(seen) == sorted(e for _, _, e in sent)


def test_a_partition_whose_fetch_goes_quiet_while_it_holds_messages_is_fetched_again(kafka_bootstrap, topic):
    """As above, the fetch stopped midway, when the partition may hold messages of the
    limit's millisecond: those go out only once it reads on, so it is checked too."""
    sent = produce(kafka_bootstrap, topic, 5)
    part = MergedSource(kafka_bootstrap, topic, once=True, batch_size=5).build_part("read", "merged", None)
    seen: list[str] = []
    drain(part, seen, until=150)
    part._client.consumer.pause([TopicPartition(topic, p) for p in range(4)])
    part._paused = set()  # behind the source's back: it believes every partition fetches
    drain(part, seen, deadline_s=60)
    part.close()
    assert sorted(seen) == sorted(e for _, _, e in sent)


def test_messages_delivered_again_are_handed_on_once(kafka_bootstrap, topic):
    """librdkafka can deliver a partition's messages again after a seek or a resume (the
    stall check's refetch did, under load). Here every partition is sought back to its
    start behind the source's back midway: each message is still handed on once, in
    order, and the snapshot counts what was handed on."""
    sent = produce(kafka_bootstrap, topic, 7)
    part = MergedSource(kafka_bootstrap, topic, once=True, batch_size=50).build_part("read", "merged", None)
    seen: list[str] = []
    drain(part, seen, until=150)
    for p in range(4):
        part._client.consumer.resume([TopicPartition(topic, p)])
        part._client.consumer.seek(TopicPartition(topic, p, 0))
    part._paused = set()
    drain(part, seen, deadline_s=60)
    state = part.snapshot()
    part.close()
    at = {e: ts for ts, _, e in sent}
    assert sorted(seen) == sorted(at) and [at[e] for e in seen] == sorted(at.values())
    assert sum(state.values()) == len(sent)


def test_the_order_handed_on_is_the_same_whatever_the_polls_and_restarts(kafka_bootstrap, topic):
    """A replayed backlog must decide the same way every time, so its order may not depend
    on where polls and batches fall: a millisecond's messages are handed on together, in
    event-time order. Read whole with 500- and 25-message batches, and with 3-message
    batches (a partition whose held messages share one millisecond must read on past its
    batch) in three runs resumed from snapshots: one order, the (timestamp, event time)
    order. (The source before 2026-12-07 handed a millisecond on as polls split it.)"""
    sent = produce(kafka_bootstrap, topic, 6)
    source = {n: MergedSource(kafka_bootstrap, topic, once=True, batch_size=n) for n in (3, 25, 500)}

    def whole(batch_size: int) -> list[str]:
        seen: list[str] = []
        part = source[batch_size].build_part("read", "merged", None)
        drain(part, seen)
        part.close()
        return seen

    resumed: list[str] = []
    state = None
    for until in (137, 401, None):
        part = source[3].build_part("read", "merged", state)
        drain(part, resumed, until=until)
        state = part.snapshot()  # what was read but held is read again by the next run
        part.close()
    at = {e: (ts, f"2026-01-01T00:00:{int(e[1:]) % 60:02d}Z") for ts, _, e in sent}
    got = whole(500)
    assert sorted(got) == sorted(at) and [at[e] for e in got] == sorted(at.values())  # (timestamp, event time)
    assert whole(25) == got and resumed == got
