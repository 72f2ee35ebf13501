"""The order windows of buyer and merchant state are found by bisection in a tuple kept in
event-time order; whatever order the orders arrive in (late ones included), every read
must equal a plain scan of the orders kept — each arriving order forgets those more than
the retention before it — that happened inside the window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.features.definitions import (
    DEFAULT_SPEC,
    BuyerState,
    Fact,
    MerchantState,
    apply_buyer,
    apply_merchant,
    read_buyer,
    read_merchant,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
orders = st.lists(
    st.tuples(st.integers(0, 90 * 24 * 60), st.integers(1, 10**7), st.sampled_from(["EUR", "USD"])),
    min_size=1,
    max_size=40,
)


def fact(i: int, minute: int, minor: int, currency: str) -> Fact:
    return Fact(
        f"evt_{i}",
        "order.created",
        T0 + timedelta(minutes=minute),
        "m_1",
        "b_1",
        f"ord_{i}",
        None,
        minor,
        currency,
        "card",
    )


@settings(max_examples=150, deadline=None)
@given(arrivals=orders, at_minute=st.integers(0, 91 * 24 * 60), currency=st.sampled_from(["EUR", "USD"]))
def test_windows_read_the_same_whatever_the_arrival_order(arrivals, at_minute, currency):
    facts = [fact(i, *o) for i, o in enumerate(arrivals)]
    buyer, merchant = BuyerState(), MerchantState()
    for f in facts:  # arrival order: apply_* is called for late ones too
        buyer, merchant = apply_buyer(buyer, f), apply_merchant(merchant, f)
    at = T0 + timedelta(minutes=at_minute)
    kept: list[Fact] = []
    for f in facts:
        kept = [k for k in [*kept, f] if k.occurred_at >= f.occurred_at - timedelta(seconds=DEFAULT_SPEC.retention_s)]
    got = read_buyer(buyer, at, currency)
    for label, secs in DEFAULT_SPEC.windows:
        inside = [f for f in kept if at - timedelta(seconds=secs) <= f.occurred_at < at]
        assert got[f"buyer_orders_{label}"] == len(inside)
        assert got[f"buyer_amount_{label}"] == sum(f.amount_minor for f in inside if f.currency == currency)
    label, secs = DEFAULT_SPEC.merchant_window
    same = [
        f.amount_minor for f in kept if at - timedelta(seconds=secs) <= f.occurred_at < at and f.currency == currency
    ]
    m = read_merchant(merchant, at, currency, 1000)
    assert (m[f"merchant_volume_{label}"], m[f"merchant_tickets_{label}"]) == (sum(same), len(same))
    assert [o[0] for o in merchant.orders] == sorted(o[0] for o in merchant.orders)
