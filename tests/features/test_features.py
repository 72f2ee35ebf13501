"""The feature definitions, their event-time clock and the batch runtime.

The central property: for any set of events, arriving in any order that stays within the
allowed lateness, folding them event by event through the pure definitions (what the
streaming runtime does) gives exactly the batch runtime's values for every request.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import random
import statistics
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline import config
from clearline.features import batch
from clearline.features.definitions import (
    DEFAULT_SPEC,
    NEEDS_ATTRIBUTION,
    Attribution,
    BuyerState,
    Fact,
    FeatureConfigError,
    MerchantState,
    Spec,
    apply_buyer,
    apply_merchant,
    attribute_payment,
    buyer_feature_names,
    fact_of,
    merchant_ticket_names,
    read_buyer,
    read_merchant,
    spec_from_config,
    ticket_zscore,
)
from clearline.features.event_time import BUYER, MERCHANT, Clock, FeatureRow, LateEvent, flush, on_fact
from clearline.features.stream_state import StreamState, advance, finish
from tests.contract.test_events import events as contract_events

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
SMALL_SPEC = Spec(
    windows=(("10m", 600), ("1h", 3600), ("1d", 86400)), merchant_window=("1d", 86400), allowed_lateness_s=1800
)


# --------------------------------------------------------------------------- helpers


def fold(facts: list[Fact], spec: Spec) -> tuple[dict[str, dict], list[LateEvent]]:
    """What the streaming runtime does, without Bytewax: attribute by payment, one clock
    per buyer and per merchant, facts in list (arrival) order, flush at the end."""
    payments: dict = {}
    clocks: dict = {}
    out: list = []

    def to(entity, f):
        key = (entity.name, entity.key(f))
        clock, emitted = on_fact(entity, clocks.get(key, Clock(entity.empty)), f, spec)
        clocks[key] = clock
        out.extend(emitted)

    for f in facts:
        if MERCHANT.wants(f):
            to(MERCHANT, f)
        if f.event_type in NEEDS_ATTRIBUTION or f.event_type == "payment.authorized":
            payments[f.payment_id], released = attribute_payment(payments.get(f.payment_id), f)
        else:
            released = [f]
        for g in released:
            if BUYER.wants(g):
                to(BUYER, g)
    for (name, _), clock in list(clocks.items()):
        _, emitted = flush(BUYER if name == "buyer" else MERCHANT, clock, spec)
        out.extend(emitted)
    rows: dict[str, dict] = {}
    for o in out:
        if isinstance(o, FeatureRow):
            rows.setdefault(o.request.event_id, {}).update(o.values)
    return rows, [o for o in out if isinstance(o, LateEvent)]


def frame(facts: list[Fact]) -> pl.DataFrame:
    return pl.DataFrame(
        [{k: getattr(f, k) for k in batch.FACTS_SCHEMA} for f in facts], schema=batch.FACTS_SCHEMA, orient="row"
    )


def batch_rows(facts: list[Fact], spec: Spec) -> dict[str, dict]:
    out = batch.order_features(frame(facts), spec)
    names = out.columns[len(batch.ORDER_COLUMNS) :]
    return {r["event_id"]: {k: r[k] for k in names} for r in out.iter_rows(named=True)}


# --------------------------------------------------------------------------- generated histories

BUYERS, MERCHANTS = ("b1", "b2"), ("m1", "m2")


@st.composite
def histories(draw) -> list[Fact]:
    """A few days of two buyers at two merchants: orders (card and terms, two
    currencies), payments with refunds, chargebacks and voids after them, repayments and
    write-offs of terms orders. Minute resolution, so events often share an instant."""
    minute = st.integers(0, 4 * 1440)
    facts: list[Fact] = []
    n = 0

    def new_id() -> str:
        nonlocal n
        n += 1
        return f"e{n:04d}"

    for _ in range(draw(st.integers(1, 25))):
        t = T0 + timedelta(minutes=draw(minute))
        buyer, merchant = draw(st.sampled_from(BUYERS)), draw(st.sampled_from(MERCHANTS))
        currency = draw(st.sampled_from(["USD", "USD", "EUR"]))
        amount = draw(st.integers(1, 10**7))
        oid = f"o{len(facts)}"
        terms = draw(st.booleans())
        days = draw(st.integers(0, 2)) if terms else 0
        due = (t + timedelta(days=days)).date() if terms and draw(st.booleans()) else None
        facts.append(
            Fact(
                new_id(),
                "order.created",
                t,
                merchant,
                buyer,
                oid,
                None,
                amount,
                currency,
                "terms" if terms else "card",
                days,
                due,
            )
        )
        if terms:
            for _ in range(draw(st.integers(0, 2))):
                later = t + timedelta(minutes=draw(st.integers(0, 3 * 1440)))
                facts.append(
                    Fact(
                        new_id(),
                        "buyer.repayment",
                        later,
                        merchant,
                        buyer,
                        oid,
                        None,
                        draw(st.integers(1, amount)),
                        currency,
                        days_late=draw(st.integers(0, 3)),
                    )
                )
            if draw(st.integers(0, 4)) == 0:
                later = t + timedelta(minutes=draw(st.integers(0, 3 * 1440)))
                facts.append(Fact(new_id(), "buyer.default", later, merchant, buyer, oid, None, amount, currency))
        else:
            pid = f"p{len(facts)}"
            facts.append(Fact(new_id(), "payment.authorized", t, merchant, buyer, oid, pid, amount, currency))
            for kind in draw(
                st.lists(st.sampled_from(["payment.refunded", "chargeback.opened", "payment.voided"]), max_size=2)
            ):
                later = t + timedelta(minutes=draw(st.integers(0, 2 * 1440)))
                facts.append(
                    Fact(new_id(), kind, later, merchant, None, None, pid, draw(st.integers(1, amount)), currency)
                )
    return facts


def arrivals(facts: list[Fact], seed: int, within_s: int) -> list[Fact]:
    """An arrival order in which each event is delayed by less than `within_s`."""
    rng = random.Random(seed)
    return sorted(facts, key=lambda f: f.occurred_at + timedelta(seconds=rng.uniform(0, within_s)))


# --------------------------------------------------------------------------- parity and invariants


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(0, 2**32))
def test_event_by_event_fold_equals_batch_for_any_arrival_within_lateness(facts, seed):
    arrived = arrivals(facts, seed, SMALL_SPEC.allowed_lateness_s - 1)
    streamed, late = fold(arrived, SMALL_SPEC)
    assert late == []
    assert streamed == batch_rows(facts, SMALL_SPEC)


@settings(max_examples=60, deadline=None)
@given(histories())
def test_windows_are_monotone_and_exposure_is_financed_minus_repaid(facts):
    rows = batch.order_features(frame(facts), SMALL_SPEC)
    labels = [w for w, _ in SMALL_SPEC.windows]
    for r in rows.iter_rows(named=True):
        counts = [r[f"buyer_orders_{w}"] for w in labels]
        amounts = [r[f"buyer_amount_{w}"] for w in labels]
        assert counts == sorted(counts) and amounts == sorted(amounts)
        before = [
            f
            for f in facts
            if f.occurred_at < r["decision_time"] and f.buyer_id == r["buyer_id"] and f.currency == r["currency"]
        ]
        financed = sum(
            f.amount_minor for f in before if f.event_type == "order.created" and f.payment_method == "terms"
        )
        repaid = sum(f.amount_minor for f in before if f.event_type == "buyer.repayment")
        assert r["buyer_exposure_minor"] == financed - repaid
        assert r["buyer_orders_1d"] <= sum(
            1
            for f in facts
            if f.event_type == "order.created" and f.buyer_id == r["buyer_id"] and f.occurred_at < r["decision_time"]
        )


@settings(max_examples=40, deadline=None)
@given(histories(), st.integers(0, 4 * 1440))
def test_no_leakage_events_at_or_after_a_request_never_change_its_features(facts, cut_minute):
    cut = T0 + timedelta(minutes=cut_minute)
    full = batch_rows(facts, SMALL_SPEC)
    past = batch_rows([f for f in facts if f.occurred_at <= cut], SMALL_SPEC)
    for event_id, values in past.items():
        assert full[event_id] == values


# --------------------------------------------------------------------------- worked examples


def fact(minutes: float, event_type: str, **kw) -> Fact:
    return Fact(
        kw.pop("event_id", f"{event_type}@{minutes}"),
        event_type,
        T0 + timedelta(minutes=minutes),
        kw.pop("merchant_id", "m1"),
        **kw,
    )


def terms_order(minutes, oid, amount=10_000, due=None, **kw) -> Fact:
    return fact(
        minutes,
        "order.created",
        buyer_id="b1",
        order_id=oid,
        amount_minor=amount,
        currency="USD",
        payment_method="terms",
        terms_days=30,
        due_date=due,
        **kw,
    )


def test_days_past_due_counts_whole_days_of_open_orders_only():
    due = date(2026, 1, 6)
    history = [
        terms_order(0, "o1", due=due),
        terms_order(1, "o2", due=date(2026, 1, 8)),
        fact(
            2 * 1440, "buyer.repayment", buyer_id="b1", order_id="o2", amount_minor=10_000, currency="USD", days_late=0
        ),
    ]
    state = BuyerState()
    for f in history:
        state = apply_buyer(state, f)
    at = T0 + timedelta(days=5, hours=23)  # 2026-01-10: o1 is four days past due, o2 was repaid
    assert read_buyer(state, at, "USD")["buyer_days_past_due"] == 4
    assert read_buyer(state, T0 + timedelta(hours=20), "USD")["buyer_days_past_due"] == 0
    written_off = apply_buyer(
        state, fact(3 * 1440, "buyer.default", buyer_id="b1", order_id="o1", amount_minor=10_000, currency="USD")
    )
    features = read_buyer(written_off, at, "USD")
    assert features["buyer_days_past_due"] == 0
    assert features["buyer_exposure_minor"] == 10_000  # a write-off is not a repayment
    assert features["buyer_defaults"] == 1


def test_a_partial_repayment_keeps_the_order_open():
    state = apply_buyer(
        apply_buyer(BuyerState(), terms_order(0, "o1", due=date(2026, 1, 6))),
        fact(10, "buyer.repayment", buyer_id="b1", order_id="o1", amount_minor=4_000, currency="USD", days_late=2),
    )
    got = read_buyer(state, T0 + timedelta(days=3), "USD")
    assert got["buyer_days_past_due"] == 2 and got["buyer_exposure_minor"] == 6_000
    assert got["buyer_late_repayment_rate"] == 1.0


def test_amounts_count_only_the_reading_currency_counts_count_all():
    state = BuyerState()
    for i, cur in enumerate(["USD", "EUR", "USD"]):
        state = apply_buyer(
            state,
            fact(
                i,
                "order.created",
                buyer_id="b1",
                order_id=f"o{i}",
                amount_minor=100 * (i + 1),
                currency=cur,
                payment_method="card",
                terms_days=0,
            ),
        )
    usd, eur = (read_buyer(state, T0 + timedelta(minutes=10), c) for c in ("USD", "EUR"))
    assert usd["buyer_orders_1h"] == eur["buyer_orders_1h"] == 3
    assert (usd["buyer_amount_1h"], eur["buyer_amount_1h"]) == (400, 200)


def test_a_window_includes_its_start_and_excludes_the_reading_instant():
    state = apply_buyer(
        BuyerState(),
        fact(
            0,
            "order.created",
            buyer_id="b1",
            order_id="o",
            amount_minor=5,
            currency="USD",
            payment_method="card",
            terms_days=0,
        ),
    )
    assert read_buyer(state, T0 + timedelta(hours=1), "USD")["buyer_orders_1h"] == 1
    assert read_buyer(state, T0 + timedelta(hours=1, microseconds=1), "USD")["buyer_orders_1h"] == 0


def test_rates_are_null_without_a_denominator():
    got = read_buyer(BuyerState(), T0, "USD")
    assert got["buyer_refund_rate"] is None and got["buyer_late_repayment_rate"] is None
    assert set(got) == set(buyer_feature_names())


@given(st.lists(st.integers(0, 10**9), min_size=2, max_size=40), st.integers(0, 10**9))
def test_ticket_zscore_is_the_sample_zscore(tickets, amount):
    z = ticket_zscore(amount, len(tickets), sum(tickets), sum(t * t for t in tickets))
    if len(set(tickets)) == 1:
        assert z is None
    else:
        expected = (amount - statistics.fmean(tickets)) / statistics.stdev(tickets)
        assert math.isclose(z, expected, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**13), st.sampled_from(["IDR", "IDR", "EUR"])), min_size=1, max_size=12))
def test_the_merchants_ticket_aggregates_stay_exact_past_64_bits_in_both_runtimes(tickets):
    """Count and sum of squares of the tickets in the reading currency (IDR amounts squared
    pass 2^63): the batch frame (Int128) and `read_merchant` give the same integers."""
    orders = [
        fact(
            i,
            "order.created",
            buyer_id="b1",
            order_id=f"o{i}",
            amount_minor=amount,
            currency=cur,
            payment_method="terms",
            terms_days=30,
            event_id=f"e{i:02d}",
        )
        for i, (amount, cur) in enumerate(tickets)
    ]
    last = orders[-1]
    state = MerchantState()
    for o in orders[:-1]:
        state = apply_merchant(state, o, SMALL_SPEC)
    direct = read_merchant(state, last.occurred_at, last.currency, last.amount_minor, SMALL_SPEC)
    same = [a for a, c in tickets[:-1] if c == last.currency]
    n_name, q_name = merchant_ticket_names(SMALL_SPEC)
    assert (direct[n_name], direct["merchant_volume_1d"], direct[q_name]) == (
        len(same),
        sum(same),
        sum(a * a for a in same),
    )
    assert direct["merchant_ticket_zscore"] == ticket_zscore(
        last.amount_minor, len(same), sum(same), sum(a * a for a in same)
    )
    from_batch = batch_rows(orders, SMALL_SPEC)[last.event_id]
    assert {k: from_batch[k] for k in direct} == direct


# --------------------------------------------------------------------------- event-time clock


def test_a_late_event_is_reported_counted_and_still_counts_for_later_requests():
    spec = SMALL_SPEC  # 30 minutes of allowed lateness
    arrived = [
        terms_order(0, "o1", event_id="r1"),
        terms_order(60, "o2", event_id="r2"),
        terms_order(200, "o3", event_id="r3"),  # r1 and r2 become final: the watermark is at 170
        fact(
            30,
            "order.created",
            event_id="late",
            buyer_id="b1",
            order_id="o0",
            amount_minor=7,
            currency="USD",
            payment_method="card",
            terms_days=0,
        ),
        terms_order(400, "o4", event_id="r4"),
    ]
    rows, late = fold(arrived, spec)
    assert sorted((x.event_id, x.entity) for x in late) == [("late", "buyer"), ("late", "merchant")]
    assert late[0].behind_s == (170 - 30) * 60
    assert rows["r2"]["buyer_orders_1d"] == 1  # final before the late order arrived: it missed it
    assert rows["r3"]["buyer_orders_1d"] == 3  # not yet final when it arrived: it sees it
    assert rows["r4"]["buyer_orders_1d"] == 4
    assert batch_rows(arrived, spec)["r2"]["buyer_orders_1d"] == 2  # the batch runtime sees everything
    clock = Clock(BUYER.empty)
    for f in arrived:
        clock, _ = on_fact(BUYER, clock, f, spec)
    assert clock.late == 1


def test_a_late_request_gets_no_features_only_a_report():
    arrived = [
        terms_order(0, "o1", event_id="r1"),
        terms_order(300, "o2", event_id="r2"),
        terms_order(100, "o3", event_id="r3"),
    ]
    rows, late = fold(arrived, SMALL_SPEC)
    assert "r3" not in rows and {x.event_id for x in late} == {"r3"}


def test_requests_wait_for_the_watermark_and_flush_releases_the_rest():
    clock = Clock(BUYER.empty)
    clock, out = on_fact(BUYER, clock, terms_order(0, "o1", event_id="r1"), SMALL_SPEC)
    assert out == []  # could still be preceded by an event up to 30 minutes late
    clock, out = on_fact(BUYER, clock, terms_order(31, "o2", event_id="r2"), SMALL_SPEC)
    assert [o.request.event_id for o in out] == ["r1"]
    _, out = flush(BUYER, clock, SMALL_SPEC)
    assert [o.request.event_id for o in out] == ["r2"] and out[0].values["buyer_orders_1h"] == 1


def test_refunds_wait_for_their_payments_authorization():
    refund = fact(5, "payment.refunded", payment_id="p1", amount_minor=3, currency="USD")
    auth = fact(0, "payment.authorized", buyer_id="b9", payment_id="p1", order_id="o1", amount_minor=9, currency="USD")
    known, out = attribute_payment(None, refund)
    assert out == []
    known, out = attribute_payment(known, auth)
    assert [(f.event_type, f.buyer_id) for f in out] == [("payment.authorized", "b9"), ("payment.refunded", "b9")]
    _, out = attribute_payment(known, refund)
    assert out[0].buyer_id == "b9"


def test_the_stream_keeps_an_authorized_payment_as_its_buyer_and_attributes_across_a_snapshot():
    """The streaming state remembers an authorized payment by its buyer id alone (what the
    epoch snapshots pickle most of); a refund before the authorization waits for it, one
    after it, past a snapshot's pickle round trip, still reaches the buyer."""
    state = StreamState()
    early = fact(5, "payment.refunded", payment_id="p1", amount_minor=3, currency="USD")
    auth = fact(0, "payment.authorized", buyer_id="b9", payment_id="p1", order_id="o1", amount_minor=9, currency="USD")
    later = fact(10, "payment.refunded", event_id="r2", payment_id="p1", amount_minor=2, currency="USD")
    advance(state, [early], DEFAULT_SPEC)
    assert state.payments["p1"] == Attribution(None, (early,))
    advance(state, [auth], DEFAULT_SPEC)
    assert state.payments["p1"] == "b9"
    state = pickle.loads(pickle.dumps(state.snapshot()))
    advance(state, [later], DEFAULT_SPEC)
    finish(state, DEFAULT_SPEC)
    assert (state.buyers["b9"].state.payments, state.buyers["b9"].state.refunds) == (1, 2)


# --------------------------------------------------------------------------- configuration


def test_the_default_spec_is_what_configs_features_yaml_says():
    assert spec_from_config(config.load("features")) == DEFAULT_SPEC
    assert batch.MODEL_FEATURES[:4] == ("buyer_orders_1h", "buyer_orders_24h", "buyer_orders_7d", "buyer_orders_30d")


@pytest.mark.parametrize(
    "cfg, named",
    [
        ({"windows": ["1h", "1x"], "merchant_window": "30d", "allowed_lateness": "1h"}, "'1x'"),
        ({"windows": ["24h", "1h"], "merchant_window": "30d", "allowed_lateness": "1h"}, "ascending"),
        ({"windows": ["1h"], "merchant_window": "30d"}, "allowed_lateness"),
        ({"windows": [], "merchant_window": "30d", "allowed_lateness": "1h"}, "non-empty"),
    ],
)
def test_a_bad_feature_config_is_named(cfg, named):
    with pytest.raises(FeatureConfigError, match=named):
        spec_from_config(cfg)


# --------------------------------------------------------------------------- reading events


@given(contract_events())
def test_a_fact_takes_the_payload_fields_its_class_has_and_none_for_the_others(event):
    """`fact_of` learns once per payload class which fields it has; for any contract
    event, each flattened field is the payload's own value or, for a class without it, None."""
    has = {f.name: getattr(event.payload, f.name) for f in dataclasses.fields(event.payload)}
    amount = has.get("amount")
    fact = fact_of(event)
    assert (fact.event_id, fact.event_type, fact.occurred_at, fact.merchant_id) == (
        event.event_id,
        event.event_type,
        event.occurred_at,
        event.merchant_id,
    )
    assert (fact.amount_minor, fact.currency) == ((amount.minor, amount.currency) if amount else (None, None))
    for name in ("buyer_id", "order_id", "payment_id", "payment_method", "terms_days", "due_date", "days_late"):
        assert getattr(fact, name) == has.get(name), name
    assert fact_of(event, buyer_id="b_attributed").buyer_id == "b_attributed"  # attributed through its payment


@pytest.mark.slow
def test_a_world_and_its_archive_read_as_the_same_facts(small_world, tmp_path):
    from clearline import events
    from clearline.ledger import archive
    from clearline.ledger.model import Source

    world, _ = small_world
    lines = (world / "events" / "events.jsonl").read_bytes().splitlines()
    rows = [(events.decode(raw), Source("payments.events", i % 3, i), raw) for i, raw in enumerate(lines)]
    for start in range(0, len(rows), 5000):
        archive.write_batch(tmp_path, 0, rows[start : start + 5000])
    from_world, from_archive = batch.read_events(world), batch.read_events(tmp_path)
    kept = sum(1 for e, _, _ in rows if e.event_type in batch.FEATURE_EVENTS)
    assert from_world.height == kept > len(lines) // 3
    assert from_archive.equals(from_world)
    assert batch.order_features(from_archive).equals(batch.order_features(from_world))


def test_order_features_has_the_promised_columns_and_types(small_world):
    world, manifest = small_world
    rows = batch.order_features(batch.read_events(world))
    assert rows.columns == [*batch.ORDER_COLUMNS, *batch.MODEL_FEATURES, *batch.TICKET_COLUMNS]
    assert not set(batch.TICKET_COLUMNS) & set(batch.MODEL_FEATURES)  # kept for the API, not model inputs
    truth = pl.read_parquet(world / "truth" / "orders.parquet").filter(pl.col("payment_method") == "terms")
    assert sorted(rows["order_id"]) == sorted(truth["order_id"])
    assert rows["decision_time"].dtype == pl.Datetime("us", "UTC")
    for name in batch.MODEL_FEATURES:
        expected = pl.Float64 if name.endswith(("_rate", "_zscore")) else pl.Int64
        assert rows[name].dtype == expected, name
    assert [rows[n].dtype for n in batch.TICKET_COLUMNS] == [pl.Int64, pl.Int128]
    assert rows.select(pl.col("buyer_orders_30d").max()).item() > 0  # the world has history to see
    assert batch.order_features(pl.read_parquet(world / "events" / "events.parquet")).equals(rows)  # raw frame too


def test_a_malformed_event_is_named(tmp_path):
    (tmp_path / "events").mkdir()
    good = {
        "order_id": "o1",
        "buyer_id": "b1",
        "amount": {"minor": 5, "currency": "USD"},
        "payment_method": "terms",
        "terms_days": 30,
        "due_date": None,
    }
    broken = dict(good, buyer_id=None)
    pl.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "event_type": ["order.created"] * 2,
            "occurred_at": [T0, T0],
            "merchant_id": ["m1", "m1"],
            "reseller_id": ["r", "r"],
            "schema_version": [1, 1],
            "payload": [json.dumps(good), json.dumps(broken)],
        }
    ).write_parquet(tmp_path / "events" / "events.parquet")
    with pytest.raises(batch.EventsReadError, match=r"e2 \(order.created\): buyer_id$"):
        batch.read_events(tmp_path)
    written = pl.read_parquet(tmp_path / "events" / "events.parquet")
    written.with_columns(
        pl.when(pl.col("event_id") == "e2")
        .then(pl.lit('{"order_id": "o2",'))
        .otherwise(pl.col("payload"))
        .alias("payload")
    ).write_parquet(tmp_path / "events" / "events.parquet")
    with pytest.raises(batch.EventsReadError, match="event e2: its payload is not JSON"):
        batch.read_events(tmp_path)
    twice = written.head(1)
    pl.concat([twice, twice]).write_parquet(tmp_path / "events" / "events.parquet")
    with pytest.raises(batch.EventsReadError, match="1 event id.* more than once, first e1"):
        batch.read_events(tmp_path)
    (tmp_path / "events" / "events.parquet").unlink()
    with pytest.raises(batch.EventsReadError, match="neither a world folder"):
        batch.read_events(tmp_path)
