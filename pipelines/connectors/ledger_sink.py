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

A dead letter's value is what the store kept of the refused message: card numbers masked,
at most `KEPT_BYTES` of it; its headers say the whole's length and SHA-256 and whether the
value is cut. A letter the broker refuses for good (too large for the topic, say, or an
invalid record) is sent once more cut to `FALLBACK_BYTES`, since a refused batch refuses
its small letters with its large one; refused again, the refusal is recorded in
`deadletters.refused` (one JSON line each) and counted, and the flow moves on: the store
still holds the message as dead-lettered, and no restart sends it again. Only errors that
may pass (a broker away) stop the flow, so that the restart re-sends.

State layout under `state_dir`:

    shards/shard-<worker>/ledger.duckdb    the store (this process alone opens it)
    shards/shard-<worker>/deadletters.sent the last store version forwarded to the DLQ
    shards/shard-<worker>/deadletters.refused letters the broker refused for good (JSON lines)
    snapshots/shard-<worker>/              Parquet snapshots other processes read
    archive/event_date=…/…parquet          the event archive (ledger/archive.py)
    recovery/part-*.sqlite3                Bytewax recovery
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from bytewax.outputs import StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException

from clearline import config
from clearline.admission import KEPT_BYTES
from clearline.events import PLATFORM, Money, mask_pans, masked_text
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

log = logging.getLogger(__name__)

GENESIS_TOPIC = "genesis"
_MERCHANT = re.compile(rb'"merchant_id"\s*:\s*"([^"\\]{1,64})"')
FALLBACK_BYTES = 1024  # a refused letter's second try: this much of its value
DETAIL_CHARS, FALLBACK_DETAIL_CHARS = 1000, 200
# The broker's (or the client's) word that this record will never be accepted as it is.
REFUSED_FOR_GOOD = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.POLICY_VIOLATION,
        KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG,
    }
)


@dataclass(frozen=True)
class Letter:
    """One dead letter as produced: value, key and headers (all masked), and what it is of."""

    origin: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(
    letter: Rejected, raw: bytes | None, *, value_bytes: int = KEPT_BYTES, detail_chars: int = DETAIL_CHARS
) -> Letter:
    """The dead-letter message for a rejection: `raw` (what the store kept) cut to
    `value_bytes` and masked (again: a store older than masking kept some bytes whole),
    keyed by the merchant_id it names, with headers saying where it was read, why it was
    refused, and the length and SHA-256 of the whole."""
    raw = raw or b""
    length = letter.length if letter.length is not None else len(raw)
    digest = letter.sha256 if letter.sha256 is not None else hashlib.sha256(raw).hexdigest()
    value = mask_pans(raw[:value_bytes])
    key = _MERCHANT.search(value)
    s = letter.source
    return Letter(
        f"{s.topic}[{s.partition}]@{s.offset}",
        value,
        key.group(1) if key else None,
        [
            ("origin-topic", s.topic.encode()),
            ("origin-partition", str(s.partition).encode()),
            ("origin-offset", str(s.offset).encode()),
            ("reason", masked_text(letter.reason, 200).encode()),
            ("detail", masked_text(letter.detail, detail_chars).encode()),
            ("event-id", (letter.event_id or "").encode()),
            ("value-length", str(length).encode()),
            ("value-sha256", digest.encode()),
            ("truncated", b"true" if len(value) < length else b"false"),
        ],
    )


def shard_paths(state_dir: Path, shard: int) -> dict[str, Path]:
    return {
        "store": state_dir / "shards" / f"shard-{shard}" / "ledger.duckdb",
        "sent": state_dir / "shards" / f"shard-{shard}" / "deadletters.sent",
        "refused": state_dir / "shards" / f"shard-{shard}" / "deadletters.refused",
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
        self._store.con.execute("SET threads = ?", [settings.duckdb_threads])
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
        """Send every letter; one refused for good is tried once more, cut short, and if
        refused again recorded in `deadletters.refused` and counted."""
        first = []
        for letter in letters:
            original = originals.get(letter.source)
            if letter.raw is None and original is not None:  # the store made it; the flow holds the bytes
                letter = replace(letter, raw=original.raw, length=original.length, sha256=original.sha256)
            first.append((letter, dead_letter(letter, letter.raw)))
        refused = self._produce_all(first)
        if refused:
            again = [
                (
                    letter,
                    dead_letter(letter, letter.raw, value_bytes=FALLBACK_BYTES, detail_chars=FALLBACK_DETAIL_CHARS),
                )
                for letter, _, _ in refused
            ]
            for letter, message, error in self._produce_all(again):
                self._record_refusal(letter, message, error)

    def _produce_all(self, messages: list[tuple[Rejected, Letter]]) -> list[tuple[Rejected, Letter, str]]:
        """Produce and flush; the ones refused for good, with the broker's words. Any other
        failure raises: it may pass, and the restart sends the letters again."""
        refused: list[tuple[Rejected, Letter, str]] = []
        failed: list[str] = []

        def report(letter: Rejected, message: Letter):
            def delivered(err, _msg) -> None:
                if err is None:
                    return
                if err.code() in REFUSED_FOR_GOOD:
                    refused.append((letter, message, err.str()))
                else:
                    failed.append(f"{message.origin}: {err.str()}")

            return delivered

        for letter, message in messages:
            while True:
                try:
                    self._producer.produce(
                        self._dlq_topic,
                        value=message.value,
                        key=message.key,
                        headers=message.headers,
                        on_delivery=report(letter, message),
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    if exc.args[0].code() not in REFUSED_FOR_GOOD:
                        raise
                    refused.append((letter, message, exc.args[0].str()))
                    break
        if self._producer.flush(60):
            raise RuntimeError(f"dead-letter topic {self._dlq_topic!r} did not acknowledge within 60 s")
        if failed:
            raise RuntimeError(
                f"dead-letter topic {self._dlq_topic!r} failed {len(failed)} letter(s), e.g. {failed[0]}; "
                "they are sent again when the flow restarts"
            )
        return refused

    def _record_refusal(self, letter: Rejected, message: Letter, error: str) -> None:
        entry = {
            "origin": message.origin,
            "reason": letter.reason,
            "event_id": letter.event_id,
            "length": int(dict(message.headers)["value-length"]),
            "sha256": dict(message.headers)["value-sha256"].decode(),
            "error": error,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with open(self._paths["refused"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        metrics.DEADLETTERS_REFUSED.inc()
        log.warning(
            "ledger: the dead-letter topic %r refused the letter of %s twice (%s); recorded in %s, not sent again",
            self._dlq_topic,
            message.origin,
            error,
            self._paths["refused"],
        )

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
