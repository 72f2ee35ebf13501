"""The ledger flow's sink: one worker's store shard, archive, dead letters and snapshots.

Per batch, in this order, so that a crash anywhere loses and repeats nothing:

1. the store writes the batch in one transaction (postings, rejections, offsets) and,
   just before it commits, hands the events it newly posted to the archive, whose files
   are written then (a crash before the commit leaves orphans that start-up deletes:
   their offsets were never committed);
2. the store commits;
3. dead letters of the batch go to the dead-letter topic and are flushed; the store's
   version they cover is then recorded, and start-up re-sends anything after it (so the
   topic gets each dead letter at least once, identified by its origin offset);
4. the snapshot publisher is told, and the Prometheus metrics move.

State layout under `state_dir`:

    shards/shard-<worker>/ledger.duckdb    the store (this process alone opens it)
    shards/shard-<worker>/deadletters.sent the last store version forwarded to the DLQ
    snapshots/shard-<worker>/              Parquet snapshots other processes read
    archive/event_date=…/…parquet          the event archive (ledger/archive.py)
    recovery/part-*.sqlite3                Bytewax recovery
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from bytewax.outputs import StatelessSinkPartition

from clearline import config
from clearline.events import PLATFORM, Money
from clearline.ledger import (
    LedgerSettings,
    LedgerStore,
    Outcome,
    Posted,
    Rejected,
    SnapshotPublisher,
    Source,
    archive,
    capital,
    metrics,
)
from clearline.pipelines.connectors.kafka_watch import WatchedProducer

GENESIS_TOPIC = "genesis"
_MERCHANT = re.compile(rb'"merchant_id"\s*:\s*"([^"\\]{1,64})"')


def shard_paths(state_dir: Path, shard: int) -> dict[str, Path]:
    return {
        "store": state_dir / "shards" / f"shard-{shard}" / "ledger.duckdb",
        "sent": state_dir / "shards" / f"shard-{shard}" / "deadletters.sent",
        "snapshot": state_dir / "snapshots" / f"shard-{shard}",
        "archive": state_dir / "archive",
    }


def opening_balances() -> list[Posted]:
    """The platform's capital in each operating account, posted once before any event."""
    platform = config.load("platform")
    opened = datetime.combine(platform["opened_on"], datetime.min.time(), tzinfo=timezone.utc)
    return [
        Posted(
            Source(GENESIS_TOPIC, 0, i),
            f"genesis:capital:{ccy}",
            "ledger.opening",
            PLATFORM,
            opened,
            capital(Money(config.typed(spec, "opening_balance_minor", int), ccy)),
        )
        for i, (ccy, spec) in enumerate(sorted(platform["bank_accounts"].items()))
    ]


class LedgerWriter(StatelessSinkPartition[list[Outcome]]):
    def __init__(self, settings: LedgerSettings, shard: int):
        paths = shard_paths(settings.state_dir, shard)
        paths["store"].parent.mkdir(parents=True, exist_ok=True)
        self._paths = paths
        self._shard = shard
        # rows kept for the snapshot publisher: a few seconds of postings, so memory stays flat
        self._store = LedgerStore(paths["store"], keep_recent_rows=200_000)
        self._store.con.execute("SET memory_limit = ?", [settings.duckdb_memory_limit])
        self._store.con.execute("SET checkpoint_threshold = ?", [settings.duckdb_checkpoint_threshold])
        self._dlq_topic = settings.deadletter_topic
        self._producer = WatchedProducer(
            {"bootstrap.servers": settings.bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
        if shard == 0 and not self._store.resume().get((GENESIS_TOPIC, 0)):
            self._store.apply(opening_balances())
        archive.remove_uncommitted(
            paths["archive"], shard, {p: o for (t, p), o in self._store.resume().items() if t == settings.topic}
        )
        self._forward_unsent()
        self._publisher = SnapshotPublisher(
            self._store, paths["snapshot"], interval_s=settings.publish_interval_s
        ).start()
        metrics.observe_store(self._store)

    def write_batch(self, batches: list[list[Outcome]]) -> None:
        """Everything Bytewax collected since the last call (several poll batches, of any
        partitions) is one store transaction."""
        items = [o for batch in batches for o in batch]
        result = self._store.apply(items, before_commit=self._archive)
        if result.dead_letters:
            self._send_dead_letters(result.dead_letters, {o.source: o for o in items if isinstance(o, Rejected)})
        self._mark_sent(result.version)
        self._publisher.notify()
        metrics.observe_batch(result, self._store)

    def close(self) -> None:
        self._publisher.stop()
        self._producer.flush(30)
        self._store.close()

    # ------------------------------------------------------------------ helpers

    def _archive(self, fresh: list[Posted]) -> None:
        """The batch's newly posted events into the archive, inside the store's
        transaction: the store has classified them by its unique key, and the files
        exist before the offsets that cover them are committed."""
        archive.write_batch(self._paths["archive"], self._shard, [(o.event, o.source, o.body) for o in fresh])

    def _send_dead_letters(self, letters: list[Rejected], originals: dict[Source, Rejected]) -> None:
        for letter in letters:
            raw = letter.raw if letter.raw is not None else getattr(originals.get(letter.source), "raw", b"")
            key = _MERCHANT.search(raw or b"")
            self._producer.produce(
                self._dlq_topic,
                value=raw,
                key=key.group(1) if key else None,
                headers=[
                    ("origin-topic", letter.source.topic.encode()),
                    ("origin-partition", str(letter.source.partition).encode()),
                    ("origin-offset", str(letter.source.offset).encode()),
                    ("reason", letter.reason.encode()),
                    ("detail", letter.detail.encode()[:4000]),
                    ("event-id", (letter.event_id or "").encode()),
                ],
            )
        if self._producer.flush(60):
            raise RuntimeError(f"dead-letter topic {self._dlq_topic!r} did not acknowledge within 60 s")

    def _mark_sent(self, version: int) -> None:
        tmp = self._paths["sent"].with_suffix(".tmp")
        tmp.write_text(str(version))
        tmp.replace(self._paths["sent"])

    def _forward_unsent(self) -> None:
        """Re-send dead letters committed after the last recorded forward (a crash between
        commit and send); their raw bytes come from the store."""
        sent = int(self._paths["sent"].read_text()) if self._paths["sent"].exists() else 0
        letters = self._store.dead_letters_since(sent)
        if letters:
            self._send_dead_letters(letters, {})
        self._mark_sent(self._store.version)
