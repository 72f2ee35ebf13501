"""The reconciliation flow's sink: payments.variances, the variance store, and the Parquet
snapshots other processes read.

Per publication (one worker: the matcher's state is one key), in this order:

1. queued resolutions are applied to the store (`clearline.recon.variances.resolutions`);
2. new and changed variances the store does not already hold with the same facts are
   produced (key = merchant, else processor, else "platform"; idempotent producer) and
   flushed; withdrawn ones the store still has open are produced as withdrawals;
3. the store records every variance of the reconciliation (statuses kept, ages
   refreshed), resolves the ones an adjusting entry closed with a note naming the entry
   and its approver (`close_adjusted`), the ones a configured automatic fix clears with
   its rule's reason (`apply_autofix`), and the other withdrawn ones with a note;
4. `<state_dir>/published/` gets history.parquet and variances.parquet (the store, with
   statuses, and every change to them: the workbench's pages and the KPI page read
   these), pending.parquet and status.json, each written to a temporary name and renamed.

After a crash Bytewax resumes the matcher from its last snapshot and re-publishes what
it found since; step 2 compares with the store, so what reached the store is not sent
again. A crash between 2 and 3 can send a variance twice: the same id with the same
facts, which a consumer keeping the latest message per variance_id sees once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from clearline.pipelines.connectors.kafka_watch import WatchedProducer
from clearline.recon import (
    PUBLISHED_VARIANCES,
    AutofixRules,
    Publication,
    VarianceStore,
    apply_resolutions,
    autofix,
    facts_hash,
    publish_variances,
)
from clearline.recon import VARIANCE_SCHEMA as SCHEMA

WITHDRAWN_NOTE = "withdrawn by the matcher: the record it was missing arrived after its deadline"


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge every variance; the flow stops and resumes from its snapshot."""


def variance_message(row: dict, kind: str = "variance") -> tuple[bytes, bytes]:
    key = row.get("merchant_id") or row.get("processor") or "platform"
    body = {"message": kind, **{k: v.isoformat() if isinstance(v, (date, datetime)) else v for k, v in row.items()}}
    return key.encode(), json.dumps(body, separators=(",", ":")).encode()


def unseen(store: VarianceStore, variances: pl.DataFrame) -> pl.DataFrame:
    """The variances the store does not hold with these facts (age aside)."""
    if variances.is_empty():
        return variances
    known = (
        store.frame().select(list(SCHEMA)).cast(SCHEMA).filter(pl.col("variance_id").is_in(variances["variance_id"]))
    )
    same = set(zip(known["variance_id"], facts_hash(known)))
    fresh = [(vid, h) not in same for vid, h in zip(variances["variance_id"], facts_hash(variances))]
    return variances.filter(pl.Series(fresh, dtype=pl.Boolean))


def adjusted_note(entry: dict) -> str:
    """The resolution note of a variance an adjusting entry closed: the entry and who approved it."""
    at = entry["approved_at"].isoformat() if entry.get("approved_at") else "an unknown time"
    return (
        f"closed by adjusting entry {entry['event_id']} ({entry['kind']}, {entry['code']}), "
        f"approved by {entry['approved_by']} at {at}"
    )


def close_adjusted(store: VarianceStore, closed: pl.DataFrame) -> list[str]:
    """Resolve each variance an adjusting entry closed (`Result.closed`) with a note naming
    the entry and its approver, the entry's code, and the approver as the actor. A break
    closed before it was ever recorded is recorded first, so the store keeps it, resolved;
    one already resolved by this entry is left as it is (a re-run moves nothing). Returns
    the ids that moved."""
    if closed.is_empty():
        return []
    store.record(closed.select(list(SCHEMA)))
    moved = []
    for entry in closed.iter_rows(named=True):
        current = store.get(entry["variance_id"])
        if current["status"] == "resolved" and entry["event_id"] in (current["note"] or ""):
            continue
        store.move(entry["variance_id"], adjusted_note(entry), code=entry["code"], actor=entry["approved_by"])
        moved.append(entry["variance_id"])
    return moved


def apply_autofix(store: VarianceStore, rules: AutofixRules, gone: list[str] = (), on: date | None = None) -> list[str]:
    """Resolve what the automatic fixes of configs/recon.yaml clear, each with its rule's
    reason, code and actor "autofix": the first tier of escalation, no person involved.
    `gone` are the ids the matcher stopped finding at the day `on` (the stream's
    watermark); a batch run withdraws nothing, so there only the bank-fee rule applies.
    Returns the ids that moved."""
    rows = store.frame().filter(pl.col("status") != "resolved")
    if on is not None:
        rows = autofix.mark_cleared(rows, list(gone), on)
    fixes = autofix.autofix(rows, rules)
    for vid, _rule, reason in fixes.iter_rows():
        store.move(vid, reason, code=autofix.CODE, actor=autofix.CODE)
    return fixes["variance_id"].to_list()


def _replace(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class SinkSettings:
    state_dir: Path
    bootstrap: str
    topic: str
    delivery_timeout_s: float = 60
    autofix: AutofixRules = AutofixRules()


class VarianceWriter(StatelessSinkPartition[tuple[str, Publication]]):
    def __init__(self, settings: SinkSettings):
        self.settings = settings
        self._store: VarianceStore | None = None  # opened by the worker that gets the matcher's output
        self._producer: WatchedProducer | None = None
        self.published = (settings.state_dir / PUBLISHED_VARIANCES).parent

    @property
    def store(self) -> VarianceStore:
        if self._store is None:
            self._store = _open_waiting(self.settings.state_dir / "variances.duckdb")
        return self._store

    def write_batch(self, items: list[tuple[str, Publication]]) -> None:
        for _key, pub in items:
            applied = apply_resolutions(self.settings.state_dir, self.store)
            if pub.changes is not None:
                self._publish(pub)
            if pub.changes is not None or applied or not (self.published / "status.json").exists():
                self._snapshot(pub)

    def _publish(self, pub: Publication) -> None:
        changes = pub.changes
        send = unseen(self.store, pl.concat([changes.new, changes.changed]))
        open_gone = self.store.frame().filter(
            pl.col("variance_id").is_in(changes.gone) & (pl.col("status") != "resolved")
        )
        messages = [variance_message(r) for r in send.iter_rows(named=True)]
        messages += [variance_message({k: r[k] for k in SCHEMA}, "withdrawn") for r in open_gone.iter_rows(named=True)]
        self._produce(messages)
        self.store.record(changes.result.variances)
        close_adjusted(self.store, changes.result.closed)  # before withdraw: a closed break is not withdrawn
        apply_autofix(self.store, self.settings.autofix, changes.gone, pub.watermark and pub.watermark.date())
        self.store.withdraw(changes.gone, WITHDRAWN_NOTE)

    def _produce(self, messages: list[tuple[bytes, bytes]]) -> None:
        if not messages:
            return
        if self._producer is None:
            self._producer = WatchedProducer(
                {
                    "bootstrap.servers": self.settings.bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 20,
                    "message.timeout.ms": int(self.settings.delivery_timeout_s * 1000),
                }
            )
        errors: list[str] = []

        def delivered(err, _msg) -> None:
            if err is not None:
                errors.append(str(err))

        for key, value in messages:
            while True:
                try:
                    self._producer.produce(self.settings.topic, key=key, value=value, on_delivery=delivered)
                    break
                except BufferError:
                    self._producer.poll(0.05)
        remaining = self._producer.flush(self.settings.delivery_timeout_s)
        if errors or remaining:
            raise DeliveryError(
                f"{len(errors) + remaining} of {len(messages)} variance messages not acknowledged by "
                f"{self.settings.topic}: {'; '.join(sorted(set(errors))[:3]) or 'timed out'}"
            )

    def _snapshot(self, pub: Publication) -> None:
        self.published.mkdir(parents=True, exist_ok=True)
        publish_variances(self.settings.state_dir, self.store)  # the store and its history (workbench, KPIs)
        if pub.changes is not None:
            _replace(self.published / "pending.parquet", pub.changes.result.pending.write_parquet)
        status = {
            "watermark": pub.watermark.isoformat() if pub.watermark else None,
            **pub.counts,
            "published_at": datetime.now(timezone.utc).isoformat(),
        }
        _replace(self.published / "status.json", lambda p: p.write_text(json.dumps(status, indent=1)))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.settings.delivery_timeout_s)
        if self._store is not None:
            self._store.close()


class VarianceSink(DynamicSink[tuple[str, Publication]]):
    def __init__(self, settings: SinkSettings):
        self.settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> VarianceWriter:
        return VarianceWriter(self.settings)


def _open_waiting(path: Path, patience_s: float = 60.0) -> VarianceStore:
    """Open the store for the flow, waiting while a short command holds it.

    Until the flow has opened the store, `clearline recon resolve` or `recon list` may
    open it themselves for a moment (the store is not held yet, so they may); DuckDB then
    refuses the flow's open with a lock error. The flow waits for them rather than fail."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return VarianceStore(path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
