"""Proposed adjusting entries (recon/adjustments.py): for a variance whose numbers state
the correction, the entry moves exactly the difference, on the side the difference goes,
balanced and postable by the ledger's own rule; for the rest, no proposal."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.currency import decimal_to_minor, minor_to_decimal
from clearline.events import AdjustmentLeg, AdjustmentPosted, Event, Money
from clearline.ledger.posting import post
from clearline.recon import (
    ADJUSTMENT_ACCOUNTS,
    VARIANCE_CATEGORIES,
    AdjustmentProposal,
    check_adjustment,
    propose_adjustment,
)


def text(minor: int, currency: str, prefix: str = "") -> str:
    return f"{prefix}{minor_to_decimal(minor, currency)} {currency}"


def variance(category: str, field: str, expected: str, actual: str, amount: int, currency: str = "USD") -> dict:
    return {
        "variance_id": "var_00000000000000000001",
        "category": category,
        "processor": "stripe",
        "merchant_id": "m_00004",
        "reference": "stl_1",
        "payout_id": "po_1",
        "amount_minor": amount,
        "currency": currency,
        "field": field,
        "expected": expected,
        "actual": actual,
    }


def actual_of(row: dict) -> int:
    return decimal_to_minor(row["actual"].split(" ")[-2], row["currency"])


def expected_of(row: dict) -> int:
    return decimal_to_minor(row["expected"].split(" ")[-2], row["currency"])


def leg(account: str, side: str, minor: int, currency: str = "USD") -> AdjustmentLeg:
    return AdjustmentLeg(account, side, Money(minor, currency))


def posts(p: AdjustmentProposal) -> tuple:
    """The proposal as the ledger posts it (approved by someone else): its legs as they are."""
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    payload = AdjustmentPosted(p.variance_id, p.kind, "our_error", p.memo[:1000], "alice", "bob", at, p.legs)
    return post(Event("adj_1", "adjustment.posted", at, p.merchant_id or "platform", "rs_001", payload))


def test_a_fee_overcharge_is_fee_expense_against_the_processor_receivable():
    p = propose_adjustment(variance("fee_mismatch", "fee", "2.90 USD", "3.27 USD", 37))
    assert p == AdjustmentProposal(
        "var_00000000000000000001",
        "m_00004",
        "stripe",
        "USD",
        "fee",
        (leg("fee_expense:stripe", "debit", 37), leg("processor_receivable:stripe", "credit", 37)),
        p.memo,
    )
    assert "0.37 USD more fee expense" in p.memo
    assert check_adjustment(p) == []


def test_each_rule_goes_the_way_the_difference_goes():
    under = propose_adjustment(variance("fee_mismatch", "fee", "3.27 USD", "2.90 USD", 37))
    assert [(x.account, x.side) for x in under.legs] == [
        ("processor_receivable:stripe", "debit"),
        ("fee_expense:stripe", "credit"),
    ]
    short = propose_adjustment(variance("amount_mismatch", "gross", "100.00 USD", "97.00 USD", 300))
    assert [(x.account, x.side, x.amount.minor) for x in short.legs] == [
        ("merchant_payable:m_00004", "debit", 300),
        ("processor_receivable:stripe", "credit", 300),
    ]
    refund = propose_adjustment(variance("amount_mismatch", "net", "-100.00 USD", "-90.00 USD", 1000))
    assert [(x.account, x.side) for x in refund.legs] == [
        ("processor_receivable:stripe", "debit"),
        ("merchant_payable:m_00004", "credit"),
    ]
    loss = propose_adjustment(variance("currency_fx_mismatch", "fx_rate", "0.9277", "0.913785", 139, "EUR"))
    assert (loss.kind, [(x.account, x.side, x.amount.minor) for x in loss.legs]) == (
        "fx",
        [("fx_gain_loss", "debit", 139), ("processor_receivable:stripe", "credit", 139)],
    )
    gain = propose_adjustment(variance("currency_fx_mismatch", "converted net", "90.00 EUR", "91.50 EUR", 150, "EUR"))
    assert [(x.account, x.side, x.amount.minor) for x in gain.legs] == [
        ("processor_receivable:stripe", "debit", 150),
        ("fx_gain_loss", "credit", 150),
    ]
    gone = propose_adjustment(variance("missing_at_processor", "line", "net 55.00 USD", "absent", 5500))
    assert (gone.kind, [(x.account, x.side, x.amount.minor) for x in gone.legs]) == (
        "write_off",
        [("credit_loss_expense", "debit", 5500), ("processor_receivable:stripe", "credit", 5500)],
    )


@pytest.mark.parametrize(
    "row",
    [
        variance("currency_fx_mismatch", "currency", "USD", "EUR", 0),  # the same net in another currency
        variance("currency_fx_mismatch", "settlement currency", "USD", "EUR", 500),
        variance("missing_at_processor", "line", "net -55.00 USD", "absent", 5500),  # a refund the processor kept
        variance("fee_mismatch", "fee", "2.90 USD", "2.90 EUR", 0),  # not one currency: no difference stated
        variance("duplicate", "line_id", "one line stl_1", "again as stl_2", 100),
        variance("unexplained_bank_line", "bank line", "absent", "INCOMING WIRE", 500),  # no money shown
        variance("bank_balance_mismatch", "closing balance on 2026-01-09", "ledger bank cash 9.00 USD", "?", 100),
    ],
)
def test_no_proposal_where_the_numbers_state_no_correction(row):
    assert propose_adjustment(row) is None


def bank_variance(category: str, field: str, expected: str, actual: str, amount: int, **more) -> dict:
    return variance(category, field, expected, actual, amount) | {"processor": None, "merchant_id": None} | more


def test_a_bank_side_break_moves_the_bank_cash_to_what_the_bank_booked():
    wire_in = propose_adjustment(
        bank_variance("unexplained_bank_line", "bank line", "absent", "INCOMING WIRE 12.34 USD", 1234)
    )
    assert (wire_in.kind, [(x.account, x.side, x.amount.minor) for x in wire_in.legs]) == (
        "manual",
        [("bank_cash:USD", "debit", 1234), ("suspense", "credit", 1234)],
    )
    assert "held in suspense" in wire_in.memo
    fee_out = propose_adjustment(bank_variance("unexplained_bank_line", "bank line", "absent", " -2.50 USD", 250))
    assert [(x.account, x.side, x.amount.minor) for x in fee_out.legs] == [
        ("suspense", "debit", 250),
        ("bank_cash:USD", "credit", 250),
    ]
    payout = bank_variance(
        "payout_not_in_bank", "bank line", "processor payout 491.00 USD", "absent", 49100, processor="stripe"
    )
    back = propose_adjustment(payout)
    assert [(x.account, x.side, x.amount.minor) for x in back.legs] == [
        ("processor_receivable:stripe", "debit", 49100),
        ("bank_cash:USD", "credit", 49100),
    ]
    merchant = bank_variance(
        "payout_not_in_bank",
        "bank line",
        "merchant payout -316.06 USD",
        "absent",
        31606,
        merchant_id="m_00002",
        payout_id=None,
    )
    assert [(x.account, x.side, x.amount.minor) for x in propose_adjustment(merchant).legs] == [
        ("bank_cash:USD", "debit", 31606),
        ("merchant_payable:m_00002", "credit", 31606),
    ]
    short = bank_variance("amount_mismatch", "amount", "100.00 USD", "99.75 USD", 25, processor="adyen")
    assert [(x.account, x.side, x.amount.minor) for x in propose_adjustment(short).legs] == [
        ("processor_receivable:adyen", "debit", 25),
        ("bank_cash:USD", "credit", 25),
    ]
    for p in (wire_in, fee_out, back, propose_adjustment(merchant), propose_adjustment(short)):
        assert check_adjustment(p) == [] and posts(p)


def test_the_accounts_a_person_may_pick_say_what_each_is_kept_per():
    assert ADJUSTMENT_ACCOUNTS["fee_expense"] == "processor" and ADJUSTMENT_ACCOUNTS["suspense"] is None
    assert "fx_position" not in ADJUSTMENT_ACCOUNTS and "capital" not in ADJUSTMENT_ACCOUNTS


def test_check_names_what_keeps_an_edited_entry_from_posting():
    p = propose_adjustment(variance("fee_mismatch", "fee", "2.90 USD", "3.27 USD", 37))
    edited = AdjustmentProposal(
        p.variance_id,
        p.merchant_id,
        p.processor,
        "USD",
        "manual",
        (leg("fee_expense:stripe", "debit", 37), leg("capital", "credit", 36)),
        "edited",
    )
    problems = check_adjustment(edited)
    assert problems[0].startswith("leg 2: account: 'capital' is not one")
    assert problems[1] == "unbalanced in USD: debits 37 vs credits 36 (off by 1 minor units)"
    assert check_adjustment(AdjustmentProposal("v", None, None, "XXX", "fee", p.legs, "")) == [
        "currency 'XXX' is not an ISO 4217 code"
    ]
    in_euros = (p.legs[0], leg(p.legs[1].account, "credit", 37, "EUR"))
    assert check_adjustment(AdjustmentProposal("v", None, "stripe", "USD", "fee", in_euros, ""))[0] == (
        "leg 2 (processor_receivable:stripe) is in EUR, the entry in USD"
    )


# ----------------------------------------------------------------------- every row

CURRENCIES = ["USD", "EUR", "JPY", "KWD"]
FIELDS = {
    "fee_mismatch": ["fee"],
    "amount_mismatch": ["gross", "net", "amount"],
    "currency_fx_mismatch": ["converted net", "fx_rate", "currency"],
    "missing_at_processor": ["line"],
}


@st.composite
def variance_rows(draw) -> dict:
    category = draw(st.sampled_from(VARIANCE_CATEGORIES))
    field = draw(st.sampled_from(FIELDS.get(category, ["line"])))
    currency = draw(st.sampled_from(CURRENCIES))
    expected, actual = draw(st.integers(-(10**12), 10**12)), draw(st.integers(-(10**12), 10**12))
    if field == "fx_rate":
        shown = [draw(st.sampled_from(["0.9277", "1.0845", "0.913785", "150.25"])) for _ in range(2)]
    elif category == "missing_at_processor":
        shown = [text(expected, currency, "net "), "absent"]
    elif category == "payout_not_in_bank":
        shown = [text(expected, currency, draw(st.sampled_from(["processor payout ", "merchant payout "]))), "absent"]
    elif category == "unexplained_bank_line":
        shown = ["absent", text(actual, currency, draw(st.sampled_from(["INCOMING WIRE ", "", " "])))]
    else:
        shown = [text(expected, currency), text(actual, currency)]
    row = variance(category, field, *shown, abs(actual - expected), currency)
    row["processor"] = draw(st.sampled_from(["stripe", "adyen", None]))
    row["merchant_id"] = draw(st.sampled_from(["m_00001", None]))
    return row


@settings(max_examples=400, deadline=None)
@given(variance_rows())
def test_every_proposal_is_balanced_postable_and_moves_what_the_variance_states(row):
    p = propose_adjustment(row)
    if p is None:
        return
    assert check_adjustment(p) == []
    debits = sum(x.amount.minor for x in p.legs if x.side == "debit")
    assert debits == sum(x.amount.minor for x in p.legs if x.side == "credit") > 0
    if row["field"] in ("fee", "gross", "net", "converted net", "fx_rate", "amount"):
        assert debits == row["amount_minor"]
    bank = [x for x in p.legs if x.account.startswith("bank_cash:")]
    if row["category"] in ("unexplained_bank_line", "payout_not_in_bank") or row["field"] == "amount":
        # the bank side's correction moves the bank's own cash, in its currency, by what is stated
        stated = {"unexplained_bank_line": actual_of, "payout_not_in_bank": expected_of}.get(row["category"])
        assert [x.account for x in bank] == [f"bank_cash:{row['currency']}"]
        assert bank[0].amount.minor == (abs(stated(row)) if stated else row["amount_minor"])
    else:
        assert bank == []
    assert p.variance_id == row["variance_id"] and p.currency == row["currency"]
    assert posts(p)  # the ledger's own rule posts it
