"""Prometheus metrics of the ledger flow: throughput and the invariants, live.

The offset-accounting invariant is exported as its terms (consumed, posted, duplicate,
dead-lettered per partition) and as a 0/1 gauge, so an alert can fire on the gauge and a
person can see which term moved.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, start_http_server

from clearline.ledger.store import BatchResult, LedgerStore

MESSAGES = Counter("clearline_ledger_messages_total", "Messages consumed by outcome", ["outcome"])
POSTINGS = Counter("clearline_ledger_postings_total", "Posting legs written")
DEADLETTERS_REFUSED = Counter(
    "clearline_ledger_deadletters_refused_total",
    "Dead letters the dead-letter topic refused for good, even cut short (recorded, not sent again)",
)
BATCH_SECONDS = Gauge("clearline_ledger_last_batch_seconds", "Wall time since the previous committed batch")
PARTITION = Gauge(
    "clearline_ledger_partition_count", "Per-partition counters from the store", ["topic", "partition", "counter"]
)
ACCOUNTING_OK = Gauge(
    "clearline_ledger_offset_accounting_ok", "1 if consumed = posted + duplicate + dead-lettered everywhere"
)
_last = [time.monotonic()]


class MetricsPortBusy(OSError):
    """The metrics port is taken (another flow on this machine?)."""


def serve(port: int) -> None:
    if port:
        try:
            start_http_server(port, addr="127.0.0.1")
        except OSError as exc:
            raise MetricsPortBusy(
                f"cannot serve metrics on 127.0.0.1:{port} ({exc.strerror}): another ledger flow "
                "may be running; pass --metrics-port with a free port, or 0 for none"
            ) from None


def observe_batch(result: BatchResult, store: LedgerStore) -> None:
    for outcome in ("posted", "duplicate", "dead_lettered", "replayed"):
        MESSAGES.labels(outcome).inc(getattr(result, outcome))
    POSTINGS.inc(result.postings)
    now = time.monotonic()
    BATCH_SECONDS.set(now - _last[0])
    _last[0] = now
    observe_store(store)


def observe_store(store: LedgerStore) -> None:
    ok = 1
    for (topic, partition), state in store.partitions().items():
        for counter in ("consumed", "posted", "duplicate", "dead_lettered", "next_offset"):
            PARTITION.labels(topic, str(partition), counter).set(getattr(state, counter))
        ok &= state.consumed == state.posted + state.duplicate + state.dead_lettered
    ACCOUNTING_OK.set(ok)
