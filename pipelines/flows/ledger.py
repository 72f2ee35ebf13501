"""The ledger dataflow: payments.events → admission → posting rules → the ledger store.

    PartitionSource (all partitions, offsets in Bytewax recovery; one item per poll batch)
      → map  to_outcomes: admit (signature, tenant, contract, PAN) and post — or refuse
      → sink LedgerWriter: one DuckDB shard per worker; per batch, in this order:
             store transaction written, archive files of its new events written,
             committed; dead letters produced and flushed (at least once, keyed by
             origin offset; masked, at most 512 KiB, a letter the broker refuses for
             good recorded and never retried); the snapshot publisher told (it
             publishes at most every publish_interval_s).

No message stops the flow: admission and posting turn anything a message holds into a
dead letter with its reason (`clearline.ledger.outcome.to_outcome`).

Exactly once comes from the store, not from Kafka: the store keeps the next offset per
partition in the same transaction as the postings, and skips what a resumed Bytewax
replays from its last snapshot; event_id is a primary key, so a re-sent event is a
duplicate, never a second posting.
"""

from __future__ import annotations

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from clearline import config
from clearline.ledger import LedgerSettings, Outcome, metrics, to_outcomes
from clearline.pipelines.connectors.kafka_source import PartitionSource
from clearline.pipelines.connectors.ledger_sink import LedgerWriter
from clearline.pipelines.flows.runner import Recovery, execute, prepare
from clearline.signing import TenantKeys

# The ledger holds a write's worth of poll batches at once (~8,000 messages, each some 30
# tracked objects: its Event, payload, Money, Postings, Posted, Source…), none in a cycle.
# At the runner's 100,000 the cyclic collector walks that live batch several times a
# write and promotes it, to walk it again in generation 1: 8 % of the flow's CPU on a
# 105,188-event topic (0.66 s of 8.1 s by gc.callbacks); at 1,000,000 net allocations it
# next to never runs (0.05 s), with the same peak RSS. Cyclic garbage, which this flow
# does not make, would still be collected, only later.
LEDGER_GC_THRESHOLDS = (1_000_000, 50, 1000)


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
    recovery = Recovery.from_config(config.load("ledger")["recovery"])
    folder = prepare(
        settings.state_dir, recovery, settings.bootstrap, [settings.topic], process_id, addresses, LEDGER_GC_THRESHOLDS
    )
    metrics.serve(settings.metrics_port + (process_id or 0) if settings.metrics_port else 0)
    return execute(build_flow(settings), folder, recovery, process_id, addresses)
