"""The decision API's merchant ticket z-score: computed for the request's own amount from
the merchant's online row (ticket count, volume, sum of squares), it is what the stream's
`read_merchant` gives for the same merchant state and amount — and so the API decides an
order as the stream does when both see the same state.

The online row is the merchant's state as of its last request (events strictly before
it). "The same state" for the API is therefore an order at that same instant: here a
twin of a real request, same buyer, merchant, time and currency, another amount.
"""

from __future__ import annotations

import dataclasses
import json
import random
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clearline import config, events
from clearline.events import Money
from clearline.features import batch
from clearline.features import store as fstore
from clearline.features.definitions import (
    DEFAULT_SPEC,
    Fact,
    MerchantState,
    apply_merchant,
    merchant_ticket_names,
    read_merchant,
)
from clearline.features.event_time import FeatureRow
from clearline.features.streaming import run_bounded
from clearline.models.api_core import OnlineFeatures, is_money_feature, request_features

warnings.filterwarnings("ignore", category=DeprecationWarning, module="ibis")

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
TICKETS, SUMSQ = merchant_ticket_names()


def order(minute: int, amount: int, currency: str, n: int) -> Fact:
    return Fact(
        f"e{n:03d}",
        "order.created",
        T0 + timedelta(minutes=minute),
        "m1",
        "b1",
        f"o{n}",
        None,
        amount,
        currency,
        "terms",
        30,
    )


def stored(row: FeatureRow) -> dict:
    """The merchant's row as the online store keeps it: through the push frame the
    stream's sink builds (the sum of squares becomes decimal text), without key and times."""
    got = fstore.rows_frame([row], "merchant").row(0, named=True)
    return {k: v for k, v in got.items() if k not in ("merchant_id", "event_timestamp", "created")}


def state_before(orders: list[Fact], at: datetime) -> MerchantState:
    state = MerchantState()
    for f in sorted(orders, key=lambda f: f.occurred_at):
        if f.occurred_at < at:
            state = apply_merchant(state, f)
    return state


NO_BUYER = dict.fromkeys(("currency", "buyer_orders_1h"))  # Feast's answer for a buyer it never saw
amounts = st.integers(1, 10**13)  # squares of IDR-sized amounts pass 2^63
currencies = st.sampled_from(["IDR", "IDR", "EUR"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40 * 1440), amounts, currencies), max_size=30),
    st.integers(10 * 1440, 45 * 1440),
    amounts,
    currencies,
    amounts,
    currencies,
)
@example([(0, 1, "IDR"), (0, 2, "IDR")], 1, 1, "IDR", 2, "IDR")  # the stored z-score is -0.707, this order's +0.707
def test_the_apis_zscore_is_read_merchants_for_the_same_state_and_amount(
    history, minute, last_amount, last_currency, amount, currency
):
    """The online row was read for the merchant's last request (`last_amount`); the API's
    request brings its own amount, maybe in another currency."""
    orders = [order(m, a, c, i) for i, (m, a, c) in enumerate(history)]
    last = order(minute, last_amount, last_currency, len(orders))
    state = state_before(orders, last.occurred_at)
    row = FeatureRow("merchant", "m1", last, read_merchant(state, last.occurred_at, last_currency, last_amount))

    got = request_features({"buyer": NO_BUYER, "merchant": stored(row)}, Money(amount, currency))
    expected = read_merchant(state, last.occurred_at, currency, amount)

    if currency == last_currency:
        assert got == expected  # every value, the z-score to the last bit, None included
    else:  # the row's sums are in another currency: only counts and rates are lent
        assert got == {k: v for k, v in expected.items() if not is_money_feature(k)}
        assert TICKETS not in got and "merchant_ticket_zscore" not in got


def test_a_sum_of_squares_past_64_bits_survives_feast_and_gives_the_streams_zscore(tmp_path):
    """Through a real Feast SQLite online store: pushed as the stream's sink pushes, read
    as the API reads (`OnlineFeatures`)."""
    tickets = [5 * 10**12, 7 * 10**12, 9 * 10**12 + 1]
    orders = [order(i, a, "IDR", i) for i, a in enumerate(tickets)]
    last = order(10, 6 * 10**12, "IDR", 9)
    state = state_before(orders, last.occurred_at)
    settings_ = fstore.FeastSettings("clearline", tmp_path / "feast")
    fstore.apply(settings_)
    fs = fstore.open_store(settings_)
    fstore.push(
        fs,
        fstore.rows_frame(
            [FeatureRow("merchant", "m1", last, read_merchant(state, last.occurred_at, "IDR", last.amount_minor))],
            "merchant",
        ),
        "merchant",
        offline=False,
    )

    rows = OnlineFeatures(fs).read("nobody", "m1")
    assert rows["merchant"][SUMSQ] == str(sum(t * t for t in tickets))  # exact text, no 64-bit wrap
    for amount in (1, 8 * 10**12, 10**13):
        got = request_features(rows, Money(amount, "IDR"))
        assert got == read_merchant(state, last.occurred_at, "IDR", amount)
        assert got[SUMSQ] > 2**63 and got["merchant_ticket_zscore"] is not None


# --------------------------------------------------------------------------- API against stream


def _twins(arrived: list[events.Event], share: float, seed: int) -> tuple[list[events.Event], dict[str, str]]:
    """The arrivals with, right after some underwriting requests, a twin: same buyer,
    merchant, instant and currency, another order id and amount. Twin event id -> its
    original's."""
    rng = random.Random(seed)
    out, twin_of = [], {}
    for e in arrived:
        out.append(e)
        if e.event_type == "order.created" and e.payload.payment_method == "terms" and rng.random() < share:
            p = e.payload
            amount = Money(max(1, int(p.amount.minor * rng.uniform(0.2, 4.0))), p.amount.currency)
            twin = dataclasses.replace(
                e,
                event_id=f"{e.event_id}_twin",
                payload=dataclasses.replace(p, order_id=f"{p.order_id}_twin", amount=amount),
            )
            out.append(twin)
            twin_of[twin.event_id] = e.event_id
    return out, twin_of


def _zscore_model(rows: list[dict]):
    """A gradient-boosted model whose score hangs on the merchant's ticket z-score (its
    label is a noisy z > 0.3), so a wrong z-score moves the decision, not only the record."""
    import pandas as pd

    from clearline.models.scorer import ModelRef, Scorer, medians
    from clearline.models.train import gbm
    from clearline.models.training_set import model_features

    features = model_features(batch.MODEL_FEATURES)
    x = pd.DataFrame([{f: r[f] for f in features} for r in rows], columns=list(features), dtype=float)
    rng = random.Random(5)
    y = [int((z == z and z > 0.3) != (rng.random() < 0.1)) for z in x["merchant_ticket_zscore"]]
    pipeline = gbm({"max_iter": 40, "max_depth": 3, "random_state": 1}).fit(x, y)
    return Scorer(ModelRef("zscore-test", "1"), pipeline, features, medians(x, features))


@pytest.mark.slow  # a Bytewax run over 8,000 events, a model fit, a Feast store: about 20 s
def test_the_api_decides_a_twin_order_as_the_stream_does_from_the_state_the_stream_pushed(small_world, tmp_path):
    """For a sample of requests: the stream's feature rows for the original (buyer and
    merchant, as its Feast sink pushes them) are put online; the API (the real
    `DecisionService`, Feast, the champion) decides the twin; the stream decided the twin
    from the same state. Same decision, limit, band, score, reason codes and inputs."""
    from clearline.models.api import DecisionRequest, DecisionService
    from clearline.models.api_core import ApiKeys, MerchantDirectory
    from clearline.models.api_store import DecisionStore
    from clearline.models.decision import UnderwritingRequest, decide
    from clearline.models.policy import Policy
    from clearline.models.request_inputs import has_history
    from clearline.models.request_inputs import request_features as stream_features

    world, _ = small_world
    arrived = [events.decode(raw) for raw in (world / "events" / "events.jsonl").read_bytes().splitlines()[:8000]]
    with_twins, twin_of = _twins(arrived, share=0.5, seed=7)
    orders, entity_rows, late = run_bounded(with_twins, batch_size=500)
    assert late == []
    by_event = {r["event_id"]: r for r in orders}
    rows_of = {}
    for r in entity_rows:
        rows_of.setdefault(r.request.event_id, {})[r.entity] = r

    champion = _zscore_model(orders)
    policy = Policy.from_config(config.load("policy"))
    feast = fstore.FeastSettings("clearline", tmp_path / "feast")
    fstore.apply(feast)
    fs = fstore.open_store(feast)
    owners = {r["merchant_id"]: "rs_001" for r in orders}
    service = DecisionService(
        policy,
        champion,
        None,
        ApiKeys.from_config(config.load("tenants"), environ={}),
        MerchantDirectory(owners),
        OnlineFeatures(fs),
        DecisionStore(tmp_path / "d.db"),
    )

    rng = random.Random(3)
    checked = moved_by_zscore = 0
    for twin_id in sorted(rng.sample(sorted(twin_of), 120)):
        original, twin = rows_of[twin_of[twin_id]], by_event[twin_id]
        if not has_history(twin, DEFAULT_SPEC):
            continue  # a buyer's first order: the stream leaves its zero features out, Feast holds them
        stream_inputs = stream_features(twin, DEFAULT_SPEC)
        for entity, row in original.items():
            fstore.push(fs, fstore.rows_frame([row], entity), entity, offline=False)
        streamed = decide(UnderwritingRequest.from_row(twin), stream_inputs, champion, None, policy).to_dict()
        body = DecisionRequest.model_validate(
            {
                "order_id": twin["order_id"],
                "buyer_id": twin["buyer_id"],
                "merchant_id": twin["merchant_id"],
                "amount": {"minor": twin["amount_minor"], "currency": twin["currency"]},
                "terms_days": twin["terms_days"],
                "occurred_at": twin["decision_time"].isoformat(),
            }
        )
        stored_decision, new = service.decide("rs_001", body)
        assert new
        api = json.loads(stored_decision.record)
        for key in (
            "decision",
            "credit_limit",
            "band",
            "score",
            "policy_reasons",
            "model",
            "reason_codes",
            "inputs",
            "missing_features",
            "decision_time",
            "amount",
        ):
            assert api[key] == streamed[key], (twin_id, key)
        checked += 1
        if streamed["inputs"]["merchant_ticket_zscore"] is not None:
            as_before = dict(stream_inputs, merchant_ticket_zscore=None)  # what the API used to send
            moved_by_zscore += (
                decide(UnderwritingRequest.from_row(twin), as_before, champion, None, policy).score != streamed["score"]
            )
    assert checked >= 100, checked  # of 120: the rest are buyers' first orders
    assert moved_by_zscore >= checked // 2, moved_by_zscore  # the z-score mattered to these decisions
