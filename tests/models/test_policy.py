"""The decision policy and `decide`: properties over every score, amount and request shape
(Hypothesis), the policy file's checks, and the decision record."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline import config
from clearline.events import Money
from clearline.models import policy as pol
from clearline.models.decision import UnderwritingRequest, decide
from clearline.models.policy import OUTCOMES, Policy, PolicyError
from clearline.models.scorer import ModelRef, Scorer, medians
from clearline.models.train import scorecard

POLICY = Policy.from_config(config.load("policy"))
KILLED = Policy.from_config({**config.load("policy"), "kill_switch": True})
CURRENCIES = sorted(POLICY.conservative.limit_minor)

scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
amounts = st.builds(Money, st.integers(min_value=0, max_value=5_000_000), st.sampled_from(CURRENCIES))


def rank(outcome: str) -> int:
    return OUTCOMES.index(outcome)


# ---------------------------------------------------------------------------- policy


@given(scores, scores, amounts)
def test_a_better_score_never_gets_a_worse_decision_or_a_lower_limit(a, b, amount):
    better, worse = pol.by_score(POLICY, min(a, b), amount), pol.by_score(POLICY, max(a, b), amount)
    assert rank(better.outcome) >= rank(worse.outcome)
    assert better.credit_limit.minor >= worse.credit_limit.minor
    assert better.credit_limit.currency == worse.credit_limit.currency == amount.currency


@given(scores, scores, amounts)
def test_kill_switch_ignores_the_score_and_is_conservative(a, b, amount):
    first, second = pol.by_score(KILLED, a, amount), pol.by_score(KILLED, b, amount)
    assert first == second
    assert pol.KILL_SWITCH in first.reasons and first.band is None
    cap = KILLED.conservative.limit_minor[amount.currency]
    assert first.credit_limit.minor == cap
    assert (first.outcome == "approve") == (amount.minor <= cap)
    # never more generous than the model would be for an approvable score
    approving = [band for band in KILLED.bands if band.max_score <= KILLED.approve_below]
    assert all(first.credit_limit.minor <= band.limit_minor[amount.currency] for band in approving)


@given(scores, amounts)
def test_an_approval_is_within_the_band_limit_and_below_the_cutoff(score, amount):
    d = pol.by_score(POLICY, score, amount)
    if d.outcome == "approve":
        assert score < POLICY.approve_below and amount.minor <= d.credit_limit.minor
    if score >= POLICY.decline_from:
        assert d.outcome == "decline" and d.credit_limit.minor == 0
    if POLICY.approve_below <= score < POLICY.decline_from:
        assert d.outcome == "review" and pol.SCORE_REVIEW in d.reasons


def test_review_band_and_over_limit_reasons():
    small, big = Money(10_000, "USD"), Money(10_000_000, "USD")
    assert pol.by_score(POLICY, 0.01, small).outcome == "approve"
    over = pol.by_score(POLICY, 0.01, big)
    assert over.outcome == "review" and pol.OVER_LIMIT in over.reasons and over.band == "A"
    assert pol.by_score(POLICY, 0.10, small).reasons == (pol.SCORE_REVIEW, pol.WITHIN_LIMIT)
    assert pol.by_score(POLICY, 0.5, small).outcome == "decline"


def test_a_currency_without_limits_is_declined_with_that_reason():
    d = pol.by_score(POLICY, 0.001, Money(100, "JPY"))
    assert (d.outcome, d.reasons, d.credit_limit) == ("decline", (pol.CURRENCY_NOT_IN_POLICY,), Money(0, "JPY"))


def _cfg(**changes) -> dict:
    cfg = json.loads(json.dumps(config.load("policy")))
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize(
    "change, message",
    [
        ({"cutoffs": {"approve_below": 0.2, "decline_from": 0.1}}, "approve_below <= decline_from"),
        (
            {"bands": [{"band": "A", "max_score": 0.5, "limit_minor": {"USD": 1, "EUR": 1, "GBP": 1}}]},
            "last band must have max_score 1.0",
        ),
        (
            {
                "bands": [
                    {"band": "A", "max_score": 0.1, "limit_minor": {"USD": 100, "EUR": 1, "GBP": 1}},
                    {"band": "B", "max_score": 1.0, "limit_minor": {"USD": 200, "EUR": 1, "GBP": 1}},
                ]
            },
            "USD limit rises from band A to B",
        ),
        (
            {"bands": [{"band": "A", "max_score": 1.0, "limit_minor": {"USD": 10**9, "EUR": 10**9, "XXQ": 1}}]},
            "'XXQ' is not an ISO 4217",
        ),
        (
            {"bands": [{"band": "A", "max_score": 1.0, "limit_minor": {"USD": 12.5, "EUR": 1, "GBP": 1}}]},
            "USD limit must be a non-negative integer",
        ),
        (
            {"conservative": {"limit_minor": {"USD": 10**9, "EUR": 1, "GBP": 1}, "over_limit": "review"}},
            "USD limit 1000000000 exceeds an approving band",
        ),
        (
            {"conservative": {"limit_minor": {"USD": 1, "EUR": 1, "GBP": 1}, "over_limit": "approve"}},
            "must be review or decline",
        ),
        ({"cutoffs": {"approve_below": 0.1}}, "missing or malformed entry 'decline_from'"),
        ({"conservative": {"limit_minor": "USD", "over_limit": "review"}}, "missing or malformed entry"),
    ],
)
def test_a_bad_policy_file_is_named(change, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Policy.from_config(_cfg(**change))


# ---------------------------------------------------------------------------- decide

FEATURES = ("buyer_late_repayment_rate", "buyer_orders_30d", "amount_minor")


@pytest.fixture(scope="module")
def champion() -> Scorer:
    """A real fitted scorecard on a small constructed frame: risk rises with lateness."""
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {
            "buyer_late_repayment_rate": rng.random(400),
            "buyer_orders_30d": rng.integers(0, 20, 400).astype(float),
            "amount_minor": rng.integers(500, 500_000, 400).astype(float),
        }
    )
    x.loc[::7, "buyer_late_repayment_rate"] = np.nan
    y = (rng.random(400) < 0.02 + 0.3 * x["buyer_late_repayment_rate"].fillna(0.2)).astype(int)
    pipeline = scorecard({"C": 1.0, "max_iter": 1000}).fit(x, y)
    return Scorer(ModelRef("clearline-scorecard", "3"), pipeline, FEATURES, medians(x, FEATURES))


def _request(amount: Money) -> UnderwritingRequest:
    return UnderwritingRequest(
        "evt_1", "ord_1", "b_1", "m_1", datetime(2026, 3, 1, 12, tzinfo=timezone.utc), amount, 30
    )


feature_values = st.one_of(
    st.none(),
    st.floats(min_value=-1e9, max_value=1e9),
    st.sampled_from([float("nan"), float("inf")]),
    st.integers(-(10**6), 10**6),
    st.text(max_size=3),
    st.booleans(),
)
feature_maps = st.one_of(st.none(), st.dictionaries(st.sampled_from(FEATURES + ("other",)), feature_values))


@settings(max_examples=150, deadline=None)
@given(feature_maps, amounts, st.booleans(), st.booleans(), st.booleans())
def test_every_request_gets_exactly_one_decision(champion, features, amount, kill, with_champion, with_challenger):
    policy = KILLED if kill else POLICY
    d = decide(
        _request(amount), features, champion if with_champion else None, champion if with_challenger else None, policy
    )
    assert d.outcome in OUTCOMES and d.credit_limit.currency == amount.currency
    json.dumps(d.to_dict())  # the record is always plain JSON
    usable = (
        features is not None
        and any(v is not None for v in features.values())
        and all(  # amount from the request
            f in features
            and (features[f] is None or isinstance(features[f], (int, float)))
            and not isinstance(features[f], bool)
            and features[f] != float("inf")
            for f in FEATURES
            if f != "amount_minor"
        )
    )
    if kill:
        assert d.kill_switch and d.model is None and pol.KILL_SWITCH in d.policy_reasons
    elif not with_champion:
        assert d.model is None and pol.NO_CHAMPION in d.policy_reasons
    elif not usable:
        assert d.model is None and d.policy_reasons[0] == pol.FEATURES_UNAVAILABLE and d.missing_features
    else:
        assert d.model == champion.ref and 0.0 <= d.score <= 1.0 and d.band is not None
        assert (d.challenger is not None) == with_challenger


def test_missing_features_get_a_policy_decision_not_an_error(champion):
    d = decide(_request(Money(20_000, "USD")), {"buyer_orders_30d": 3}, champion, None, POLICY)
    assert d.outcome == "approve" and d.policy_reasons == (pol.FEATURES_UNAVAILABLE, pol.WITHIN_LIMIT)
    assert d.missing_features == ("buyer_late_repayment_rate",)
    assert d.credit_limit == Money(POLICY.conservative.limit_minor["USD"], "USD")
    big = decide(_request(Money(2_000_000, "USD")), None, champion, None, POLICY)
    assert big.outcome == POLICY.conservative.over_limit and pol.OVER_LIMIT in big.policy_reasons


def test_a_decision_record_names_model_inputs_reasons_and_shadow(champion):
    features = {"buyer_late_repayment_rate": 0.9, "buyer_orders_30d": 2, "amount_minor": 1, "unused": 1}
    d = decide(_request(Money(40_000, "EUR")), features, champion, champion, POLICY)
    record = json.loads(json.dumps(d.to_dict()))
    assert record["model"] == {"name": "clearline-scorecard", "version": "3"}
    # the order's own amount and terms come from the request, not from the feature store
    assert record["inputs"] == {
        "amount_minor": 40000.0,
        "buyer_late_repayment_rate": 0.9,
        "buyer_orders_30d": 2.0,
        "terms_days": 30.0,
        "unused": 1.0,
    }
    assert record["score"] == pytest.approx(champion.score({**features, "amount_minor": 40_000}))
    assert record["challenger"]["score"] == pytest.approx(record["score"])
    codes = record["reason_codes"]
    assert 1 <= len(codes) <= POLICY.reason_codes
    # lateness 0.9 against a median near 0.5 is what raised this buyer's risk most
    assert codes[0]["feature"] == "buyer_late_repayment_rate" and codes[0]["delta"] > 0
    assert abs(codes[0]["delta"]) >= max(abs(c["delta"]) for c in codes)
    assert record["amount"] == {"minor": 40000, "currency": "EUR"} and record["decision_time"].startswith(
        "2026-03-01T12"
    )


def test_a_row_of_nothing_but_nulls_is_no_row(champion):
    """Feast answers an entity it has never seen with None for every feature."""
    d = decide(
        _request(Money(1_000, "GBP")),
        {"buyer_late_repayment_rate": None, "buyer_orders_30d": None},
        champion,
        champion,
        POLICY,
    )
    assert d.model is None and d.policy_reasons[0] == pol.FEATURES_UNAVAILABLE and d.challenger is None
    assert d.to_dict()["inputs"] == {"buyer_late_repayment_rate": None, "buyer_orders_30d": None}


def test_unknown_values_are_imputed_not_unavailable(champion):
    d = decide(
        _request(Money(1_000, "GBP")),
        {"buyer_late_repayment_rate": None, "buyer_orders_30d": float("nan")},
        champion,
        None,
        POLICY,
    )
    assert d.model is not None and d.missing_features == ()
    assert d.to_dict()["inputs"]["buyer_orders_30d"] is None
