"""The payout run's hold rule (`Freezes.holding_payout`) and a held payout's release
(`release_of`), as plain functions: a payout is held by a freeze on its merchant or on the
bank account it leaves from, placed at or before the payout; a release sends exactly the
held payout, on the UTC day it is made, with an id that only the held event decides."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearline import events
from clearline.events import Event, Money, PayoutHeld
from clearline.freezes import Freezes, release_of

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
MERCHANTS = ("m_1", "m_2", "m_3")
ACCOUNTS = ("GB29NWBK60161331926819", "DE89370400440532013000")

freeze = st.builds(
    lambda kind, i, hours: {
        "kind": kind,
        "target": (MERCHANTS if kind == "merchant" else ACCOUNTS)[i % (3 if kind == "merchant" else 2)],
        "frozen_at": (T0 + timedelta(hours=hours)).isoformat(),
    },
    st.sampled_from(["merchant", "bank_account", "processor"]),
    st.integers(0, 5),
    st.integers(-48, 48),
)


@given(st.lists(freeze, max_size=6), st.sampled_from(MERCHANTS), st.sampled_from(ACCOUNTS), st.integers(-72, 72))
def test_a_payout_is_held_by_its_merchants_freeze_else_its_accounts_once_placed(active, merchant, account, hours):
    at = T0 + timedelta(hours=hours)
    found = Freezes.of(active).holding_payout(merchant, account, at)
    last = {(f["kind"], f["target"]): f for f in active}  # a snapshot holds one freeze per target
    placed = {k: f for k, f in last.items() if datetime.fromisoformat(f["frozen_at"]) <= at}
    expected = placed.get(("merchant", merchant)) or placed.get(("bank_account", account))
    assert found == expected


def test_a_processor_freeze_or_a_payout_sent_before_the_freeze_holds_nothing():
    frozen = Freezes.of(
        [
            {"kind": "processor", "target": "adyen", "frozen_at": T0.isoformat()},
            {"kind": "merchant", "target": "m_1", "frozen_at": T0.isoformat()},
        ]
    )
    assert frozen.holding_payout("m_2", ACCOUNTS[0], T0 + timedelta(days=1)) is None
    assert frozen.holding_payout("m_1", ACCOUNTS[0], T0 - timedelta(seconds=1)) is None
    assert frozen.holding_payout("m_1", None, T0)["target"] == "m_1"


def held(n: int = 1, minor: int = 12_345) -> Event:
    payload = PayoutHeld(f"mpo_{n}", Money(minor, "GBP"), date(2026, 3, 2), 3, "merchant", "m_1")
    return Event(f"evt_{n}", "payout.held", T0, "m_1", "rs_001", payload)


def test_a_release_sends_the_held_payout_on_the_utc_day_it_is_made_and_keeps_its_id_on_a_retry():
    late_evening_in_new_york = datetime(2026, 4, 1, 22, 30, tzinfo=timezone(timedelta(hours=-4)))
    first = release_of(held(), "amy", late_evening_in_new_york)
    assert first.event_type == "payout.released" and (first.merchant_id, first.reseller_id) == ("m_1", "rs_001")
    assert first.payload == events.PayoutReleased("mpo_1", Money(12_345, "GBP"), date(2026, 4, 2), "amy")
    assert events.decode(events.encode(first)) == first  # within the contract
    retry = release_of(held(), "bob", late_evening_in_new_york + timedelta(days=3))
    assert retry.event_id == first.event_id != release_of(held(2), "amy", late_evening_in_new_york).event_id


def test_only_a_held_payout_can_be_released():
    sent = Event(
        "evt_9", "merchant.payout", T0, "m_1", "rs_001", events.MerchantPayout("mpo_9", Money(5, "GBP"), T0.date(), 1)
    )
    with pytest.raises(ValueError, match="not a held payout"):
        release_of(sent, "amy", T0)
