"""The double-entry ledger: posting rules, the store, invariants and the hash chain
(docs/ledger.md).

    settings     where the ledger's state lives, what it consumes (configs/ledger.yaml)
    model        Posting, Posted, Rejected, Source: what a message becomes
    outcome      to_outcome: one consumed message -> Posted or Rejected (admission + posting)
    posting      the pure posting rule per event type; accounts: the chart of accounts
    store        the DuckDB store (append-only, idempotent on event_id, offsets per partition)
    chain        the per-partition hash chain and its verification
    invariants   debits = credits, floors, offset accounting
    snapshot     the Parquet snapshots other processes read; access: reading them
    archive      the Parquet event archive (backtests, replays)
    metrics      Prometheus metrics of the running flow

The names below are the ledger's public surface: the shell, notebooks, benchmarks and the
reconciliation area import only these (clearline.surface explains why they load lazily).
"""

from clearline.surface import surface

__getattr__, __all__ = surface(
    __name__,
    {
        # modules read as a whole
        "access": "access:",
        "accounts": "accounts:",
        "archive": "archive:",
        "chain": "chain:",
        "invariants": "invariants:",
        "metrics": "metrics:",
        # names
        "LedgerSettings": "settings",
        "LedgerStore": "store",
        "SnapshotPublisher": "snapshot",
        "Outcome": "model",
        "Posted": "model",
        "Rejected": "model",
        "Source": "model",
        "to_outcome": "outcome",
        "to_outcomes": "outcome",
        "capital": "posting",
    },
)
