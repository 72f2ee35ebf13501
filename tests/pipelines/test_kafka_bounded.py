"""The connectors' other waits on librdkafka are bounded too (`kafka_bounded`): a
producer's check for a lost client, the rebuild of a lost consumer and the decision
sink's look at its topic never wait on a close that never ends. Stand-in clients play
librdkafka, as in test_kafka_source."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from clearline.pipelines.connectors import kafka_bounded, kafka_watch
from clearline.pipelines.connectors.decision_sink import DecisionWriter
from clearline.pipelines.connectors.kafka_watch import LOST_AFTER, WatchedConsumer, WatchedProducer
from tests.pipelines.test_kafka_source import TOPIC, Client, client, in_time, metadata  # noqa: F401  (the fixture)

NOBODY = "127.0.0.1:1"  # the stand-ins connect nowhere


class StrandedProducer:
    """A producer that reaches no broker."""

    def __init__(self, config: dict):
        pass

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "all brokers down"))


class HangingConsumer:
    """A consumer whose close never ends (until `Client.release`, at the end of the test)."""

    def __init__(self, config: dict):
        self.assigned: list[TopicPartition] = []

    def assign(self, assignment: list[TopicPartition]) -> None:
        self.assigned = assignment

    def close(self) -> None:
        Client.release.wait()


def test_a_lost_producer_is_told_without_waiting_on_the_new_clients_close(client, monkeypatch):
    monkeypatch.setattr(kafka_watch, "Producer", StrandedProducer)
    client.answers = [metadata(1)]  # the new client reaches the cluster; its close never ends
    assert in_time(WatchedProducer({"bootstrap.servers": NOBODY}).lost) is True


def test_a_new_client_that_does_not_answer_in_time_is_a_silent_cluster(client, monkeypatch, caplog):
    monkeypatch.setattr(kafka_watch, "Producer", StrandedProducer)
    monkeypatch.setattr(kafka_watch, "PROBE_S", 0.2)
    monkeypatch.setattr(kafka_bounded, "GRACE_S", 0.2)
    client.answers = [None]  # its request never returns
    with caplog.at_level(logging.WARNING, logger=kafka_bounded.__name__):
        assert in_time(WatchedProducer({"bootstrap.servers": NOBODY}).lost) is False
    assert "the metadata request did not return within 0.4 s: given up" in caplog.text


def test_a_lost_consumer_whose_close_never_ends_is_replaced_all_the_same(client, monkeypatch, caplog):
    monkeypatch.setattr(kafka_watch, "Consumer", HangingConsumer)
    monkeypatch.setattr(kafka_watch, "CLOSE_S", 0.2)
    watched = WatchedConsumer({"bootstrap.servers": NOBODY}, [TopicPartition(TOPIC, 0, 0)])
    old = watched.consumer
    watched.sight.blind = LOST_AFTER  # what LOST_AFTER blind reports leave behind
    with caplog.at_level(logging.WARNING, logger=kafka_bounded.__name__):
        assert in_time(lambda: watched.rebuild_if_lost(lambda: [TopicPartition(TOPIC, 0, 42)])) is True
    assert watched.consumer is not old and not watched.sight.lost
    assert [(tp.topic, tp.partition, tp.offset) for tp in watched.consumer.assigned] == [(TOPIC, 0, 42)]
    assert f"the close of the lost consumer of {TOPIC}[0]@42 did not return within 0.2 s: given up" in caplog.text


def test_the_decision_sink_reads_its_partitions_without_waiting_on_the_clients_close(client):
    client.answers = [metadata(3)]
    writer = DecisionWriter.__new__(DecisionWriter)  # the partitions alone: no journal, no producer
    writer.bootstrap, writer.topic = NOBODY, TOPIC
    assert in_time(writer._partitions) == [0, 1, 2]
