"""The streaming runtime: the features of `clearline.features.definitions` as one Bytewax stateful
step over arrival batches, in event time (`clearline.features.event_time`).

Events arrive as batches (a Kafka poll's worth); each batch becomes facts and goes, whole,
through `clearline.features.stream_state.advance`: payment attribution, each buyer's and merchant's
clock, and the pairing of a request's two answers. One item per batch, not per event:
per-event dataflow hops cost more than the features themselves. The state is one key, so
one worker holds every entity — what a single stream of requests needs, since a request
reads its buyer and its merchant at once.

`advance_steps` adds the step to a caller's dataflow (the risk flow decides each answer);
`feature_steps` splits its output into order rows, entity rows and late events, in
batches; `run_bounded` runs them over a finite list of events, for tests and backfills.
"""

from __future__ import annotations

from typing import Any, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, TestingSource, run_main

from clearline.events import Event
from clearline.features.definitions import DEFAULT_SPEC, FEATURE_EVENTS, Spec, fact_of
from clearline.features.event_time import FeatureRow, LateEvent
from clearline.features.stream_state import Advance, StreamState, advance, finish

_ALL = "all"


class _AdvanceLogic(StatefulLogic[list[Event], Advance, StreamState]):
    """Adapter from Bytewax's stateful operator to `clearline.features.stream_state`."""

    def __init__(self, spec: Spec, resumed: StreamState | None):
        self.spec, self.state = spec, resumed or StreamState()

    def on_item(self, value: list[Event]) -> tuple[Iterable[Advance], bool]:
        facts = [fact_of(e) for e in value if e.event_type in FEATURE_EVENTS]
        return [advance(self.state, facts, self.spec)], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Advance], bool]:
        return [finish(self.state, self.spec)], StatefulLogic.RETAIN

    def snapshot(self) -> StreamState:
        return self.state.snapshot()


def advance_steps(batches: Stream[list[Event]], spec: Spec = DEFAULT_SPEC) -> Stream[Advance]:
    """Add the feature step to a dataflow: one `Advance` per arrival batch (and one at the
    end of a bounded input), with exactly one answer per underwriting request over the run."""
    keyed = op.key_on("features_key", batches, lambda _: _ALL)
    return op.key_rm("features_unkey", op.stateful("features", keyed, lambda resumed: _AdvanceLogic(spec, resumed)))


def feature_steps(
    batches: Stream[list[Event]], spec: Spec = DEFAULT_SPEC
) -> tuple[Stream[list[dict[str, Any]]], Stream[list[FeatureRow]], Stream[list[LateEvent]]]:
    """The feature step's output as three streams of lists: order rows (requests that
    came late have none), per-entity rows (what changes in the feature store), late events."""
    advances = advance_steps(batches, spec)
    orders = op.map("order_rows", advances, lambda a: [row for _, row in a.answers if row is not None])
    return orders, op.map("entity_rows", advances, lambda a: a.rows), op.map("late_events", advances, lambda a: a.late)


def run_bounded(
    events: Iterable[Event], spec: Spec = DEFAULT_SPEC, batch_size: int = 1
) -> tuple[list[dict[str, Any]], list[FeatureRow], list[LateEvent]]:
    """Run the feature step as a real Bytewax dataflow over a finite list of events (their
    list order is the arrival order, fed `batch_size` at a time); at its end everything
    pending is final."""
    events = list(events)
    batches = [events[i : i + batch_size] for i in range(0, len(events), batch_size)]
    out: dict[str, list] = {"orders": [], "rows": [], "late": []}
    flow = Dataflow("features_bounded")
    streams = feature_steps(op.input("events", flow, TestingSource(batches)), spec)
    for name, stream in zip(out, streams):
        op.output(f"{name}_out", op.flat_map(f"{name}_flat", stream, lambda items: items), TestingSink(out[name]))
    run_main(flow)
    return out["orders"], out["rows"], out["late"]
