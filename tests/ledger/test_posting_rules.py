"""The ledger's posting rules: per event type, through random lifecycles against a plain
model, and over a whole generated world whose end state is derived from its events."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timezone
from itertools import count

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from clearline import config, events
from clearline.events import (
    PAYLOADS,
    PLATFORM,
    AdjustmentLeg,
    AdjustmentPosted,
    BuyerDefault,
    BuyerRepayment,
    ChargebackOpened,
    ChargebackReversed,
    Event,
    FeeCharged,
    MerchantPayout,
    Money,
    OrderCreated,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    PayoutHeld,
    PayoutReleased,
    ProcessorPayout,
    ProcessorSettlement,
)
from clearline.freezes import Freezes
from clearline.ledger.accounts import CHART, account_key, floor_of, normal_side, parse_account
from clearline.ledger.posting import PostingError, balances, capital, check_floors, post
from clearline.pipelines.world.generate import WorldOptions, generate

OPENING = {ccy: spec["opening_balance_minor"] for ccy, spec in config.load("platform")["bank_accounts"].items()}

T0 = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)
DAY0 = date(2026, 1, 7)
_ids = count()


def ev(event_type: str, payload, merchant: str = "m_1", tenant: str = "rs_1") -> Event:
    return Event(f"evt_{next(_ids)}", event_type, T0, merchant, tenant, payload)


def usd(minor: int) -> Money:
    return Money(minor, "USD")


def legs(postings) -> Counter:
    """Postings as a multiset of (account, side, minor, currency), order aside."""
    return Counter((p.account, p.side, p.amount.minor, p.amount.currency) for p in postings)


def posted(e: Event) -> tuple:
    """post(e), checked: positive amounts, and debits = credits per currency in each tenant."""
    out = post(e)
    net = defaultdict(int)
    for p in out:
        assert p.amount.minor > 0, p
        net[(p.account.split(":")[0], p.amount.currency)] += p.amount.minor if p.side == "debit" else -p.amount.minor
    assert not any(net.values()), f"{e.event_type} unbalanced: {dict(net)}"
    return out


def total(*events_: Event) -> dict:
    """Balances after posting the events, zero balances dropped."""
    return {k: v for k, v in balances(p for e in events_ for p in posted(e)).items() if v}


def settlement(
    record_type: str, gross: Money, fee: int, net: Money, rate: str | None = None, processor="adyen"
) -> ProcessorSettlement:
    return ProcessorSettlement(
        processor,
        f"stl_{next(_ids)}",
        "po_adyen_usd_20260107",
        record_type,
        "pay_1",
        gross,
        Money(fee, net.currency),
        net,
        DAY0,
        rate,
    )


# ------------------------------------------------------------------ the chart


def test_account_keys_round_trip_and_are_checked_against_the_chart():
    assert account_key("rs_1", "merchant_payable", "m_1") == "rs_1:merchant_payable:m_1"
    assert account_key(PLATFORM, "bank_cash", "USD") == "platform:bank_cash:USD"
    assert account_key("rs_1", "platform_due") == "rs_1:platform_due"
    ref = parse_account("rs_1:auth_hold:pay:with:colons")
    assert (ref.tenant, ref.name, ref.sub, ref.spec.type) == ("rs_1", "auth_hold", "pay:with:colons", "memo")
    for bad in [
        ("rs_1", "petty_cash", None),
        ("rs_1", "bank_cash", "USD"),
        (PLATFORM, "merchant_payable", "m_1"),
        ("rs_1", "merchant_payable", None),
        ("rs_1", "platform_due", "x"),
        ("rs:1", "platform_due", None),
    ]:
        with pytest.raises(ValueError, match="account"):
            account_key(*bad)
    with pytest.raises(ValueError):
        parse_account("bank_cash")


def test_the_chart_names_type_side_floor_and_sub_ledger_of_every_account():
    required = {
        "processor_receivable",
        "merchant_payable",
        "buyer_receivable",
        "fee_revenue",
        "fee_expense",
        "chargeback",
        "loss_reserve",
        "credit_loss_expense",
        "bank_cash",
        "fx_position",
        "auth_hold",
        "capital",
    }
    assert required <= set(CHART)
    assert {s.type for s in CHART.values()} == {"asset", "liability", "equity", "revenue", "expense", "memo"}
    for spec in CHART.values():
        assert spec.normal in ("debit", "credit") and spec.floor in ("non_negative", "either", "flat") and spec.meaning
    assert CHART["bank_cash"].sub == "currency" and CHART["bank_cash"].books == "platform"
    assert CHART["merchant_payable"].floor == "either" and CHART["buyer_receivable"].floor == "non_negative"
    # what the stored ledger's floor check plugs in
    assert (normal_side("rs_1:merchant_payable:m_1"), floor_of("rs_1:merchant_payable:m_1")) == ("credit", None)
    assert (normal_side("platform:bank_cash:USD"), floor_of("platform:bank_cash:USD")) == ("debit", 0)


# ----------------------------------------------------------- rules, one by one


SAMPLES = {
    "order.created": OrderCreated("ord_1", "b_1", usd(100), "terms", 30, DAY0),
    "payment.authorized": PaymentAuthorized("pay_1", "ord_1", "b_1", "adyen", "card", usd(100), "tok_1"),
    "payment.captured": PaymentCaptured("pay_1", "cap_1", "adyen", usd(100), True),
    "payment.voided": PaymentVoided("pay_1", "adyen", usd(100)),
    "payment.refunded": PaymentRefunded("pay_1", "rfd_1", "adyen", usd(100)),
    "chargeback.opened": ChargebackOpened("pay_1", "cbk_1", "adyen", usd(100), "10.4"),
    "chargeback.reversed": ChargebackReversed("pay_1", "cbk_1", "adyen", usd(100)),
    "processor.settlement": settlement("charge", usd(100), 3, usd(97)),
    "processor.payout": ProcessorPayout("adyen", "po_1", usd(100), DAY0, 1),
    "buyer.repayment": BuyerRepayment("ord_1", "b_1", "rpy_1", usd(100), DAY0, 0),
    "buyer.default": BuyerDefault("ord_1", "b_1", usd(100), 60),
    "merchant.payout": MerchantPayout("mpo_1", usd(100), DAY0, 1),
    "fee.charged": FeeCharged("fee_1", "platform_fee", usd(100), "ord_1"),
    "payout.held": PayoutHeld("mpo_1", usd(100), DAY0, 1, "merchant", "m_1"),
    "payout.released": PayoutReleased("mpo_1", usd(100), DAY0, "carol"),
    "adjustment.posted": AdjustmentPosted(
        "var_0123456789abcdef0123",
        "fee",
        "our_error",
        "fee over the notice",
        "alice",
        "bob",
        T0,
        (
            AdjustmentLeg("fee_expense:adyen", "debit", usd(100)),
            AdjustmentLeg("processor_receivable:adyen", "credit", usd(100)),
        ),
    ),
}


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_every_event_type_posts_balanced_legs_in_known_accounts(event_type):
    tenant = PLATFORM if event_type == "processor.payout" else "rs_1"
    out = posted(ev(event_type, SAMPLES[event_type], merchant=tenant if tenant == PLATFORM else "m_1", tenant=tenant))
    assert out and all(parse_account(p.account) for p in out)


def test_unknown_event_types_are_refused():
    with pytest.raises(PostingError, match="event_type"):
        post(ev("order.refunded", SAMPLES["order.created"]))


def test_terms_order_funds_the_merchant_and_makes_the_buyer_owe_card_order_posts_nothing():
    terms = ev("order.created", OrderCreated("ord_1", "b_1", usd(100_000), "terms", 30, date(2026, 2, 4)))
    assert (
        legs(posted(terms))
        == legs(post(terms))
        == Counter(
            {
                ("rs_1:buyer_receivable:b_1", "debit", 100_000, "USD"): 1,
                ("rs_1:merchant_payable:m_1", "credit", 100_000, "USD"): 1,
            }
        )
    )
    assert post(ev("order.created", OrderCreated("ord_2", "b_1", usd(5_000), "card", 0))) == ()
    assert post(ev("order.created", OrderCreated("ord_3", "b_1", usd(5_000), "ach", 0))) == ()


def test_platform_fee_and_dispute_fee_come_off_what_the_merchant_is_owed():
    platform_fee = ev("fee.charged", FeeCharged("fee_1", "platform_fee", usd(2_500), "ord_1"))
    dispute_fee = ev("fee.charged", FeeCharged("dfe_1", "dispute_fee", usd(1_500), "cbk_1"))
    assert total(platform_fee, dispute_fee) == {
        ("rs_1:merchant_payable:m_1", "USD"): 4_000,
        ("rs_1:fee_revenue:platform_fee", "USD"): -2_500,
        ("rs_1:fee_revenue:dispute_fee", "USD"): -1_500,
    }


def test_authorization_is_an_off_balance_hold():
    auth = ev("payment.authorized", PaymentAuthorized("pay_1", "ord_1", "b_1", "adyen", "card", usd(10_000), "tok_1"))
    assert legs(posted(auth)) == Counter(
        {
            ("rs_1:auth_hold:pay_1", "debit", 10_000, "USD"): 1,
            ("rs_1:auth_hold_offset:adyen", "credit", 10_000, "USD"): 1,
        }
    )
    assert all(parse_account(p.account).spec.type == "memo" for p in post(auth))


def test_partial_captures_draw_on_the_hold_and_the_void_releases_the_rest():
    auth = ev("payment.authorized", PaymentAuthorized("pay_1", "ord_1", "b_1", "adyen", "card", usd(10_000), "tok_1"))
    cap1 = ev("payment.captured", PaymentCaptured("pay_1", "cap_1", "adyen", usd(4_000), False))
    cap2 = ev("payment.captured", PaymentCaptured("pay_1", "cap_2", "adyen", usd(3_000), False))
    void = ev("payment.voided", PaymentVoided("pay_1", "adyen", usd(3_000)))
    assert legs(posted(cap1)) == Counter(
        {
            ("rs_1:auth_hold_offset:adyen", "debit", 4_000, "USD"): 1,
            ("rs_1:auth_hold:pay_1", "credit", 4_000, "USD"): 1,
            ("rs_1:processor_unsettled:adyen", "debit", 4_000, "USD"): 1,
            ("rs_1:merchant_pending:m_1", "credit", 4_000, "USD"): 1,
        }
    )
    assert legs(posted(void)) == Counter(
        {("rs_1:auth_hold_offset:adyen", "debit", 3_000, "USD"): 1, ("rs_1:auth_hold:pay_1", "credit", 3_000, "USD"): 1}
    )
    assert total(auth, cap1, cap2, void) == {
        ("rs_1:processor_unsettled:adyen", "USD"): 7_000,
        ("rs_1:merchant_pending:m_1", "USD"): -7_000,
    }
    # a second void (or a capture after it) would draw the hold below zero: the floor says so
    after = balances(p for e in (auth, cap1, cap2, void, void) for p in post(e))
    assert [(v.account, v.balance) for v in check_floors(after)] == [
        ("rs_1:auth_hold:pay_1", -3_000),
        ("rs_1:auth_hold_offset:adyen", -3_000),
    ]


def test_two_partial_refunds_each_take_their_own_amount_back():
    cap = ev("payment.captured", PaymentCaptured("pay_1", "cap_1", "stripe", usd(10_000), True))
    r1 = ev("payment.refunded", PaymentRefunded("pay_1", "rfd_1", "stripe", usd(2_500)))
    r2 = ev("payment.refunded", PaymentRefunded("pay_1", "rfd_2", "stripe", usd(1_500)))
    assert legs(posted(r1)) == Counter(
        {
            ("rs_1:merchant_pending:m_1", "debit", 2_500, "USD"): 1,
            ("rs_1:processor_unsettled:stripe", "credit", 2_500, "USD"): 1,
        }
    )
    assert total(cap, r1, r2) == {
        ("rs_1:auth_hold_offset:stripe", "USD"): 10_000,
        ("rs_1:auth_hold:pay_1", "USD"): -10_000,  # no authorization here
        ("rs_1:processor_unsettled:stripe", "USD"): 6_000,
        ("rs_1:merchant_pending:m_1", "USD"): -6_000,
    }


def test_chargeback_then_reversal_returns_the_money_and_closes_the_dispute():
    cb = ev("chargeback.opened", ChargebackOpened("pay_1", "cbk_1", "adyen", usd(6_000), "10.4"))
    rev = ev("chargeback.reversed", ChargebackReversed("pay_1", "cbk_1", "adyen", usd(6_000)))
    assert legs(posted(cb)) == Counter(
        {
            ("rs_1:merchant_pending:m_1", "debit", 6_000, "USD"): 1,
            ("rs_1:processor_unsettled:adyen", "credit", 6_000, "USD"): 1,
            ("rs_1:chargeback:cbk_1", "debit", 6_000, "USD"): 1,
            ("rs_1:chargeback_offset:m_1", "credit", 6_000, "USD"): 1,
        }
    )
    assert total(cb, rev) == {}
    twice = balances(p for e in (cb, rev, rev) for p in post(e))
    assert [v.account for v in check_floors(twice)] == ["rs_1:chargeback:cbk_1", "rs_1:chargeback_offset:m_1"]


def test_settled_charge_becomes_payable_net_of_the_processor_fee():
    line = ev("processor.settlement", settlement("charge", usd(10_000), 320, usd(9_680)))
    assert legs(posted(line)) == Counter(
        {
            ("rs_1:merchant_pending:m_1", "debit", 10_000, "USD"): 1,
            ("rs_1:merchant_payable:m_1", "credit", 10_000, "USD"): 1,
            ("rs_1:platform_due", "debit", 10_000, "USD"): 1,
            ("rs_1:processor_unsettled:adyen", "credit", 10_000, "USD"): 1,
            ("rs_1:merchant_payable:m_1", "debit", 320, "USD"): 1,
            ("rs_1:platform_due", "credit", 320, "USD"): 1,
            ("platform:processor_receivable:adyen", "debit", 9_680, "USD"): 1,
            ("platform:tenant_due:rs_1", "credit", 9_680, "USD"): 1,
        }
    )


def test_settled_refund_and_chargeback_fee_record():
    refund = ev("processor.settlement", settlement("refund", usd(2_500), 0, usd(2_500)))
    fee = ev("processor.settlement", settlement("fee", usd(0), 1_500, usd(1_500)))
    assert total(refund) == {
        ("rs_1:merchant_pending:m_1", "USD"): -2_500,
        ("rs_1:merchant_payable:m_1", "USD"): 2_500,
        ("rs_1:processor_unsettled:adyen", "USD"): 2_500,
        ("rs_1:platform_due", "USD"): -2_500,
        ("platform:processor_receivable:adyen", "USD"): -2_500,
        ("platform:tenant_due:rs_1", "USD"): 2_500,
    }
    assert legs(posted(fee)) == Counter(
        {
            ("rs_1:fee_expense:adyen", "debit", 1_500, "USD"): 1,
            ("rs_1:platform_due", "credit", 1_500, "USD"): 1,
            ("platform:tenant_due:rs_1", "debit", 1_500, "USD"): 1,
            ("platform:processor_receivable:adyen", "credit", 1_500, "USD"): 1,
        }
    )


def test_fx_settlement_converts_through_the_fx_position_which_stays_flat():
    # 100.00 EUR presented, 1.082000 USD per EUR: 108.20 USD, processor fee 3.20, net 105.00
    line = ev("processor.settlement", settlement("charge", Money(10_000, "EUR"), 320, usd(10_500), "1.082000"))
    assert legs(posted(line)) == Counter(
        {
            ("rs_1:merchant_pending:m_1", "debit", 10_000, "EUR"): 1,
            ("rs_1:fx_position", "credit", 10_000, "EUR"): 1,
            ("rs_1:fx_position", "debit", 10_820, "USD"): 1,
            ("rs_1:merchant_payable:m_1", "credit", 10_820, "USD"): 1,
            ("rs_1:fx_position", "debit", 10_000, "EUR"): 1,
            ("rs_1:processor_unsettled:adyen", "credit", 10_000, "EUR"): 1,
            ("rs_1:platform_due", "debit", 10_820, "USD"): 1,
            ("rs_1:fx_position", "credit", 10_820, "USD"): 1,
            ("rs_1:merchant_payable:m_1", "debit", 320, "USD"): 1,
            ("rs_1:platform_due", "credit", 320, "USD"): 1,
            ("platform:processor_receivable:adyen", "debit", 10_500, "USD"): 1,
            ("platform:tenant_due:rs_1", "credit", 10_500, "USD"): 1,
        }
    )
    cap = ev("payment.captured", PaymentCaptured("pay_1", "cap_1", "adyen", Money(10_000, "EUR"), True))
    refund = ev("payment.refunded", PaymentRefunded("pay_1", "rfd_1", "adyen", Money(4_000, "EUR")))
    refund_line = ev("processor.settlement", settlement("refund", Money(4_000, "EUR"), 0, usd(4_360), "1.090000"))
    end = total(cap, line, refund, refund_line)
    assert end == {
        ("rs_1:auth_hold_offset:adyen", "EUR"): 10_000,
        ("rs_1:auth_hold:pay_1", "EUR"): -10_000,
        ("rs_1:merchant_payable:m_1", "USD"): -(10_500 - 4_360),
        ("rs_1:platform_due", "USD"): 10_500 - 4_360,
        ("platform:processor_receivable:adyen", "USD"): 10_500 - 4_360,
        ("platform:tenant_due:rs_1", "USD"): -(10_500 - 4_360),
    }


def test_fx_rate_is_per_major_unit():
    # 10,000 JPY (exponent 0) at 0.006700 USD per JPY is 67.00 USD (exponent 2) = 6,700 cents
    line = ev("processor.settlement", settlement("charge", Money(10_000, "JPY"), 0, usd(6_700), "0.006700"))
    assert ("rs_1:merchant_payable:m_1", "USD") in total(line)
    with pytest.raises(PostingError, match="fx"):
        post(ev("processor.settlement", settlement("charge", Money(10_000, "JPY"), 0, usd(67), "0.006700")))


@pytest.mark.parametrize(
    "payload, reason",
    [
        (settlement("charge", usd(10_000), 300, usd(9_600)), "settlement"),  # gross ≠ net + fee, one currency
        (settlement("charge", Money(10_000, "EUR"), 0, usd(10_820)), "fx"),  # two currencies, no rate
        (settlement("charge", Money(10_000, "EUR"), 0, usd(10_900), "1.082000"), "fx"),  # rate does not give the net
        (settlement("refund", usd(100), 500, usd(400)), "settlement"),  # fee larger than what is refunded
        (settlement("fee", usd(100), 1_500, usd(1_500)), "settlement"),  # a fee record with a gross
    ],
)
def test_self_contradicting_settlements_are_refused(payload, reason):
    with pytest.raises(PostingError, match=reason):
        post(ev("processor.settlement", payload))


def test_processor_payout_lands_in_the_platform_bank():
    payout = ev(
        "processor.payout",
        ProcessorPayout("stripe", "po_stripe_usd_20260107", usd(50_000), DAY0, 7),
        merchant=PLATFORM,
        tenant=PLATFORM,
    )
    assert legs(posted(payout)) == Counter(
        {
            ("platform:bank_cash:USD", "debit", 50_000, "USD"): 1,
            ("platform:processor_receivable:stripe", "credit", 50_000, "USD"): 1,
        }
    )
    with pytest.raises(PostingError, match="tenant"):
        post(ev("processor.payout", ProcessorPayout("stripe", "po_1", usd(50_000), DAY0, 7)))
    with pytest.raises(PostingError, match="tenant"):
        post(ev("payment.refunded", PaymentRefunded("pay_1", "rfd_1", "stripe", usd(1)), PLATFORM, PLATFORM))


def test_repayment_default_and_merchant_payout_move_cash_in_both_books():
    repay = ev("buyer.repayment", BuyerRepayment("ord_1", "b_1", "rpy_1", usd(30_000), date(2026, 2, 4), 3))
    default = ev("buyer.default", BuyerDefault("ord_1", "b_1", usd(70_000), 60))
    payout = ev("merchant.payout", MerchantPayout("mpo_1", usd(97_500), DAY0, 2))
    assert legs(posted(repay)) == Counter(
        {
            ("rs_1:platform_due", "debit", 30_000, "USD"): 1,
            ("rs_1:buyer_receivable:b_1", "credit", 30_000, "USD"): 1,
            ("platform:bank_cash:USD", "debit", 30_000, "USD"): 1,
            ("platform:tenant_due:rs_1", "credit", 30_000, "USD"): 1,
        }
    )
    assert legs(posted(default)) == Counter(
        {
            ("rs_1:credit_loss_expense", "debit", 70_000, "USD"): 1,
            ("rs_1:loss_reserve", "credit", 70_000, "USD"): 1,
            ("rs_1:loss_reserve", "debit", 70_000, "USD"): 1,
            ("rs_1:buyer_receivable:b_1", "credit", 70_000, "USD"): 1,
        }
    )
    assert legs(posted(payout)) == Counter(
        {
            ("rs_1:merchant_payable:m_1", "debit", 97_500, "USD"): 1,
            ("rs_1:platform_due", "credit", 97_500, "USD"): 1,
            ("platform:tenant_due:rs_1", "debit", 97_500, "USD"): 1,
            ("platform:bank_cash:USD", "credit", 97_500, "USD"): 1,
        }
    )


def test_a_held_payout_moves_no_cash_until_its_release_sends_it_from_the_bank():
    held = ev("payout.held", PayoutHeld("mpo_1", usd(97_500), DAY0, 2, "merchant", "m_1"))
    released = ev("payout.released", PayoutReleased("mpo_1", usd(97_500), date(2026, 3, 2), "carol"))
    assert legs(posted(held)) == Counter(
        {
            ("rs_1:merchant_payable:m_1", "debit", 97_500, "USD"): 1,
            ("rs_1:payouts_held:m_1", "credit", 97_500, "USD"): 1,
        }
    )
    assert legs(posted(released)) == Counter(
        {
            ("rs_1:payouts_held:m_1", "debit", 97_500, "USD"): 1,
            ("rs_1:platform_due", "credit", 97_500, "USD"): 1,
            ("platform:tenant_due:rs_1", "debit", 97_500, "USD"): 1,
            ("platform:bank_cash:USD", "credit", 97_500, "USD"): 1,
        }
    )
    # held then released is the payout sent at once, with payouts_held back at nothing
    sent = balances(posted(ev("merchant.payout", MerchantPayout("mpo_1", usd(97_500), DAY0, 2))))
    both = balances(posted(held) + posted(released))
    assert {k: v for k, v in both.items() if v} == sent
    # a release of what was never held breaks payouts_held's floor, which verify reports
    assert "rs_1:payouts_held:m_1" in {f.account for f in check_floors(balances(posted(released)))}


def test_worked_example_from_the_docs():
    """docs/ledger.md: authorize 100.00, capture 60.00 then void 40.00, refund 10.00 and 5.00,
    chargeback of the 45.00 left, reversal; every item settles, the processor pays out and the
    platform pays the merchant."""
    a = "adyen"
    story = [
        ev("payment.authorized", PaymentAuthorized("pay_1", "ord_1", "b_1", a, "card", usd(10_000), "tok_1")),
        ev("payment.captured", PaymentCaptured("pay_1", "cap_1", a, usd(6_000), False)),
        ev("payment.voided", PaymentVoided("pay_1", a, usd(4_000))),
        ev("processor.settlement", settlement("charge", usd(6_000), 60, usd(5_940))),
        ev("payment.refunded", PaymentRefunded("pay_1", "rfd_1", a, usd(1_000))),
        ev("payment.refunded", PaymentRefunded("pay_1", "rfd_2", a, usd(500))),
        ev("processor.settlement", settlement("refund", usd(1_000), 0, usd(1_000))),
        ev("processor.settlement", settlement("refund", usd(500), 0, usd(500))),
        ev("chargeback.opened", ChargebackOpened("pay_1", "cbk_1", a, usd(4_500), "10.4")),
        ev("fee.charged", FeeCharged("dfe_1", "dispute_fee", usd(1_500), "cbk_1")),
        ev("processor.settlement", settlement("chargeback", usd(4_500), 0, usd(4_500))),
        ev("processor.settlement", settlement("fee", usd(0), 1_500, usd(1_500))),
        ev("chargeback.reversed", ChargebackReversed("pay_1", "cbk_1", a, usd(4_500))),
        ev("processor.settlement", settlement("chargeback_reversal", usd(4_500), 0, usd(4_500))),
        # processor batch: 5,940 − 1,000 − 500 − 4,500 − 1,500 + 4,500 = 2,940
        ev("processor.payout", ProcessorPayout(a, "po_1", usd(2_940), DAY0, 6), PLATFORM, PLATFORM),
        # merchant: 5,940 − 1,000 − 500 − 4,500 + 4,500 − 1,500 (dispute fee) = 2,940
        ev("merchant.payout", MerchantPayout("mpo_1", usd(2_940), DAY0, 5)),
    ]
    end = total(*story)
    # all that is left: the platform's fee revenue and expense for the dispute, equal
    assert end == {("rs_1:fee_revenue:dispute_fee", "USD"): -1_500, ("rs_1:fee_expense:adyen", "USD"): 1_500}


def test_capital_opens_the_bank_and_floors_catch_an_overdraft():
    assert legs(capital(usd(1_000))) == Counter(
        {("platform:bank_cash:USD", "debit", 1_000, "USD"): 1, ("platform:capital", "credit", 1_000, "USD"): 1}
    )
    bals = {
        ("platform:bank_cash:USD", "USD"): -1,
        ("rs_1:merchant_payable:m_1", "USD"): 5,
        ("rs_1:fx_position", "EUR"): 3,
        ("rs_1:buyer_receivable:b_1", "USD"): 0,
    }
    assert [(v.account, v.currency, v.balance, v.floor) for v in check_floors(bals)] == [
        ("platform:bank_cash:USD", "USD", -1, "non_negative"),
        ("rs_1:fx_position", "EUR", -3, "flat"),
    ]
    with pytest.raises(PostingError, match="sign"):
        capital(usd(-5))


# ------------------------------------------------- random lifecycles vs a model

MERCHANTS = {"m_a": ("rs_a", "USD"), "m_b": ("rs_b", "EUR"), "m_c": ("rs_a", "GBP")}
PROCESSORS = ("adyen", "stripe")
CURRENCIES = ("USD", "EUR", "GBP")
CAPITAL = 10**12
DISPUTE_FEE = 1_500
INWARD = {"charge": 1, "chargeback_reversal": 1, "refund": -1, "chargeback": -1}


class Lifecycles(RuleBasedStateMachine):
    """Random payment and terms lifecycles posted one event at a time. The model keeps what
    each party holds or owes in plain dicts, in its own words; after every step the ledger's
    balances must say the same, balance per currency, and keep every floor."""

    def __init__(self):
        super().__init__()
        self.postings = []
        for ccy in CURRENCIES:
            self.postings += capital(Money(CAPITAL, ccy))
        self.ids = count()
        self.payments = {}  # payment_id -> dict(merchant, processor, ccy, hold, captured, refunded, cb, reversed)
        self.items = []  # (payment_id, record_type, gross) waiting for their settlement line
        self.orders = {}  # order_id -> dict(merchant, buyer, outstanding, open)
        # the model: every figure a magnitude on its natural side
        self.hold = defaultdict(int)  # (tenant, payment) -> open hold
        self.pending = defaultdict(int)  # (tenant, merchant, ccy) -> unsettled, owed to merchant
        self.unsettled = defaultdict(int)  # (tenant, processor, ccy) -> unsettled, owed by processor
        self.payable = defaultdict(int)  # (tenant, merchant, ccy) -> owed to merchant
        self.receivable = defaultdict(int)  # (processor, ccy) -> settled, not paid out
        self.due = defaultdict(int)  # (tenant, ccy) -> cash the platform holds for the book
        self.buyer = defaultdict(int)  # (tenant, buyer, ccy) -> owed by buyer
        self.bank = {c: CAPITAL for c in CURRENCIES}
        self.revenue = defaultdict(int)  # (tenant, kind, ccy)
        self.expense = defaultdict(int)  # (tenant, processor, ccy)
        self.losses = defaultdict(int)  # (tenant, ccy)
        self.dispute = defaultdict(int)  # (tenant, chargeback_id, ccy)
        self.disputed = defaultdict(int)  # (tenant, merchant, ccy)

    # -- plumbing

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids)}"

    def _post(self, event_type: str, payload, merchant: str) -> None:
        tenant = PLATFORM if merchant == PLATFORM else MERCHANTS[merchant][0]
        self.postings += posted(Event(self._id("evt"), event_type, T0, merchant, tenant, payload))

    def _expected(self) -> dict:
        """The model's balances as signed (account, currency) -> debit-positive sums."""
        out = defaultdict(int)

        def put(account, ccy, amount, side):
            out[(account, ccy)] += amount if side == "debit" else -amount

        for (t, pay), v in self.hold.items():
            p = self.payments[pay]
            put(f"{t}:auth_hold:{pay}", p["ccy"], v, "debit")
            put(f"{t}:auth_hold_offset:{p['processor']}", p["ccy"], v, "credit")
        for (t, m, c), v in self.pending.items():
            put(f"{t}:merchant_pending:{m}", c, v, "credit")
        for (t, proc, c), v in self.unsettled.items():
            put(f"{t}:processor_unsettled:{proc}", c, v, "debit")
        for (t, m, c), v in self.payable.items():
            put(f"{t}:merchant_payable:{m}", c, v, "credit")
        for (proc, c), v in self.receivable.items():
            put(f"platform:processor_receivable:{proc}", c, v, "debit")
        for (t, c), v in self.due.items():
            put(f"{t}:platform_due", c, v, "debit")
            put(f"platform:tenant_due:{t}", c, v, "credit")
        for (t, b, c), v in self.buyer.items():
            put(f"{t}:buyer_receivable:{b}", c, v, "debit")
        for c, v in self.bank.items():
            put(f"platform:bank_cash:{c}", c, v, "debit")
            put("platform:capital", c, CAPITAL, "credit")
        for (t, kind, c), v in self.revenue.items():
            put(f"{t}:fee_revenue:{kind}", c, v, "credit")
        for (t, proc, c), v in self.expense.items():
            put(f"{t}:fee_expense:{proc}", c, v, "debit")
        for (t, c), v in self.losses.items():
            put(f"{t}:credit_loss_expense", c, v, "debit")
        for (t, cb, c), v in self.dispute.items():
            put(f"{t}:chargeback:{cb}", c, v, "debit")
        for (t, m, c), v in self.disputed.items():
            put(f"{t}:chargeback_offset:{m}", c, v, "credit")
        return out

    @invariant()
    def ledger_agrees_with_the_model(self):
        got = balances(self.postings)
        want = self._expected()
        diff = {k: (got.get(k, 0), want.get(k, 0)) for k in set(got) | set(want) if got.get(k, 0) != want.get(k, 0)}
        assert not diff, diff
        per_ccy = defaultdict(int)
        for p in self.postings:
            per_ccy[p.amount.currency] += p.amount.minor if p.side == "debit" else -p.amount.minor
        assert not any(per_ccy.values())
        assert check_floors(got) == []

    # -- card and ACH

    @rule(
        merchant=st.sampled_from(sorted(MERCHANTS)),
        processor=st.sampled_from(PROCESSORS),
        foreign=st.one_of(st.none(), st.sampled_from(CURRENCIES)),
        amount=st.integers(1, 10**7),
    )
    def authorize(self, merchant, processor, foreign, amount):
        """Presented in the merchant's own currency half of the time, in any other the rest."""
        pay = self._id("pay")
        t, ccy = MERCHANTS[merchant][0], foreign or MERCHANTS[merchant][1]
        self.payments[pay] = dict(
            merchant=merchant,
            tenant=t,
            processor=processor,
            ccy=ccy,
            captured=0,
            refunded=0,
            cb=None,
            cb_amount=0,
            reversed=False,
        )
        self._post(
            "payment.authorized",
            PaymentAuthorized(pay, self._id("ord"), "b_1", processor, "card", Money(amount, ccy), self._id("tok")),
            merchant,
        )
        self.hold[(t, pay)] = amount

    def _held(self):
        return sorted(pay for (_, pay), v in self.hold.items() if v > 0)

    def _move_sale(self, p, amount, sign):
        """The model's view of money for a payment not settled yet: owed by the processor
        and to the merchant alike."""
        self.pending[(p["tenant"], p["merchant"], p["ccy"])] += sign * amount
        self.unsettled[(p["tenant"], p["processor"], p["ccy"])] += sign * amount

    @precondition(lambda self: self._held())
    @rule(data=st.data())
    def capture(self, data):
        pay = data.draw(st.sampled_from(self._held()))
        p = self.payments[pay]
        amount = data.draw(st.integers(1, self.hold[(p["tenant"], pay)]))
        final = amount == self.hold[(p["tenant"], pay)]
        self._post(
            "payment.captured",
            PaymentCaptured(pay, self._id("cap"), p["processor"], Money(amount, p["ccy"]), final),
            p["merchant"],
        )
        self.hold[(p["tenant"], pay)] -= amount
        p["captured"] += amount
        self._move_sale(p, amount, +1)
        self.items.append((pay, "charge", amount))

    @precondition(lambda self: self._held())
    @rule(data=st.data())
    def void_the_rest(self, data):
        pay = data.draw(st.sampled_from(self._held()))
        p = self.payments[pay]
        self._post(
            "payment.voided",
            PaymentVoided(pay, p["processor"], Money(self.hold[(p["tenant"], pay)], p["ccy"])),
            p["merchant"],
        )
        self.hold[(p["tenant"], pay)] = 0

    def _refundable(self):
        return sorted(pay for pay, p in self.payments.items() if p["captured"] - p["refunded"] - p["cb_amount"] > 0)

    @precondition(lambda self: self._refundable())
    @rule(data=st.data())
    def refund(self, data):
        pay = data.draw(st.sampled_from(self._refundable()))
        p = self.payments[pay]
        amount = data.draw(st.integers(1, p["captured"] - p["refunded"] - p["cb_amount"]))
        self._post(
            "payment.refunded",
            PaymentRefunded(pay, self._id("rfd"), p["processor"], Money(amount, p["ccy"])),
            p["merchant"],
        )
        p["refunded"] += amount
        self._move_sale(p, amount, -1)
        self.items.append((pay, "refund", amount))

    def _disputable(self):
        return sorted(pay for pay, p in self.payments.items() if p["cb"] is None and p["captured"] > p["refunded"])

    @precondition(lambda self: self._disputable())
    @rule(data=st.data())
    def chargeback(self, data):
        pay = data.draw(st.sampled_from(self._disputable()))
        p = self.payments[pay]
        t, m, settle_ccy = p["tenant"], p["merchant"], MERCHANTS[p["merchant"]][1]
        amount = p["captured"] - p["refunded"]
        p["cb"], p["cb_amount"] = self._id("cbk"), amount
        self._post(
            "chargeback.opened", ChargebackOpened(pay, p["cb"], p["processor"], Money(amount, p["ccy"]), "10.4"), m
        )
        self._post(
            "fee.charged", FeeCharged(self._id("dfe"), "dispute_fee", Money(DISPUTE_FEE, settle_ccy), p["cb"]), m
        )
        self._move_sale(p, amount, -1)
        self.dispute[(t, p["cb"], p["ccy"])] += amount
        self.disputed[(t, m, p["ccy"])] += amount
        self.payable[(t, m, settle_ccy)] -= DISPUTE_FEE
        self.revenue[(t, "dispute_fee", settle_ccy)] += DISPUTE_FEE
        self.items += [(pay, "chargeback", amount), (pay, "fee", 0)]

    def _reversible(self):
        return sorted(pay for pay, p in self.payments.items() if p["cb"] and not p["reversed"])

    @precondition(lambda self: self._reversible())
    @rule(data=st.data())
    def reverse_chargeback(self, data):
        pay = data.draw(st.sampled_from(self._reversible()))
        p = self.payments[pay]
        amount = p["cb_amount"]
        self._post(
            "chargeback.reversed",
            ChargebackReversed(pay, p["cb"], p["processor"], Money(amount, p["ccy"])),
            p["merchant"],
        )
        p["reversed"], p["cb_amount"] = True, 0
        self._move_sale(p, amount, +1)
        self.dispute[(p["tenant"], p["cb"], p["ccy"])] -= amount
        self.disputed[(p["tenant"], p["merchant"], p["ccy"])] -= amount
        self.items.append((pay, "chargeback_reversal", amount))

    @precondition(lambda self: self.items)
    @rule(data=st.data())
    def settle(self, data):
        pay, kind, gross = self.items.pop(data.draw(st.integers(0, len(self.items) - 1)))
        p = self.payments[pay]
        t, m, proc, present = p["tenant"], p["merchant"], p["processor"], p["ccy"]
        settle_ccy = MERCHANTS[m][1]
        line = dict(processor=proc, settlement_id=self._id("stl"), batch_id="po_x", payment_id=pay, available_on=DAY0)
        if kind == "fee":
            fee = data.draw(st.integers(1, 5_000))
            self._post(
                "processor.settlement",
                ProcessorSettlement(
                    **line,
                    record_type="fee",
                    gross=Money(0, present),
                    fee=Money(fee, settle_ccy),
                    net=Money(fee, settle_ccy),
                ),
                m,
            )
            self.expense[(t, proc, settle_ccy)] += fee
            self.due[(t, settle_ccy)] -= fee
            self.receivable[(proc, settle_ccy)] -= fee
            return
        rate_micro, rate = 1_000_000, None
        if present != settle_ccy:
            rate_micro = data.draw(st.integers(300_000, 3_000_000))
            rate = f"{rate_micro // 1_000_000}.{rate_micro % 1_000_000:06d}"
        converted = (gross * rate_micro + 500_000) // 1_000_000
        sign = INWARD[kind]
        fee = data.draw(st.integers(0, converted if sign > 0 else 500))
        net = converted - fee if sign > 0 else converted + fee
        self._post(
            "processor.settlement",
            ProcessorSettlement(
                **line,
                record_type=kind,
                gross=Money(gross, present),
                fee=Money(fee, settle_ccy),
                net=Money(net, settle_ccy),
                fx_rate=rate,
            ),
            m,
        )
        self._move_sale(p, gross, -sign)
        signed_net = net if sign > 0 else -net
        self.payable[(t, m, settle_ccy)] += signed_net
        self.due[(t, settle_ccy)] += signed_net
        self.receivable[(proc, settle_ccy)] += signed_net

    def _owing_processors(self):
        return sorted(k for k, v in self.receivable.items() if v > 0)

    @precondition(lambda self: self._owing_processors())
    @rule(data=st.data())
    def processor_pays_out(self, data):
        proc, ccy = data.draw(st.sampled_from(self._owing_processors()))
        amount = self.receivable[(proc, ccy)]
        self._post("processor.payout", ProcessorPayout(proc, self._id("po"), Money(amount, ccy), DAY0, 1), PLATFORM)
        self.receivable[(proc, ccy)] = 0
        self.bank[ccy] += amount

    # -- terms

    @rule(
        merchant=st.sampled_from(sorted(MERCHANTS)), buyer=st.sampled_from(["b_1", "b_2"]), amount=st.integers(1, 10**7)
    )
    def terms_order(self, merchant, buyer, amount):
        t, ccy = MERCHANTS[merchant]
        order = self._id("ord")
        fee = amount * 250 // 10_000
        self._post("order.created", OrderCreated(order, buyer, Money(amount, ccy), "terms", 30, DAY0), merchant)
        self._post("fee.charged", FeeCharged(self._id("fee"), "platform_fee", Money(fee, ccy), order), merchant)
        self.orders[order] = dict(merchant=merchant, buyer=buyer, outstanding=amount, open=True)
        self.buyer[(t, buyer, ccy)] += amount
        self.payable[(t, merchant, ccy)] += amount - fee
        self.revenue[(t, "platform_fee", ccy)] += fee

    def _open_orders(self):
        return sorted(o for o, v in self.orders.items() if v["open"] and v["outstanding"] > 0)

    @precondition(lambda self: self._open_orders())
    @rule(data=st.data())
    def repay(self, data):
        order = data.draw(st.sampled_from(self._open_orders()))
        o = self.orders[order]
        t, ccy = MERCHANTS[o["merchant"]]
        amount = data.draw(st.integers(1, o["outstanding"]))
        self._post(
            "buyer.repayment",
            BuyerRepayment(order, o["buyer"], self._id("rpy"), Money(amount, ccy), DAY0, 0),
            o["merchant"],
        )
        o["outstanding"] -= amount
        self.buyer[(t, o["buyer"], ccy)] -= amount
        self.due[(t, ccy)] += amount
        self.bank[ccy] += amount

    @precondition(lambda self: self._open_orders())
    @rule(data=st.data())
    def default(self, data):
        order = data.draw(st.sampled_from(self._open_orders()))
        o = self.orders[order]
        t, ccy = MERCHANTS[o["merchant"]]
        self._post("buyer.default", BuyerDefault(order, o["buyer"], Money(o["outstanding"], ccy), 60), o["merchant"])
        self.buyer[(t, o["buyer"], ccy)] -= o["outstanding"]
        self.losses[(t, ccy)] += o["outstanding"]
        o["outstanding"], o["open"] = 0, False

    def _owed_merchants(self):
        return sorted(k for k, v in self.payable.items() if v > 0)

    @precondition(lambda self: self._owed_merchants())
    @rule(data=st.data())
    def pay_merchant(self, data):
        t, m, ccy = data.draw(st.sampled_from(self._owed_merchants()))
        amount = data.draw(st.integers(1, self.payable[(t, m, ccy)]))
        self._post("merchant.payout", MerchantPayout(self._id("mpo"), Money(amount, ccy), DAY0, 1), m)
        self.payable[(t, m, ccy)] -= amount
        self.due[(t, ccy)] -= amount
        self.bank[ccy] -= amount


Lifecycles.TestCase.settings = settings(
    max_examples=100, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_random_lifecycles_post_like_the_model = Lifecycles.TestCase


# ------------------------------------------------------- a whole generated world


def _next_business_day(t: datetime) -> date:
    return np.busday_offset(np.datetime64(t.date(), "D"), 1, roll="forward").astype(date)


def test_a_generated_world_posts_balanced_within_its_floors_and_ends_where_its_events_say(tmp_path):
    frozen = Freezes.of(
        [
            {"kind": "merchant", "target": "m_00003", "frozen_at": "2026-02-16T00:00:00+00:00"},
            {"kind": "bank_account", "target": "DE89370400440532013000", "frozen_at": "2026-04-10T00:00:00+00:00"},
        ]
    )
    generate(WorldOptions(days=120, merchants=8, seed=3, discrepancy_rate=0.0, freezes=frozen), tmp_path)
    evs = [events.decode(line) for line in (tmp_path / "events/events.jsonl").read_bytes().splitlines()]
    evs.sort(key=lambda e: (e.occurred_at, e.event_id))
    bal = defaultdict(int)
    for leg in (p for ccy, minor in OPENING.items() for p in capital(Money(minor, ccy))):
        bal[(leg.account, leg.amount.currency)] += leg.amount.minor if leg.side == "debit" else -leg.amount.minor
    for e in evs:
        touched = balances(posted(e))
        for k, v in touched.items():
            bal[k] += v
        assert check_floors({k: bal[k] for k in touched}) == [], e  # floors hold after every event, not only at the end
    assert check_floors(dict(bal)) == []

    def balance(account, ccy, normal="debit"):
        return bal.get((account, ccy), 0) * (1 if normal == "debit" else -1)

    by_type = defaultdict(list)
    for e in evs:
        by_type[e.event_type].append(e)
    tenant_of = {e.merchant_id: e.reseller_id for e in evs}
    ccy_of = {e.merchant_id: e.payload.amount.currency for e in by_type["order.created"]}

    # authorization holds: open = authorized − captured − voided; zero once fully resolved
    auth = {e.payload.payment_id: e for e in by_type["payment.authorized"]}
    drawn, final = defaultdict(int), set()
    for e in by_type["payment.captured"] + by_type["payment.voided"]:
        drawn[e.payload.payment_id] += e.payload.amount.minor
        if e.event_type == "payment.voided" or e.payload.final:
            final.add(e.payload.payment_id)
    resolved = 0
    for pay, a in auth.items():
        held = balance(f"{a.reseller_id}:auth_hold:{pay}", a.payload.amount.currency)
        assert held == a.payload.amount.minor - drawn[pay]
        if pay in final:
            assert held == 0
            resolved += 1
    assert resolved > 0.9 * len(auth)

    # the merchant is paid by business day: each payout pays every item due since the last
    # one; after the last, the payable holds only items due later
    items = defaultdict(list)  # merchant -> (day due, signed amount)
    for e in by_type["order.created"]:
        if e.payload.payment_method == "terms":
            items[e.merchant_id].append((_next_business_day(e.occurred_at), e.payload.amount.minor))
    for e in by_type["fee.charged"]:
        items[e.merchant_id].append((_next_business_day(e.occurred_at), -e.payload.amount.minor))
    for e in by_type["processor.settlement"]:
        p = e.payload
        if p.record_type != "fee":
            items[e.merchant_id].append((p.available_on, INWARD[p.record_type] * p.net.minor))
    # a payout a freeze held pays the merchant's items all the same, into payouts_held
    held = defaultdict(int)
    for e in by_type["payout.held"]:
        held[(e.merchant_id, e.payload.amount.currency)] += e.payload.amount.minor
    assert {e.payload.frozen_kind for e in by_type["payout.held"]} == {"merchant", "bank_account"}
    for (m, c), v in held.items():
        assert balance(f"{tenant_of[m]}:payouts_held:{m}", c, "credit") == v
    paid_up_to = {}
    for e in sorted(by_type["merchant.payout"] + by_type["payout.held"], key=lambda e: e.payload.value_date):
        m, p = e.merchant_id, e.payload
        since = paid_up_to.get(m, date.min)
        assert p.amount.minor == sum(a for d, a in items[m] if since < d <= p.value_date), (m, p)
        paid_up_to[m] = p.value_date
    for m, its in items.items():
        owed = sum(a for d, a in its if d > paid_up_to.get(m, date.min))
        assert balance(f"{tenant_of[m]}:merchant_payable:{m}", ccy_of[m], "credit") == owed

    # unsettled sales per merchant and processor: items less their settled gross
    unsettled_m, unsettled_p = defaultdict(int), defaultdict(int)
    sign = {"payment.captured": 1, "chargeback.reversed": 1, "payment.refunded": -1, "chargeback.opened": -1}
    for kind, s in sign.items():
        for e in by_type[kind]:
            a = auth[e.payload.payment_id]
            unsettled_m[(e.merchant_id, a.payload.amount.currency)] += s * e.payload.amount.minor
            unsettled_p[(e.reseller_id, e.payload.processor, a.payload.amount.currency)] += s * e.payload.amount.minor
    for e in by_type["processor.settlement"]:
        p = e.payload
        if p.record_type != "fee":
            unsettled_m[(e.merchant_id, p.gross.currency)] -= INWARD[p.record_type] * p.gross.minor
            unsettled_p[(e.reseller_id, p.processor, p.gross.currency)] -= INWARD[p.record_type] * p.gross.minor
    for (m, c), v in unsettled_m.items():
        assert balance(f"{tenant_of[m]}:merchant_pending:{m}", c, "credit") == v
    for (t, proc, c), v in unsettled_p.items():
        assert balance(f"{t}:processor_unsettled:{proc}", c) == v

    # processor receivable: the settled lines of batches not paid out yet; each payout is its batch
    batches = defaultdict(list)
    for e in by_type["processor.settlement"]:
        p = e.payload
        batches[p.batch_id].append(
            (p.processor, p.net.currency, (-1 if p.record_type == "fee" else INWARD[p.record_type]) * p.net.minor)
        )
    payouts = {e.payload.payout_id: e.payload for e in by_type["processor.payout"]}
    for payout_id, p in payouts.items():
        assert p.amount.minor == sum(n for _, _, n in batches[payout_id]) and p.line_count == len(batches[payout_id])
    open_lines = defaultdict(int)
    for batch_id, lines in batches.items():
        for proc, c, n in lines:
            open_lines[(proc, c)] += 0 if batch_id in payouts else n
    for (proc, c), v in open_lines.items():
        assert balance(f"platform:processor_receivable:{proc}", c) == v

    # buyer receivable: terms orders not repaid or written off; a written-off order owes nothing
    outstanding = {}
    for e in by_type["order.created"]:
        if e.payload.payment_method == "terms":
            outstanding[e.payload.order_id] = [
                e.reseller_id,
                e.payload.buyer_id,
                e.payload.amount.currency,
                e.payload.amount.minor,
            ]
    for e in by_type["buyer.repayment"] + by_type["buyer.default"]:
        outstanding[e.payload.order_id][3] -= e.payload.amount.minor
    defaulted = {e.payload.order_id for e in by_type["buyer.default"]}
    assert defaulted and all(outstanding[o][3] == 0 for o in defaulted)
    per_buyer = defaultdict(int)
    for t, b, c, v in outstanding.values():
        assert v >= 0
        per_buyer[(t, b, c)] += v
    assert all(balance(f"{t}:buyer_receivable:{b}", c) == v for (t, b, c), v in per_buyer.items())
    written_off = defaultdict(int)
    for e in by_type["buyer.default"]:
        written_off[(e.reseller_id, e.payload.amount.currency)] += e.payload.amount.minor
    assert all(balance(f"{t}:credit_loss_expense", c) == v for (t, c), v in written_off.items())

    # the bank: opening balance + processor payouts + repayments − merchant payouts
    bank = defaultdict(int, OPENING)
    for e in by_type["processor.payout"] + by_type["buyer.repayment"]:
        bank[e.payload.amount.currency] += e.payload.amount.minor
    for e in by_type["merchant.payout"]:
        bank[e.payload.amount.currency] -= e.payload.amount.minor
    assert all(balance(f"platform:bank_cash:{c}", c) == v for c, v in bank.items())

    # disputes: open until reversed; dispute fees earned equal chargeback fees borne
    reversed_ = {e.payload.chargeback_id for e in by_type["chargeback.reversed"]}
    for e in by_type["chargeback.opened"]:
        p = e.payload
        assert balance(f"{e.reseller_id}:chargeback:{p.chargeback_id}", p.amount.currency) == (
            0 if p.chargeback_id in reversed_ else p.amount.minor
        )
    tenants = {t for t in tenant_of.values() if t != PLATFORM}
    for t in tenants:
        for c in ("USD", "EUR", "GBP"):
            fee_lines = sum(
                e.payload.fee.minor
                for e in by_type["processor.settlement"]
                if e.reseller_id == t and e.payload.record_type == "fee" and e.payload.fee.currency == c
            )
            dispute_fees = sum(
                e.payload.amount.minor
                for e in by_type["fee.charged"]
                if e.reseller_id == t and e.payload.kind == "dispute_fee" and e.payload.amount.currency == c
            )
            expense = sum(v for (a, cc), v in bal.items() if a.startswith(f"{t}:fee_expense:") and cc == c)
            assert expense == fee_lines
            assert balance(f"{t}:fee_revenue:dispute_fee", c, "credit") == dispute_fees
            # the two halves of every cross-book movement mirror each other
            assert balance(f"{t}:platform_due", c) == balance(f"platform:tenant_due:{t}", c, "credit")
    assert any(
        e.payload.fx_rate for e in by_type["processor.settlement"]
    )  # FX settled, and fx_position stayed flat (floors)
