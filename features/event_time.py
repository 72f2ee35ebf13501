"""Event-time order for one entity's events, with an allowed lateness: the pure state
machine the streaming runtime runs per buyer and per merchant.

Events arrive out of order. Each entity keeps the events it cannot yet place in order
(`pending`) and a watermark: the newest `occurred_at` it has seen minus the allowed
lateness. Everything older than the watermark is final, so those events are applied in
event-time order, one timestamp at a time: first the feature rows of the underwriting
requests at that instant are read (they see only strictly earlier events), then every
event of the instant is applied. That is the same "strictly before" rule the batch
runtime computes, which is why the two agree.

An event older than the watermark when it arrives is late: it is applied at once (it is
a real fact and counts for every later read), counted, and reported as a `LateEvent`;
reads already made in its past did not see it. A late underwriting request gets no
feature row (its state already holds events after it, which would leak): it is reported
late, for the caller to decide on without features. At the end of a bounded input,
`flush` makes everything pending final.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Callable

from clearline.features.definitions import (
    BUYER_EVENTS,
    DEFAULT_SPEC,
    MERCHANT_EVENTS,
    BuyerState,
    Fact,
    MerchantState,
    Spec,
    apply_buyer,
    apply_merchant,
    is_underwriting_request,
    read_buyer,
    read_merchant,
)
from clearline.features.records import record, replaced


@record
class FeatureRow:
    """One entity's features for one underwriting request, as of the request's time."""

    entity: str
    entity_id: str
    request: Fact
    values: dict[str, Any]


@record
class LateEvent:
    """An event that arrived after its entity's watermark had passed it."""

    entity: str
    entity_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    watermark: datetime
    request: bool = False  # an underwriting request, which therefore gets no feature row

    @property
    def behind_s(self) -> float:
        return (self.watermark - self.occurred_at).total_seconds()


@dataclass(frozen=True)
class Entity:
    """What differs between buyers and merchants: the key, the events that matter, the
    empty state, and the update and read functions of `clearline.features.definitions`."""

    name: str
    key: Callable[[Fact], str | None]
    events: frozenset[str]
    empty: Any
    apply: Callable[[Any, Fact, Spec], Any]
    read: Callable[[Any, Fact, Spec], dict[str, Any]]

    def wants(self, f: Fact) -> bool:
        return f.event_type in self.events and self.key(f) is not None


BUYER = Entity(
    "buyer",
    lambda f: f.buyer_id,
    BUYER_EVENTS,
    BuyerState(),
    apply_buyer,
    lambda s, f, spec: read_buyer(s, f.occurred_at, f.currency, spec),
)
MERCHANT = Entity(
    "merchant",
    lambda f: f.merchant_id,
    MERCHANT_EVENTS,
    MerchantState(),
    apply_merchant,
    lambda s, f, spec: read_merchant(s, f.occurred_at, f.currency, f.amount_minor, spec),
)


@record
class Clock:
    """One entity's state, its not-yet-final events (in event-time order), the newest
    event time seen, and how many events came late."""

    state: Any
    pending: tuple[Fact, ...] = ()
    newest: datetime | None = None
    late: int = 0

    def watermark(self, spec: Spec) -> datetime | None:
        return None if self.newest is None else self.newest - timedelta(seconds=spec.allowed_lateness_s)


Output = FeatureRow | LateEvent


def _order(f: Fact) -> tuple[datetime, str]:
    return f.occurred_at, f.event_id


def _time(f: Fact) -> datetime:
    return f.occurred_at


def _settle(entity: Entity, state: Any, facts: list[Fact], spec: Spec) -> tuple[Any, list[Output]]:
    """Apply final events in event-time order, reading each request before its instant."""
    out: list[Output] = []
    apply, read, name, key = entity.apply, entity.read, entity.name, entity.key
    for _, same_instant in groupby(facts, key=_time):
        batch = list(same_instant)
        out += [FeatureRow(name, key(f), f, read(state, f, spec)) for f in batch if is_underwriting_request(f)]
        for f in batch:
            state = apply(state, f, spec)
    return state, out


def on_facts(
    entity: Entity, clock: Clock, facts: list[tuple[int, Fact]], spec: Spec = DEFAULT_SPEC
) -> tuple[Clock, list[tuple[int, Output]]]:
    """The entity's clock after its arriving events of one batch, in arrival order, and
    what became final, each output tagged with the number its caller gave the arriving
    event that made it (its position in the batch). The same as `on_fact` event by
    event, without a clock record and a copy of the pending events per event: an
    entity's events of a batch are taken in one loop, its clock rebuilt once."""
    lateness = timedelta(seconds=spec.allowed_lateness_s)
    state, pending, newest, late = clock.state, list(clock.pending), clock.newest, clock.late
    out: list[tuple[int, Output]] = []
    for tag, f in facts:
        at = f.occurred_at
        if newest is not None and at < newest - lateness:  # late: applied at once, read by no past request
            mark = newest - lateness
            out.append(
                (
                    tag,
                    LateEvent(
                        entity.name, entity.key(f), f.event_id, f.event_type, at, mark, is_underwriting_request(f)
                    ),
                )
            )
            state, late = entity.apply(state, f, spec), late + 1
            continue
        bisect.insort(pending, f, key=_order)
        if newest is None or at > newest:
            newest = at
        mark = newest - lateness
        if pending[0].occurred_at < mark:  # everything before the mark is final
            cut = bisect.bisect_left(pending, mark, key=_time)
            state, settled = _settle(entity, state, pending[:cut], spec)
            del pending[:cut]
            out += [(tag, o) for o in settled]
    return Clock(state, tuple(pending), newest, late), out


def on_fact(entity: Entity, clock: Clock, f: Fact, spec: Spec = DEFAULT_SPEC) -> tuple[Clock, list[Output]]:
    """The entity's clock after one arriving event, and what became final."""
    clock, out = on_facts(entity, clock, [(0, f)], spec)
    return clock, [o for _, o in out]


def flush(entity: Entity, clock: Clock, spec: Spec = DEFAULT_SPEC) -> tuple[Clock, list[Output]]:
    """At the end of a bounded input nothing more can arrive: every pending event is final."""
    state, out = _settle(entity, clock.state, list(clock.pending), spec)
    return replaced(clock, state=state, pending=()), out
