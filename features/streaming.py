"""The streaming runtime: the features of `features.definitions` as Bytewax steps, per
buyer and per merchant, in event time (`features.event_time`).

Wiring only: events become facts; refunds and chargebacks are attributed to a buyer
through their payment's authorization (in one ordered step); buyer and merchant events go
to one stateful operator each (keyed by entity), which keeps the entity's `Clock` and
emits feature rows as they become final and late events on a side output; the two
entity rows of a request are joined into one order row with the columns of
`features.batch.order_features`.

`feature_steps` adds these steps to a caller's dataflow; `request_steps` is the same with
one answer per request, row or none (the risk flow, which reads Kafka, decides each);
`run_bounded` runs them over a finite list of events, for tests and backfills.
"""

from __future__ import annotations

from typing import Any, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, TestingSource, run_main

from features.definitions import (BUYER_EVENTS, DEFAULT_SPEC, NEEDS_ATTRIBUTION, Attribution, Fact, Spec,
                                  attribute_payment, fact_of, request_columns)
from features.event_time import BUYER, MERCHANT, Clock, Entity, FeatureRow, LateEvent, Output, flush, on_fact
from pipelines.events import Event


class _EntityLogic(StatefulLogic[Fact, Output, Clock]):
    """Adapter from Bytewax's stateful operator to the pure clock of one entity."""

    def __init__(self, entity: Entity, spec: Spec, clock: Clock | None):
        self.entity, self.spec = entity, spec
        self.clock = clock or Clock(entity.empty)

    def on_item(self, value: Fact) -> tuple[Iterable[Output], bool]:
        self.clock, out = on_fact(self.entity, self.clock, value, self.spec)
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        self.clock, out = flush(self.entity, self.clock, self.spec)
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> Clock:
        return self.clock  # frozen: safe to hand to the recovery store as is


_ALL = "all"


class _Attributor(StatefulLogic[Fact, Fact, dict]):
    """Gives refunds and chargebacks their buyer (`attribute_payment`), one payment at a
    time, while every buyer event passes through it in arrival order. One key on purpose:
    a branch for the payment events merged back later would let them overtake or fall
    behind the buyer's other events by up to a whole input batch, and in event time that
    is lateness. The map holds one small entry per payment seen."""

    def __init__(self, resumed: dict | None):
        self.payments: dict[str, Attribution] = dict(resumed or {})

    def on_item(self, value: Fact) -> tuple[Iterable[Fact], bool]:
        if value.event_type not in NEEDS_ATTRIBUTION and value.event_type != "payment.authorized":
            return [value], StatefulLogic.RETAIN
        self.payments[value.payment_id], out = attribute_payment(self.payments.get(value.payment_id), value)
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> dict:
        return dict(self.payments)  # its values are frozen


def _per_entity(entity: Entity, facts: Stream[Fact], spec: Spec) -> Stream[Output]:
    keyed = op.key_on(f"{entity.name}_key", op.filter(f"{entity.name}_events", facts, entity.wants), entity.key)
    features = op.stateful(f"{entity.name}_features", keyed, lambda clock: _EntityLogic(entity, spec, clock))
    return op.key_rm(f"{entity.name}_unkey", features)


def order_row(buyer: FeatureRow, merchant: FeatureRow) -> dict[str, Any]:
    """One request's row: the same columns, in the same order, as the batch runtime's."""
    return {**request_columns(buyer.request), **buyer.values, **merchant.values}


def feature_steps(events: Stream[Event], spec: Spec = DEFAULT_SPEC
                  ) -> tuple[Stream[dict[str, Any]], Stream[FeatureRow], Stream[LateEvent]]:
    """Add the feature steps to a dataflow: order rows, per-entity rows (what changes in
    the feature store), and late events."""
    answers, rows, late = request_steps(events, spec)
    return op.filter_map("order_row", answers, lambda a: a[1]), rows, late


def request_steps(events: Stream[Event], spec: Spec = DEFAULT_SPEC
                  ) -> tuple[Stream[tuple[str, dict[str, Any] | None]], Stream[FeatureRow], Stream[LateEvent]]:
    """Like `feature_steps`, but with exactly one answer per underwriting request:
    (its event id, its order row), or (its event id, None) when it came late to either
    entity — for a caller that must decide every request, with features or without."""
    facts = op.map("fact", events, fact_of)
    for_buyers = op.filter("buyer_facts", facts, lambda f: f.event_type in BUYER_EVENTS)
    in_order = op.key_on("attribution_key", for_buyers, lambda _: _ALL)
    attributed = op.key_rm("attribution_unkey", op.stateful("attribute", in_order, _Attributor))
    buyer_out = _per_entity(BUYER, attributed, spec)
    merchant_out = _per_entity(MERCHANT, facts, spec)
    outputs = op.merge("outputs", buyer_out, merchant_out)
    split = op.branch("late_or_row", outputs, lambda o: isinstance(o, LateEvent))
    joined = op.join("order_join", _request_side("buyer", outputs), _request_side("merchant", outputs))
    answers = op.map("order_answer", joined, lambda kv: (kv[0], _complete_row(kv[1])))
    return answers, split.falses, split.trues


def _request_side(entity: str, outputs: Stream[Output]) -> Stream[tuple[str, Output]]:
    """One entity's answer per request, keyed by the request's event id: its feature row,
    or the report that the request came late, so the join never waits for a row that
    will not come."""
    mine = op.filter(f"{entity}_answers", outputs, lambda o: o.entity == entity and (isinstance(o, FeatureRow) or o.request))
    return op.key_on(f"{entity}_request", mine, lambda o: o.request.event_id if isinstance(o, FeatureRow) else o.event_id)


def _complete_row(pair: tuple[Output, Output]) -> dict[str, Any] | None:
    """The order row when both entities have features for the request (a late request
    has none: it is on the late output)."""
    buyer, merchant = pair
    return order_row(buyer, merchant) if isinstance(buyer, FeatureRow) and isinstance(merchant, FeatureRow) else None


def run_bounded(events: Iterable[Event], spec: Spec = DEFAULT_SPEC, batch_size: int = 1
                ) -> tuple[list[dict[str, Any]], list[FeatureRow], list[LateEvent]]:
    """Run the feature steps as a real Bytewax dataflow over a finite list of events
    (their list order is the arrival order, fed `batch_size` at a time); at its end
    everything pending is final."""
    orders: list[dict[str, Any]] = []
    rows: list[FeatureRow] = []
    late: list[LateEvent] = []
    flow = Dataflow("features_bounded")
    o, r, x = feature_steps(op.input("events", flow, TestingSource(list(events), batch_size)), spec)
    op.output("orders_out", o, TestingSink(orders))
    op.output("rows_out", r, TestingSink(rows))
    op.output("late_out", x, TestingSink(late))
    run_main(flow)
    return orders, rows, late
