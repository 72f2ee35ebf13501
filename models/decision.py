"""One underwriting decision, the same way everywhere: the streaming risk flow and the HTTP
decision API both call `decide`.

    request + features + champion + challenger + policy  ->  Decision

The champion's score goes through the policy; the challenger is scored in the shadow
(recorded, never acted on). No champion, the kill switch, or features the feature store
does not have for this request all still get a decision — by the policy's conservative
rules, with the reason — never an exception: a checkout waiting on a decision must get one.
The active emergency freezes (`clearline.freezes.Freezes`, read by the caller from the
workbench's snapshot) are an input too: an order of a frozen merchant is held by the
policy (`policy.held`), the champion's and the challenger's decisions alike, the score
and reasons still recorded.
The record keeps everything needed to explain and replay the decision: the request, the
feature values used, the model version, the score, the policy's reasons and the features
that moved the score most.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from clearline.events import Event, Money, OrderCreated
from clearline.features import Fact, is_underwriting_request
from clearline.freezes import NONE, Freezes
from clearline.models import policy as pol
from clearline.models.policy import Outcome, Policy
from clearline.models.reasons import ReasonCode
from clearline.models.scorer import ModelRef, Scorer
from clearline.models.training_set import REQUEST_FEATURES


class NotAnUnderwritingRequest(ValueError):
    """Only an order.created on terms asks for an underwriting decision."""


@dataclass(frozen=True, slots=True)
class UnderwritingRequest:
    event_id: str
    order_id: str
    buyer_id: str
    merchant_id: str
    decision_time: datetime  # the order's event time: features are as of this instant
    amount: Money
    terms_days: int

    @classmethod
    def from_event(cls, event: Event) -> UnderwritingRequest:
        p = event.payload
        if not cls.asks(event):
            raise NotAnUnderwritingRequest(f"event {event.event_id} ({event.event_type}) is not an order on terms")
        return cls(event.event_id, p.order_id, p.buyer_id, event.merchant_id, event.occurred_at, p.amount, p.terms_days)

    @staticmethod
    def asks(event: Event) -> bool:
        """Whether the event is an underwriting request (an order on terms)."""
        return isinstance(event.payload, OrderCreated) and event.payload.payment_method == "terms"

    @classmethod
    def from_fact(cls, f: Fact) -> UnderwritingRequest:
        """From the feature runtime's fact of an order on terms (it keeps every field a
        request needs)."""
        if not is_underwriting_request(f):
            raise NotAnUnderwritingRequest(f"event {f.event_id} ({f.event_type}) is not an order on terms")
        return cls(
            f.event_id,
            f.order_id,
            f.buyer_id,
            f.merchant_id,
            f.occurred_at,
            Money(f.amount_minor, f.currency),
            f.terms_days,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> UnderwritingRequest:
        """From a row of `clearline.features.batch.order_features` (its order columns)."""
        return cls(
            row["event_id"],
            row["order_id"],
            row["buyer_id"],
            row["merchant_id"],
            row["decision_time"],
            Money(int(row["amount_minor"]), row["currency"]),
            int(row["terms_days"]),
        )

    def model_inputs(self) -> dict[str, float]:
        """The order's own fields the models read (REQUEST_FEATURES), beside the stored features."""
        return dict(zip(REQUEST_FEATURES, (float(self.amount.minor), float(self.terms_days)), strict=True))


@dataclass(frozen=True, slots=True)
class Shadow:
    """What the challenger would have decided (recorded only)."""

    model: ModelRef
    score: float
    outcome: Outcome
    credit_limit: Money


@dataclass(frozen=True, slots=True)
class Decision:
    request: UnderwritingRequest
    outcome: Outcome
    credit_limit: Money
    policy_reasons: tuple[str, ...]
    model: ModelRef | None = None  # None: decided by the conservative rules
    score: float | None = None
    band: str | None = None
    reason_codes: tuple[ReasonCode, ...] = ()
    inputs: tuple[tuple[str, Any], ...] = ()  # feature values as received
    missing_features: tuple[str, ...] = ()
    challenger: Shadow | None = None
    kill_switch: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The decision record as plain JSON-able data (money as minor units + currency)."""
        r = self.request
        return {
            "event_id": r.event_id,
            "order_id": r.order_id,
            "buyer_id": r.buyer_id,
            "merchant_id": r.merchant_id,
            "decision_time": r.decision_time.isoformat(),
            "amount": _money(r.amount),
            "terms_days": r.terms_days,
            "decision": self.outcome,
            "credit_limit": _money(self.credit_limit),
            "policy_reasons": list(self.policy_reasons),
            "model": None if self.model is None else {"name": self.model.name, "version": self.model.version},
            "score": self.score,
            "band": self.band,
            "reason_codes": [
                {"feature": c.feature, "value": c.value, "reference": c.reference, "delta": c.delta}
                for c in self.reason_codes
            ],
            "inputs": dict(self.inputs),
            "missing_features": list(self.missing_features),
            "challenger": None
            if self.challenger is None
            else {
                "model": {"name": self.challenger.model.name, "version": self.challenger.model.version},
                "score": self.challenger.score,
                "decision": self.challenger.outcome,
                "credit_limit": _money(self.challenger.credit_limit),
            },
            "kill_switch": self.kill_switch,
        }


def _money(m: Money) -> dict[str, Any]:
    return {"minor": m.minor, "currency": m.currency}


def usable_features(
    features: Mapping[str, Any] | None, wanted: tuple[str, ...]
) -> tuple[dict[str, float | None], tuple[str, ...]]:
    """The wanted features as numbers (None/NaN: known to be unknown, the model imputes)
    and the names that are absent, not numbers, or infinite — those make the request
    unscorable."""
    values: dict[str, float | None] = {}
    missing = []
    features = features or {}
    for name in wanted:
        raw = features.get(name, _ABSENT)
        if type(raw) is float and -math.inf < raw < math.inf or type(raw) is int:  # the usual cases, as below
            values[name] = float(raw)
            continue
        if raw is _ABSENT or isinstance(raw, (bool, str, bytes)):
            missing.append(name)
            continue
        try:
            number = None if raw is None else float(raw)
        except (TypeError, ValueError):
            missing.append(name)
            continue
        if number is not None and math.isinf(number):
            missing.append(name)
            continue
        values[name] = None if number is None or math.isnan(number) else number
    return values, tuple(missing)


_ABSENT = object()


def decide(
    request: UnderwritingRequest,
    features: Mapping[str, Any] | None,
    champion: Scorer | None,
    challenger: Scorer | None,
    policy: Policy,
    freezes: Freezes = NONE,
) -> Decision:
    """Decide one request; always returns exactly one Decision. `features` are the
    feature store's values for this request; None, empty, or every value None (how Feast
    answers for an entity it has never seen) mean it has none. The order's own fields
    (amount, terms) are added from the request. `freezes`: the active emergency freezes."""
    return decide_many([(request, features)], champion, challenger, policy, freezes)[0]


def decide_many(
    items: Sequence[tuple[UnderwritingRequest, Mapping[str, Any] | None]],
    champion: Scorer | None,
    challenger: Scorer | None,
    policy: Policy,
    freezes: Freezes = NONE,
) -> list[Decision]:
    """`decide` for each (request, features), in order, with one champion call and one
    challenger call for all of them: a model call costs far more than the rows it scores,
    and a stream hands over its requests a poll batch at a time. Each request's decision
    is the one `decide` gives it alone (the models score rows independently)."""
    asked = [_Asked.of(request, features, freezes) for request, features in items]
    if policy.kill_switch:
        return [_fallback(a, policy, pol.KILL_SWITCH, kill_switch=True) for a in asked]
    if champion is None:
        return [_fallback(a, policy, pol.NO_CHAMPION) for a in asked]
    usable = [usable_features(a.features, champion.features) for a in asked]
    scorable = [i for i, (_, missing) in enumerate(usable) if not missing]
    explained = dict(zip(scorable, champion.explain_many([usable[i][0] for i in scorable], policy.reason_codes)))
    shadows = _shadows({i: asked[i] for i in scorable}, challenger, policy)
    decisions = []
    for i, a in enumerate(asked):
        if i not in explained:
            decisions.append(_fallback(a, policy, pol.FEATURES_UNAVAILABLE, missing=usable[i][1]))
            continue
        score, reasons = explained[i]
        outcome = pol.held(policy, pol.by_score(policy, score, a.request.amount), a.freeze)
        decisions.append(
            Decision(
                a.request,
                outcome.outcome,
                outcome.credit_limit,
                outcome.reasons,
                champion.ref,
                score,
                outcome.band,
                reasons,
                a.inputs,
                challenger=shadows.get(i),
            )
        )
    return decisions


@dataclass(frozen=True, slots=True)
class _Asked:
    """A request with its features as the models see them (None: the store has none) and
    as the record keeps them, and the freeze holding it (its policy reason, None: none)."""

    request: UnderwritingRequest
    features: Mapping[str, Any] | None
    inputs: tuple[tuple[str, Any], ...]
    freeze: str | None

    @classmethod
    def of(cls, request: UnderwritingRequest, features: Mapping[str, Any] | None, freezes: Freezes) -> _Asked:
        has_row = features is not None and any(v is not None for v in features.values())
        if has_row:
            features = {**features, **request.model_inputs()}
        inputs = tuple(sorted((k, _plain(v)) for k, v in (features or {}).items()))
        frozen = freezes.holding("merchant", request.merchant_id) is not None
        return cls(request, features if has_row else None, inputs, pol.FROZEN_MERCHANT if frozen else None)


def _fallback(
    asked: _Asked, policy: Policy, why: str, missing: tuple[str, ...] = (), kill_switch: bool = False
) -> Decision:
    outcome = pol.held(policy, pol.conservative(policy, asked.request.amount, why), asked.freeze)
    return Decision(
        asked.request,
        outcome.outcome,
        outcome.credit_limit,
        outcome.reasons,
        inputs=asked.inputs,
        missing_features=missing,
        kill_switch=kill_switch,
    )


def _shadows(asked: Mapping[int, _Asked], challenger: Scorer | None, policy: Policy) -> dict[int, Shadow]:
    """What the challenger would have decided, for the requests it can score (by their key
    in `asked`), in one model call."""
    if challenger is None:
        return {}
    usable = {}
    for i, a in asked.items():
        values, missing = usable_features(a.features, challenger.features)
        if not missing:
            usable[i] = values
    shadows = {}
    for i, score in zip(usable, challenger.score_many(list(usable.values()))):
        outcome = pol.held(policy, pol.by_score(policy, score, asked[i].request.amount), asked[i].freeze)
        shadows[i] = Shadow(challenger.ref, score, outcome.outcome, outcome.credit_limit)
    return shadows


def _plain(value: Any) -> Any:
    """A feature value as recorded: numbers as float, None as None, anything else as text."""
    if type(value) is float:  # the usual cases, as the general path below takes them
        return None if math.isnan(value) else value
    if type(value) is int:
        return float(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        return None if math.isnan(value) else float(value)
    return str(value)
