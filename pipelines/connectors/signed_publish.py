"""Publishing one event a person caused (an approved adjusting entry, a held payout's
release) to the ledger's events topic, signed by its tenant like every other event and
keyed by merchant, and waiting until Kafka acknowledged it: the caller answers the person
only once the event is durable, or says it was not and may be retried (the events'
ids are derived from their content, so a retry is a duplicate, never a second event)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

from clearline import config, events
from clearline.pipelines.connectors.kafka_watch import WatchedProducer
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, sign

DELIVERY_TIMEOUT_S = 30


class PublishError(RuntimeError):
    """Kafka did not acknowledge the event; nothing was posted, the same action may be retried."""


_CONFIG_LOCK = threading.Lock()


@contextlib.contextmanager
def _configs(config_dir: Path | str | None) -> Iterator[None]:
    """Read configs from `config_dir` meanwhile (as the CLI's --config-dir does)."""
    if config_dir is None:
        yield
        return
    with _CONFIG_LOCK:
        before = os.environ.get("CLEARLINE_CONFIG_DIR")
        os.environ["CLEARLINE_CONFIG_DIR"] = str(config_dir)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("CLEARLINE_CONFIG_DIR", None)
            else:
                os.environ["CLEARLINE_CONFIG_DIR"] = before


def publish_signed(
    batch: list[events.Event], *, config_dir: Path | str | None = None, bootstrap: str | None = None
) -> None:
    """Produce each event, signed with its reseller's key, to the ledger's topic and wait
    for every acknowledgement; PublishError naming what Kafka did not take."""
    with _configs(config_dir):
        topic = str(config.load("ledger")["topic"])
        keys = TenantKeys.from_config()
        signed = [(e, events.encode(e), keys.key(e.reseller_id)) for e in batch]
        bootstrap = bootstrap or config.bootstrap_servers()
    producer = WatchedProducer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": DELIVERY_TIMEOUT_S * 1000,
        }
    )
    errors: list[str] = []
    for event, body, key in signed:
        producer.produce(
            topic,
            key=event.merchant_id.encode(),
            value=body,
            headers=[(TENANT_HEADER, event.reseller_id.encode()), (SIGNATURE_HEADER, sign(body, key).encode())],
            on_delivery=lambda err, _msg, eid=event.event_id: errors.append(f"{eid}: {err}") if err else None,
        )
    if producer.flush(DELIVERY_TIMEOUT_S + 5) or errors:
        ids = ", ".join(e.event_id for e in batch)
        raise PublishError(f"{ids} not acknowledged by {topic}: {'; '.join(errors) or 'timed out'}")
