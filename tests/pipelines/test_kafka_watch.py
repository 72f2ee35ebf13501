"""A consumer whose client has forgotten every broker (librdkafka#5301) is noticed from its
statistics and built anew from its source's offsets: nothing skipped, nothing read twice;
a producer that reaches nothing while a new client reaches the broker hands what it holds
to a new client. An ordinary outage is not mistaken for either. Real broker, real
librdkafka statistics."""

from __future__ import annotations

import json
import logging
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clearline.pipelines.connectors.kafka_source import PartitionSource
from clearline.pipelines.connectors.kafka_watch import (
    LOST_AFTER,
    PROBE_S,
    BrokerSight,
    WatchedConsumer,
    WatchedProducer,
)
from clearline.pipelines.connectors.merged_source import MergedSource
from tests.pipelines.ledger_harness import free_ports
from tests.pipelines.test_merged_source import produce, topic  # noqa: F401  (the fixture)

pytestmark = pytest.mark.kafka


def reports(bootstrap: str, topic_name: str, count: int = 3) -> list[str]:
    """`count` statistics reports of a real consumer assigned to `topic_name`[0]."""
    got: list[str] = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "clearline-unused",
            "statistics.interval.ms": 200,
            "stats_cb": got.append,
        }
    )
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        consumer.consume(100, 0.1)
    consumer.close()
    assert len(got) >= count, "the client sent no statistics"
    return got


def test_a_connected_client_and_one_in_an_outage_both_know_their_brokers(kafka_bootstrap, topic):
    up, down = BrokerSight(), BrokerSight()
    for stats in reports(kafka_bootstrap, topic):
        up(stats)
    assert up.blind == 0 and not up.lost
    nobody = f"127.0.0.1:{free_ports(1)[0]}"  # no broker listens: the client keeps retrying the one it was given
    for stats in reports(nobody, topic):
        down(stats)
    assert down.blind == 0 and not down.lost


def test_reports_naming_no_real_broker_in_a_row_mean_lost(kafka_bootstrap, topic):
    """The lost client's report is a real report without its learned and configured
    brokers: only the group-coordinator handle is left."""
    real = json.loads(reports(kafka_bootstrap, topic)[-1])  # by the third report it has learned the cluster
    assert {b["source"] for b in real["brokers"].values()} >= {"learned"}
    blind = json.dumps({**real, "brokers": {k: b for k, b in real["brokers"].items() if b["source"] == "logical"}})
    sight = BrokerSight()
    for n in range(1, LOST_AFTER + 2):
        sight(blind)
        assert (sight.blind, sight.lost) == (n, n >= LOST_AFTER)
    sight(json.dumps(real))
    assert (sight.blind, sight.lost) == (0, False)


def _drain(part, seen: list[tuple[int, int]], until: int | None = None, deadline_s: float = 60) -> None:
    """Read `part` into (partition, offset) pairs until it ends or `until` are seen; fail
    in `deadline_s` if it stops moving (a stalled source must not spin until the suite's timeout)."""
    deadline = time.monotonic() + deadline_s
    try:
        while until is None or len(seen) < until:
            for batch in part.next_batch():
                seen += [(m.partition(), m.offset()) for m in batch]
            if time.monotonic() > deadline:
                pytest.fail(f"the source stalled after {len(seen)} messages (until {until})")
    except StopIteration:
        pass


def _read_each_partition(src: PartitionSource, read) -> list[tuple[int, int]]:
    """Build each of `src`'s partitions in turn, hand it to `read(part, p, seen)`, which meddles
    with its client behind the source's back and drains it into `seen`, then close it; returns
    the (partition, offset) pairs read. One at a time, so each partition's meddling is its own."""
    seen: list[tuple[int, int]] = []
    for p in src.list_parts():
        part = src.build_part("read", p, None)
        read(part, int(p), seen)
        part.close()
    return seen


@pytest.mark.parametrize("source", ["per partition", "merged"])
def test_a_lost_consumer_is_rebuilt_where_the_source_stood(kafka_bootstrap, topic, source, caplog):
    sent = produce(kafka_bootstrap, topic, seed=4)
    if source == "merged":
        parts = [MergedSource(kafka_bootstrap, topic, once=True, batch_size=50).build_part("read", "merged", None)]
    else:
        src = PartitionSource(kafka_bootstrap, topic, once=True, batch_size=50)
        parts = [src.build_part("read", p, None) for p in src.list_parts()]
    seen: list[tuple[int, int]] = []
    caplog.set_level(logging.WARNING, logger="clearline.pipelines.connectors.kafka_watch")
    for part in parts:
        _drain(part, seen, until=len(seen) + 60)  # partway: some read, some held or not fetched yet
        old = part._client.consumer
        part._client.sight.blind = LOST_AFTER  # what LOST_AFTER blind reports leave behind
        _drain(part, seen)
        assert part._client.consumer is not old, "the lost consumer was not replaced"
        part.close()
    assert len(seen) == len(sent) and len(set(seen)) == len(sent)  # each message once: no gap, no repeat
    if source == "per partition":  # (merged, a millisecond's messages go in event-time order)
        for p in range(4):
            offsets = [o for q, o in seen if q == p]
            assert offsets == list(range(len(offsets)))  # in order, from the first
    assert caplog.text.count("knows no broker any more") == len(parts)


@pytest.mark.parametrize("once", [True, False], ids=["once", "tail"])
def test_a_partition_whose_fetch_goes_quiet_is_fetched_again(kafka_bootstrap, topic, once, caplog):
    """librdkafka can stop fetching a partition without a word: no message and, in once
    mode, no end of partition (librdkafka#1435). Here each partition's fetch is stopped
    behind the source's back; after `STALL` with nothing read, the source asks the broker
    for the partition's end, finds itself short of it and fetches again: every message
    once, in order, and a once run still ends."""
    sent = produce(kafka_bootstrap, topic, seed=5)
    src = PartitionSource(kafka_bootstrap, topic, once=once, batch_size=50)
    caplog.set_level(logging.WARNING, logger="clearline.pipelines.connectors.kafka_watch")

    def stall_then_drain(part, p: int, seen: list[tuple[int, int]]) -> None:
        part._client.consumer.pause([TopicPartition(topic, p)])
        in_p = sum(1 for _, q, _ in sent if q == p)
        _drain(part, seen, until=None if once else len(seen) + in_p)

    seen = _read_each_partition(src, stall_then_drain)
    assert len(seen) == len(set(seen)) == len(sent)  # each once
    for p in range(4):
        assert [o for q, o in seen if q == p] == list(range(sum(1 for _, q, _ in sent if q == p)))  # in order
    assert caplog.text.count("fetching again") == 4, caplog.text


def test_a_partition_delivered_again_is_read_once(kafka_bootstrap, topic, caplog):
    """librdkafka can deliver messages again after a seek or a resume: here each
    partition is sought back to its start behind the source's back midway. Every message
    is read once, in order, and the source says what it dropped."""
    sent = produce(kafka_bootstrap, topic, seed=8)
    src = PartitionSource(kafka_bootstrap, topic, once=True, batch_size=20)
    caplog.set_level(logging.WARNING, logger="clearline.pipelines.connectors.kafka_source")

    def drain_across_a_seek_back(part, p: int, seen: list[tuple[int, int]]) -> None:
        _drain(part, seen, until=len(seen) + 40)
        part._client.consumer.seek(TopicPartition(topic, p, 0))
        _drain(part, seen)
        assert part.snapshot() == sum(1 for _, q, _ in sent if q == p)

    seen = _read_each_partition(src, drain_across_a_seek_back)
    for p in range(4):
        assert [o for q, o in seen if q == p] == list(range(sum(1 for _, q, _ in sent if q == p)))  # once, in order
    assert caplog.text.count("again") >= 4, caplog.text


def test_checks_back_off_while_the_broker_does_not_answer(topic, caplog):
    """Each check waits up to PROBE_S for an answer, holding the flow's worker: in an outage
    one check is made, then none until its back-off has passed, and the next backs off twice
    as long."""
    nobody = f"127.0.0.1:{free_ports(1)[0]}"
    client = WatchedConsumer({"bootstrap.servers": nobody, "group.id": "clearline-unused"}, [])
    caplog.set_level(logging.WARNING, logger="clearline.pipelines.connectors.kafka_watch")
    try:
        for partition in (0, 1, 2, 3, 0, 1):
            assert client.caught_up_or_refetch(topic, partition, 0) is None
        assert caplog.text.count("could not be checked") == 1 and "next check in 2 s" in caplog.text, caplog.text
        time.sleep(2 * PROBE_S + 0.2)
        assert client.caught_up_or_refetch(topic, 2, 0) is None
        assert caplog.text.count("could not be checked") == 2 and "next check in 4 s" in caplog.text, caplog.text
    finally:
        client.close()


def test_a_producer_is_lost_only_when_a_new_client_reaches_the_cluster_it_cannot(kafka_bootstrap):
    nobody = f"127.0.0.1:{free_ports(1)[0]}"
    assert not WatchedProducer({"bootstrap.servers": kafka_bootstrap}).lost()  # both answer
    assert not WatchedProducer({"bootstrap.servers": nobody}).lost()  # an outage: neither does
    stranded = WatchedProducer({"bootstrap.servers": kafka_bootstrap})
    stranded.producer = Producer({"bootstrap.servers": nobody})  # a client that reaches nothing
    assert stranded.lost()


def test_a_stalled_flush_hands_what_a_lost_client_holds_to_a_new_one(kafka_bootstrap, topic, caplog):
    """A client that reaches no broker holds 500 messages; the flush hands them to a new
    client: each delivered once, each callback once, no error."""
    producer = WatchedProducer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    producer.producer = Producer({"bootstrap.servers": f"127.0.0.1:{free_ports(1)[0]}"})
    reports: list[tuple[object, bytes]] = []
    sent = [f"m{i}".encode() for i in range(500)]
    for value in sent:
        producer.produce(
            topic, value, partition=int(value[1:]) % 4, on_delivery=lambda err, msg: reports.append((err, msg.value()))
        )
    caplog.set_level(logging.WARNING, logger="clearline.pipelines.connectors.kafka_watch")
    assert producer.flush(30) == 0
    assert [err for err, _ in reports] == [None] * len(sent)
    assert sorted(v for _, v in reports) == sorted(sent)
    assert "its 500 waiting message(s) went to a new one" in caplog.text, caplog.text
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "clearline-unused", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    got, ended = [], set()
    deadline = time.monotonic() + 30
    while len(ended) < 4 and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.5):
            if m.error() is None:
                got.append(m.value())
            else:
                ended.add(m.partition())
    consumer.close()
    assert sorted(got) == sorted(sent)  # on the topic once each
