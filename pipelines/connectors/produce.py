"""`clearline produce`: publish a generated world's events to `payments.events`.

Each message is the exact JSON line from the world's `events.jsonl`, keyed by merchant_id
(so one merchant's events stay in order on one partition), signed with its tenant's key in
a header, and sent by the idempotent producer (acks=all, no duplicates on retry). Every
message is accounted for by its delivery report: delivered or failed, never assumed.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import polars as pl
from confluent_kafka import KafkaException

from clearline import config
from clearline.pipelines.connectors.kafka_watch import WatchedProducer
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, sign

EVENTS_TOPIC = "payments.events"


class WorldNotFound(FileNotFoundError):
    """The folder holds no generated world."""


@dataclass
class ProduceReport:
    topic: str
    total: int
    delivered: int = 0
    failed: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        rate = self.delivered / self.seconds if self.seconds else 0.0
        return {
            "topic": self.topic,
            "total": self.total,
            "delivered": self.delivered,
            "failed": self.failed,
            "errors": dict(self.errors),
            "seconds": round(self.seconds, 3),
            "events_per_second": round(rate),
        }


def _world_files(world: Path) -> tuple[Path, Path]:
    jsonl, table = world / "events/events.jsonl", world / "events/events.parquet"
    if not jsonl.exists() or not table.exists():
        raise WorldNotFound(
            f"{world} holds no generated world (expected {jsonl} and {table}); "
            f"run `clearline generate --out {world}` first"
        )
    return jsonl, table


def world_messages(world: Path) -> Iterator[tuple[bytes, str, str]]:
    """(body, merchant_id, tenant) per event, in the world's arrival order."""
    jsonl, table = _world_files(world)
    keys = pl.read_parquet(table, columns=["merchant_id", "reseller_id"])
    with open(jsonl, "rb") as fh:
        for body, merchant, tenant in zip(fh, keys["merchant_id"], keys["reseller_id"], strict=True):
            yield body.rstrip(b"\n"), merchant, tenant


def count_events(world: Path) -> int:
    return pl.scan_parquet(_world_files(world)[1]).select(pl.len()).collect().item()


def producer(delivery_timeout_s: float = 120) -> WatchedProducer:
    return WatchedProducer(
        {
            "bootstrap.servers": config.bootstrap_servers(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
        }
    )


def produce_world(
    world: Path,
    rate: float | None = None,
    topic: str | None = None,
    on_progress: Callable[[int], None] = lambda n: None,
    delivery_timeout_s: float = 120,
) -> ProduceReport:
    """Publish every event of `world`; `rate` caps messages per second. A message the
    broker has not acknowledged within `delivery_timeout_s` counts as failed. The topic
    is the deployment's events topic unless named."""
    topic = topic or config.topic(EVENTS_TOPIC)
    keys = TenantKeys.from_config()
    report = ProduceReport(topic, count_events(world))
    prod = producer(delivery_timeout_s)

    def delivered(err, _msg) -> None:
        if err is None:
            report.delivered += 1
        else:
            report.failed += 1
            report.errors[err.str()] += 1

    start = time.monotonic()
    for i, (body, merchant, tenant) in enumerate(world_messages(world), 1):
        headers = [(TENANT_HEADER, tenant.encode()), (SIGNATURE_HEADER, sign(body, keys.key(tenant)).encode())]
        _send(prod, topic, merchant.encode(), body, headers, delivered)
        if rate:
            ahead = i / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        if i % 5_000 == 0:
            prod.poll(0)
            on_progress(i)
    remaining = prod.flush(delivery_timeout_s + 5)
    if remaining:
        report.failed += remaining
        report.errors[f"no delivery report within {delivery_timeout_s + 5:g} s of the end"] += remaining
    on_progress(report.total)
    report.seconds = time.monotonic() - start
    return report


def _send(prod: WatchedProducer, topic: str, key: bytes, value: bytes, headers: list, callback) -> None:
    """Produce one message, waiting for room when the local queue is full."""
    while True:
        try:
            prod.produce(topic, value=value, key=key, headers=headers, on_delivery=callback)
            return
        except BufferError:
            prod.poll(0.05)
        except KafkaException as exc:  # e.g. unknown topic: report it, do not hide it
            callback(exc.args[0], None)
            return
