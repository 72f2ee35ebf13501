"""The ledger dataflow: payments.events → admission → posting rules → the ledger store.

    PartitionSource (all partitions, offsets in Bytewax recovery; one item per poll batch)
      → map  to_outcomes: admit (signature, tenant, contract, PAN) and post — or refuse
      → sink LedgerWriter: one DuckDB shard per worker; per batch, in this order:
             store transaction written, archive files of its new events written,
             committed; dead letters produced and flushed (at least once, keyed by
             origin offset); the snapshot publisher told (it publishes at most every
             publish_interval_s).

Exactly once comes from the store, not from Kafka: the store keeps the next offset per
partition in the same transaction as the postings, and skips what a resumed Bytewax
replays from its last snapshot; event_id is a primary key, so a re-sent event is a
duplicate, never a second posting.
"""

from __future__ import annotations

import gc
import signal
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main
from confluent_kafka import Message

from pipelines import config
from pipelines.admission import Refusal, admit, redacted_raw
from pipelines.events import Event
from pipelines.flows import ledger_metrics as metrics
from pipelines.flows.flow_state import claim_shape, recovery_dir, require_topic
from pipelines.flows.ledger_writer import LedgerWriter
from pipelines.kafka_source import STOP, PartitionSource
from pipelines.signing import TenantKeys
from recon.ledger.model import Outcome, Posted, Rejected, Source
from recon.ledger.posting import post

@dataclass(frozen=True)
class LedgerSettings:
    """Everything the flow needs, from configs/ledger.yaml unless overridden."""

    bootstrap: str
    topic: str
    deadletter_topic: str
    state_dir: Path
    batch_size: int
    metrics_port: int = 0
    duckdb_memory_limit: str = "512MB"
    duckdb_checkpoint_threshold: str = "256MB"
    publish_interval_s: float = 5.0
    once: bool = False

    @classmethod
    def from_config(cls, state_dir: Path | None = None, topic: str | None = None,
                    deadletter_topic: str | None = None, once: bool = False) -> "LedgerSettings":
        cfg = config.load("ledger")
        return cls(
            bootstrap=config.bootstrap_servers(), topic=topic or cfg["topic"],
            deadletter_topic=deadletter_topic or cfg["deadletter_topic"], state_dir=Path(state_dir or cfg["state_dir"]),
            batch_size=int(cfg["batch_size"]), metrics_port=int(cfg["metrics_port"]),
            duckdb_memory_limit=str(cfg["duckdb_memory_limit"]),
            duckdb_checkpoint_threshold=str(cfg["duckdb_checkpoint_threshold"]),
            publish_interval_s=float(cfg["publish_interval_s"]), once=once,
        )


def to_outcome(msg: Message, keys: TenantKeys) -> Outcome:
    """One consumed message → Posted (its postings) or Rejected (why, with its bytes)."""
    source = Source(msg.topic(), msg.partition(), msg.offset())
    raw = msg.value()
    admitted = admit(raw, msg.headers() or [], keys)
    if isinstance(admitted, Refusal):
        return Rejected(source, admitted.event_id, admitted.reason, admitted.detail, redacted_raw(raw, admitted))
    return _posted(source, admitted, raw)


def to_outcomes(msgs: list[Message], keys: TenantKeys) -> list[Outcome]:
    return [to_outcome(m, keys) for m in msgs]


def _posted(source: Source, event: Event, raw: bytes) -> Outcome:
    try:
        postings = post(event)
    except ValueError as exc:  # a rule that cannot post this event says why
        return Rejected(source, event.event_id, "posting", str(exc), raw)
    return Posted(source, event.event_id, event.event_type, event.reseller_id, event.occurred_at, postings, event, raw)


class _LedgerSink(DynamicSink[list[Outcome]]):
    def __init__(self, settings: LedgerSettings):
        self._settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[list[Outcome]]:
        return LedgerWriter(self._settings, shard=worker_index)


def build_flow(settings: LedgerSettings) -> Dataflow:
    keys = TenantKeys.from_config()
    flow = Dataflow("ledger")
    source = PartitionSource(settings.bootstrap, settings.topic, once=settings.once, batch_size=settings.batch_size)
    batches = op.input("consume", flow, source)
    outcomes = op.map("admit_and_post", batches, lambda msgs: to_outcomes(msgs, keys))
    op.output("ledger_store", outcomes, _LedgerSink(settings))
    return flow


def run(settings: LedgerSettings, process_id: int | None = None, addresses: list[str] | None = None) -> bool:
    """Run the flow in this process until it is caught up (`once`) or told to stop;
    returns True if a signal stopped it.

    SIGTERM (and SIGINT) end every input partition at its next poll, so the flow drains
    like a --once run: the last batch is committed, the snapshot published, the store
    closed. Whatever was read but not committed is read again on resume."""
    cfg = config.load("ledger")["recovery"]
    # The flow makes millions of short-lived records that reference counting frees (they
    # hold no cycles); at the default thresholds (700 allocations) the cyclic collector
    # walks every live object of the batch in hand over and over: ~40 % of admission.
    gc.set_threshold(100_000, 50, 1000)
    claim_shape(settings.state_dir, len(addresses) if addresses else 1)
    recovery = recovery_dir(settings.state_dir, int(cfg["partitions"]), first=not process_id)
    require_topic(settings.bootstrap, settings.topic)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: STOP.set())
    metrics.serve(settings.metrics_port + (process_id or 0) if settings.metrics_port else 0)
    cli_main(
        build_flow(settings), workers_per_process=1, process_id=process_id, addresses=addresses,
        epoch_interval=timedelta(seconds=float(cfg["snapshot_interval_s"])),
        recovery_config=RecoveryConfig(recovery, timedelta(seconds=float(cfg["backup_interval_s"]))),
    )
    return STOP.is_set()
