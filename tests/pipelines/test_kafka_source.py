"""The flow's start-up asks the broker for a topic's partitions (`topic_partitions`) and
never waits on librdkafka without a bound: not for a client's close, which has no timeout,
nor for a request that does not return. A stand-in client plays librdkafka here."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ClusterMetadata, PartitionMetadata, TopicMetadata

from clearline.pipelines.connectors import kafka_bounded, kafka_source

TOPIC = "payments.events"
BOUND_S = 5.0  # far more than a bounded start-up step takes here


def metadata(partitions: int) -> ClusterMetadata:
    meta, found = ClusterMetadata(), TopicMetadata()
    found.topic, found.error = TOPIC, None
    found.partitions = {p: PartitionMetadata() for p in range(partitions)}
    meta.topics = {TOPIC: found}
    return meta


class Client:
    """Each new client gives the next of `answers`: metadata, a KafkaError raised, or (None)
    no answer ever; and is closed as a librdkafka client that hangs: its close never ends.
    (Until `release`, at the end of the test.)"""

    answers: list[ClusterMetadata | KafkaError | None] = []
    release = threading.Event()

    def __init__(self, config: dict):
        self.answer = Client.answers.pop(0)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        if self.answer is None:
            Client.release.wait()
        if isinstance(self.answer, KafkaError):
            raise KafkaException(self.answer)
        return self.answer

    def __del__(self) -> None:
        Client.release.wait()


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setattr(kafka_bounded, "AdminClient", Client)
    Client.release.clear()
    yield Client
    Client.release.set()  # the stranded closes end


def in_time(call):
    """`call()`'s result (or its exception, raised), failing if it takes more than `BOUND_S`."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = call()
        except Exception as exc:
            out["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BOUND_S)
    assert not worker.is_alive(), f"still waiting after {BOUND_S} s"
    if "error" in out:
        raise out["error"]
    return out["result"]


def test_a_close_that_never_ends_does_not_hold_start_up(client):
    client.answers = [metadata(4)]
    assert in_time(lambda: kafka_source.topic_partitions("127.0.0.1:1", TOPIC)) == [0, 1, 2, 3]


def test_after_a_failed_request_whose_close_never_ends_it_asks_again(client, caplog):
    client.answers = [KafkaError(KafkaError._TRANSPORT, "Broker transport failure"), metadata(2)]
    with caplog.at_level(logging.WARNING, logger=kafka_source.__name__):
        assert in_time(lambda: kafka_source.topic_partitions("127.0.0.1:1", TOPIC)) == [0, 1]
    assert "waiting for it" in caplog.text


def test_a_request_that_does_not_return_is_given_up_said_and_asked_again(client, monkeypatch, caplog):
    monkeypatch.setattr(kafka_source, "METADATA_S", 0.2)
    monkeypatch.setattr(kafka_bounded, "GRACE_S", 0.2)
    client.answers = [None, metadata(3)]
    with caplog.at_level(logging.WARNING, logger=kafka_source.__name__):
        assert in_time(lambda: kafka_source.topic_partitions("127.0.0.1:1", TOPIC)) == [0, 1, 2]
    assert "(the metadata request did not return within 0.4 s); waiting for it" in caplog.text


def test_past_its_wait_a_silent_broker_is_an_error(client, monkeypatch):
    monkeypatch.setattr(kafka_source, "METADATA_S", 0.2)
    monkeypatch.setattr(kafka_bounded, "GRACE_S", 0.2)
    client.answers = [None]
    with pytest.raises(RuntimeError, match=r"no Kafka broker answers at 127\.0\.0\.1:1 \(waited 0 s\)"):
        in_time(lambda: kafka_source.topic_partitions("127.0.0.1:1", TOPIC, wait_s=0))
