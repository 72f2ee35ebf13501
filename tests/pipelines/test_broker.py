"""pipelines/broker.py against a real Kafka broker and real sockets, no mocks.

The `kafka` tests expect the broker `clearline kafka up` started (CI does so before
pytest); if none answers, the `broker` fixture starts it and leaves it running for the
tests that follow. The error-path tests run a private Clearline (copied configs with
free ports, an empty home) so they never touch the shared broker.
"""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from types import SimpleNamespace

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearline import config
from clearline.pipelines import broker
from tests.pipelines.ledger_harness import free_ports


@pytest.fixture(scope="module")
def bootstrap() -> str:
    """The bootstrap servers of a running broker, started here if none answers."""
    if not broker.status()["running"]:
        broker.up()
    return config.bootstrap_servers()


@pytest.fixture
def private(tmp_path, monkeypatch) -> SimpleNamespace:
    """A private Clearline: configs copied with free ports, an empty home, no override."""
    installed_libs = broker.home() / "libs"
    port, controller_port = free_ports(2)
    configs = tmp_path / "configs"
    shutil.copytree(config.config_dir(), configs)
    rewrite(configs / "broker.yaml", port=port, controller_port=controller_port)
    rewrite(configs / "topics.yaml", bootstrap_servers=f"127.0.0.1:{port}")
    monkeypatch.setenv("CLEARLINE_CONFIG_DIR", str(configs))
    monkeypatch.setenv("CLEARLINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    return SimpleNamespace(
        port=port, controller_port=controller_port, home=tmp_path / "home" / "kafka", installed_libs=installed_libs
    )


def rewrite(path, **changes) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.kafka
def test_status_reports_the_configured_topics_and_partitions(bootstrap):
    status = broker.status()
    assert status["running"] and status["bootstrap"] == bootstrap
    for name, spec in config.load("topics")["topics"].items():
        assert status["topics"][name] == spec["partitions"], name
    assert status["missing_topics"] == []
    assert json.loads(json.dumps(status)) == status


@pytest.mark.kafka
def test_up_again_is_harmless(bootstrap):
    before = broker.status()
    after = broker.up()
    assert after["pid"] == before["pid"]
    assert after["topics"] == before["topics"]
    assert broker.ensure_topics(bootstrap) == []


@pytest.mark.kafka
def test_produce_consume_round_trip_keeps_per_key_order(bootstrap):
    """Ten messages with one key land on one partition and come back in order.

    The topic is a throwaway one, so the pipeline's topics see no test traffic.
    """
    topic = f"clearline.test.{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(30)
    try:
        delivered = []
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for n in range(10):
            producer.produce(
                topic,
                key=b"merchant-42",
                value=f"event-{n}".encode(),
                on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())),
            )
        assert producer.flush(30) == 0
        assert [err for err, _, _ in delivered] == [None] * 10
        partitions = {partition for _, partition, _ in delivered}
        assert len(partitions) == 1
        partition = partitions.pop()

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, partition, min(offset for _, _, offset in delivered))])
        received = []
        try:
            for _ in range(60):
                message = consumer.poll(1.0)
                if message is not None:
                    assert message.error() is None
                    received.append((message.key(), message.value()))
                if len(received) == 10:
                    break
        finally:
            consumer.close()
        assert received == [(b"merchant-42", f"event-{n}".encode()) for n in range(10)]
    finally:
        admin.delete_topics([topic])[topic].result(30)


@pytest.mark.parametrize("which", ["port", "controller_port"])
def test_a_port_held_by_something_else_is_named(private, which):
    held = getattr(private, which)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", held))
        squatter.listen()
        with pytest.raises(broker.BrokerError, match=rf"\b{held}\b"):
            broker.up()
    assert not (private.home / "libs").exists()  # refused before downloading anything


def test_missing_java_is_reported(private, monkeypatch, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(broker.BrokerError, match="Java"):
        broker.install()


def test_a_broker_that_dies_while_starting_shows_its_log(private):
    """A data folder formatted for another node id makes Kafka exit at start-up."""
    if not (private.installed_libs / ".installed").is_file():
        pytest.skip("the broker's jars are not installed on this machine")
    (private.home / "data").mkdir(parents=True)
    (private.home / "libs").symlink_to(private.installed_libs)
    (private.home / "data" / "meta.properties").write_text(
        "version=1\ncluster.id=3KjTs97fSHa6qquK5UjP-Q\nnode.id=2\ndirectory.id=AGubMR8ar0zolUzy39FRfg\n"
    )
    with pytest.raises(broker.BrokerError, match="exited while starting") as raised:
        broker.up()
    assert "Stored node id 2 doesn't match previous node id 1" in str(raised.value)
    assert broker.status()["pid"] is None


@pytest.mark.kafka
def test_another_cluster_is_used_not_started(bootstrap, private, monkeypatch):
    """With KAFKA_BOOTSTRAP_SERVERS naming a cluster, `up` only ensures its topics."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    status = broker.up()
    assert status["running"] and not status["local"] and status["bootstrap"] == bootstrap
    assert not (private.home / "kafka.pid").exists()

    silent = f"127.0.0.1:{private.controller_port}"  # free, and not the local broker's address
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", silent)
    with pytest.raises(broker.BrokerError, match=silent):
        broker.up()


def test_a_cluster_id_drawn_with_a_leading_dash_is_drawn_again(private, monkeypatch):
    """One base64url id in 64 starts with "-", which the storage tool takes for an option (CI at b7446f5)."""
    if not (private.installed_libs / ".installed").is_file():
        pytest.skip("the broker's jars are not installed on this machine")
    (private.home).mkdir(parents=True)
    (private.home / "libs").symlink_to(private.installed_libs)
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x07" + bytes(15))])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    try:
        assert broker.up()["running"]
        meta = (private.home / "data" / "meta.properties").read_text()
        assert "cluster.id=B" in meta, meta  # the second draw's id: 0x07 encodes as "B"
    finally:
        broker.down()
    assert broker.status()["pid"] is None
