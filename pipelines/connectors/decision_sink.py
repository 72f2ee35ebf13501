"""The risk flow's sinks: decisions to payments.decisions and the decision log, late
events to the late-event log — each exactly once per request, across crashes and replays.

Per batch of decisions (one worker), in this order:

1. the journal inserts the batch under the unique event_id and commits; what it already
   had (a replay since the last Bytewax snapshot) is dropped here, so it is never
   logged or sent twice;
2. the new decisions' log file is written, then marked logged;
3. they are produced (key = merchant_id, idempotent producer) and flushed, then marked
   sent, and the next offset after them in each partition is recorded.

A crash after 1 leaves entries not logged or not sent. At start the writer logs the
unlogged ones, and for the unsent ones reads the decisions topic from the recorded
offsets to its end: whatever a decision id is already there reached the topic before
the crash and is not sent again; the rest are. So the topic, like the log, gets each
decision once.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Consumer, TopicPartition

from clearline.features import LateEvent
from clearline.models import FEATURES_UNAVAILABLE, Decision, Entry, Journal
from clearline.pipelines.connectors.kafka_bounded import metadata
from clearline.pipelines.connectors.kafka_watch import WatchedProducer

DECISION_ID_HEADER = "decision-id"
_TS = pl.Datetime("us", "UTC")

DECISION_LOG = {
    "decision_id": pl.String(),
    "event_id": pl.String(),
    "order_id": pl.String(),
    "buyer_id": pl.String(),
    "merchant_id": pl.String(),
    "decision_time": _TS,
    "decision": pl.String(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "credit_limit_minor": pl.Int64(),
    "model_name": pl.String(),
    "model_version": pl.String(),
    "score": pl.Float64(),
    "band": pl.String(),
    "policy_reasons": pl.String(),
    "features_unavailable": pl.Boolean(),
    "kill_switch": pl.Boolean(),
    "challenger_decision": pl.String(),
    "decided_at": _TS,
}
LATE_LOG = {
    "entity": pl.String(),
    "entity_id": pl.String(),
    "event_id": pl.String(),
    "event_type": pl.String(),
    "occurred_at": _TS,
    "watermark": _TS,
    "request": pl.Boolean(),
    "behind_s": pl.Float64(),
}


def decision_id(event_id: str) -> str:
    """The decision's id, derived from its request's event id: a replayed request gets the
    same id, which is what the journal and the topic's readers deduplicate on."""
    return f"dec_{event_id}"


def decision_record(decision: Decision, decided_at: datetime) -> dict[str, Any]:
    return {
        "decision_id": decision_id(decision.request.event_id),
        **decision.to_dict(),
        "decided_at": decided_at.isoformat(),
    }


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def decision_log_row(r: dict[str, Any]) -> dict[str, Any]:
    model, shadow = r["model"] or {}, r["challenger"] or {}
    return {
        "decision_id": r["decision_id"],
        "event_id": r["event_id"],
        "order_id": r["order_id"],
        "buyer_id": r["buyer_id"],
        "merchant_id": r["merchant_id"],
        "decision_time": _ts(r["decision_time"]),
        "decision": r["decision"],
        "amount_minor": r["amount"]["minor"],
        "currency": r["amount"]["currency"],
        "credit_limit_minor": r["credit_limit"]["minor"],
        "model_name": model.get("name"),
        "model_version": model.get("version"),
        "score": r["score"],
        "band": r["band"],
        "policy_reasons": ",".join(r["policy_reasons"]),
        "features_unavailable": FEATURES_UNAVAILABLE in r["policy_reasons"],
        "kill_switch": r["kill_switch"],
        "challenger_decision": shadow.get("decision"),
        "decided_at": _ts(r["decided_at"]),
    }


def late_record(late: LateEvent) -> dict[str, Any]:
    return {
        "entity": late.entity,
        "entity_id": late.entity_id,
        "event_id": late.event_id,
        "event_type": late.event_type,
        "occurred_at": late.occurred_at.isoformat(),
        "watermark": late.watermark.isoformat(),
        "request": late.request,
        "behind_s": late.behind_s,
    }


def late_log_row(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "occurred_at": _ts(r["occurred_at"]), "watermark": _ts(r["watermark"])}


@dataclass
class RunCounts:
    """What this process's run did, for the summary at its end (workers are threads)."""

    consumed: int = 0  # = passed_over + refused + the events admitted
    passed_over: int = 0  # of types no feature reads, not decoded (the ledger flow judges them)
    refused: int = 0
    requests: int = 0
    feature_rows: int = 0
    decided: int = 0
    replayed: int = 0  # decisions the journal already had (a resume since the last snapshot)
    late_events: int = 0
    by_outcome: Counter = field(default_factory=Counter)
    by_model: Counter = field(default_factory=Counter)
    features_unavailable: int = 0
    seconds: float = 0.0  # the dataflow's own run time (after start-up: models loaded, store opened)
    startup_seconds: float | None = None  # process start -> the first event handed on (None: no event)
    steady_seconds: float = 0.0  # the first event handed on -> the end of the run
    cpu_seconds: float = 0.0  # this process's CPU (every thread) over those steady seconds
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _first: tuple[float, float] | None = field(default=None, repr=False)  # (monotonic, CPU) at the first event

    def first_event(self) -> None:
        """Mark the first event handed on (later calls do nothing)."""
        if self._first is None:
            self._first = (time.monotonic(), time.process_time())
            self.startup_seconds = process_age()

    def finished(self) -> None:
        """Mark the end of the run: the steady seconds and CPU since the first event."""
        if self._first is not None:
            self.steady_seconds = time.monotonic() - self._first[0]
            self.cpu_seconds = time.process_time() - self._first[1]

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def decisions(self, records: list[dict[str, Any]]) -> None:
        with self.lock:
            for r in records:
                self.by_outcome[r["decision"]] += 1
                self.by_model["rules" if r["model"] is None else f"{r['model']['name']} v{r['model']['version']}"] += 1
                self.features_unavailable += FEATURES_UNAVAILABLE in r["policy_reasons"]


def write_log(journal: Journal, entries: list[Entry]) -> None:
    """`Journal.write_log` in one transaction: it marks each entry logged with its own
    UPDATE, which outside a transaction is a commit per entry (a tenth of the flow's time
    at ten thousand decisions). A crash before the commit leaves them unlogged, and the
    next start writes the same file again, as after a crash between writing and marking."""
    if not entries:
        return
    journal.con.execute("BEGIN IMMEDIATE")
    try:
        journal.write_log(entries)
    except BaseException:
        journal.con.execute("ROLLBACK")
        raise
    journal.con.execute("COMMIT")


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc; None where that is not there)."""
    try:
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started / os.sysconf("SC_CLK_TCK")


class DecisionWriter(StatelessSinkPartition[list[Decision]]):
    """Items are lists: the decisions of one gathered batch of requests each."""

    def __init__(self, state_dir: Path, bootstrap: str, topic: str, shard: int, counts: RunCounts):
        self.topic, self.bootstrap, self.counts = topic, bootstrap, counts
        self.journal = Journal(state_dir, "decisions", shard, decision_log_row, DECISION_LOG)
        self.producer = WatchedProducer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
        if self.journal.get_mark("scan_from") is None:  # before this shard ever sends: where its messages start
            self.journal.set_mark("scan_from", json.dumps(self._ends()))
        write_log(self.journal, self.journal.pending("logged"))
        unsent = self.journal.pending("sent")
        if unsent:
            published = self._published_since(json.loads(self.journal.get_mark("scan_from")))
            self._send(unsent, [e for e in unsent if e.record["decision_id"] not in published])

    def write_batch(self, items: list[list[Decision]]) -> None:
        items = [d for batch in items for d in batch]
        now = datetime.now(timezone.utc)
        fresh = self.journal.add((d.request.event_id, decision_record(d, now)) for d in items)
        self.counts.add(decided=len(fresh), replayed=len(items) - len(fresh))
        write_log(self.journal, fresh)
        self._send(fresh, fresh)
        self.counts.decisions([e.record for e in fresh])

    def close(self) -> None:
        self.producer.flush(30)
        self.journal.close()

    def _send(self, entries: list[Entry], to_produce: list[Entry]) -> None:
        """Produce `to_produce`, flush, then mark all `entries` sent and record, per
        partition, the offset after the last one delivered."""
        if not entries:
            return
        delivered: dict[int, int] = {}
        errors: list[str] = []

        def report(err, msg) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                delivered[msg.partition()] = max(delivered.get(msg.partition(), -1), msg.offset())

        for e in to_produce:
            self.producer.produce(
                self.topic,
                e.text.encode(),
                e.record["merchant_id"].encode(),
                headers=[(DECISION_ID_HEADER, e.record["decision_id"].encode())],
                on_delivery=report,
            )
            self.producer.poll(0)
        if self.producer.flush(60) or errors:
            raise RuntimeError(
                f"decisions topic {self.topic!r} did not take the decisions: "
                f"{errors[0] if errors else 'not acknowledged within 60 s'}"
            )
        marks = json.loads(self.journal.get_mark("scan_from") or "{}")
        marks.update({str(p): max(o + 1, marks.get(str(p), 0)) for p, o in delivered.items()})
        self.journal.con.execute("BEGIN IMMEDIATE")
        self.journal.mark_sent(entries)
        self.journal.set_mark("scan_from", json.dumps(marks))
        self.journal.con.execute("COMMIT")

    def _partitions(self) -> list[int]:
        """The topic's partitions, asked of a client closed on a thread of its own
        (`kafka_bounded.metadata`: its close has no timeout); 30 s + `GRACE_S` at the most."""
        meta = metadata(self.bootstrap, self.topic, timeout=30)
        return sorted(meta.topics[self.topic].partitions)

    def _ends(self) -> dict[str, int]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "clearline-unused"})
        try:
            return {
                str(p): consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1]
                for p in self._partitions()
            }
        finally:
            consumer.close()

    def _published_since(self, start: dict[str, int]) -> set[str]:
        """Decision ids on the topic from `start` (per partition) to its current end."""
        ends = self._ends()
        todo = {int(p): end for p, end in ends.items() if end > start.get(p, 0)}
        if not todo:
            return set()
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"clearline-risk-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(self.topic, p, start.get(str(p), 0)) for p in todo])
        seen: set[str] = set()
        try:
            while todo:
                for msg in consumer.consume(1000, 1.0):
                    if msg.error() is not None:
                        continue
                    seen.add(dict(msg.headers() or []).get(DECISION_ID_HEADER, b"").decode())
                    if msg.offset() + 1 >= todo.get(msg.partition(), 0):
                        todo.pop(msg.partition(), None)
        finally:
            consumer.close()
        return seen


class LateWriter(StatelessSinkPartition[list[LateEvent]]):
    def __init__(self, state_dir: Path, shard: int, counts: RunCounts):
        self.counts = counts
        self.journal = Journal(state_dir, "late", shard, late_log_row, LATE_LOG)
        write_log(self.journal, self.journal.pending("logged"))

    def write_batch(self, items: list[list[LateEvent]]) -> None:
        fresh = self.journal.add((f"{x.entity}:{x.event_id}", late_record(x)) for batch in items for x in batch)
        write_log(self.journal, fresh)
        self.counts.add(late_events=len(fresh))

    def close(self) -> None:
        self.journal.close()


class DecisionSink(DynamicSink[list[Decision]]):
    def __init__(self, state_dir: Path, bootstrap: str, topic: str, counts: RunCounts):
        self.args = (state_dir, bootstrap, topic)
        self.counts = counts

    def build(self, step_id: str, worker_index: int, worker_count: int) -> DecisionWriter:
        return DecisionWriter(*self.args, shard=worker_index, counts=self.counts)


class LateSink(DynamicSink[list[LateEvent]]):
    def __init__(self, state_dir: Path, counts: RunCounts):
        self.state_dir, self.counts = state_dir, counts

    def build(self, step_id: str, worker_index: int, worker_count: int) -> LateWriter:
        return LateWriter(self.state_dir, worker_index, self.counts)
