"""Producing a world through the real broker: every event delivered once, signed, keyed by
merchant, in order per merchant; failures counted, never hidden."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearline.pipelines.cli import main
from clearline.pipelines.connectors.produce import produce_world
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, verify

pytestmark = pytest.mark.kafka


@pytest.fixture
def topic(kafka_bootstrap):
    """A fresh 4-partition topic, deleted afterwards (auto-creation is off on the broker)."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    name = f"test.produce.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, 4, 1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


def _consume_all(bootstrap: str, topic: str, expected: int) -> list:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    out, idle = [], 0
    while len(out) < expected and idle < 20:
        batch = consumer.consume(10_000, timeout=0.5)
        idle = 0 if batch else idle + 1
        for msg in batch:
            assert msg.error() is None, msg.error()
            out.append(msg)
    consumer.close()
    return out


def test_world_is_delivered_signed_keyed_and_ordered(small_world, kafka_bootstrap, topic):
    world, manifest = small_world
    report = produce_world(world, topic=topic)
    assert (report.total, report.delivered, report.failed) == (manifest["events"],) * 2 + (0,)
    messages = _consume_all(kafka_bootstrap, topic, report.delivered)
    assert len(messages) == manifest["events"]
    keys = TenantKeys.from_config()
    bodies = (world / "events/events.jsonl").read_bytes().splitlines()
    position = {body: i for i, body in enumerate(bodies)}
    last_seen: dict[bytes, int] = {}
    for msg in messages:
        headers = dict(msg.headers())
        body = json.loads(msg.value())
        tenant = headers[TENANT_HEADER].decode()
        assert tenant == body["reseller_id"]
        assert verify(msg.value(), headers[SIGNATURE_HEADER], keys.key(tenant))
        assert msg.key().decode() == body["merchant_id"]
        # within one merchant (one key, one partition) the world's order is kept
        pos = position[msg.value()]
        assert pos > last_seen.get(msg.key(), -1)
        last_seen[msg.key()] = pos
    assert len({m.value() for m in messages}) == len(messages)


def test_rate_cap_is_respected(small_world, topic):
    world, _ = small_world
    report = produce_world(world, rate=1_000_000, topic=topic)
    assert report.failed == 0
    slow = produce_world(world, rate=20_000, topic=topic)
    assert slow.seconds >= slow.total / 20_000 * 0.95


def test_undeliverable_messages_are_counted_as_failed(small_world, monkeypatch):
    world, manifest = small_world
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens there
    report = produce_world(world, delivery_timeout_s=2)
    assert report.delivered == 0
    assert report.failed == manifest["events"]
    assert sum(report.errors.values()) == report.failed


def test_cli_names_a_missing_world(tmp_path):
    result = CliRunner().invoke(main, ["produce", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "holds no generated world" in result.output and "clearline generate" in result.output
