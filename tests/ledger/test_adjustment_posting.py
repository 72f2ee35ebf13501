"""Adjusting entries (`adjustment.posted`) through the ledger's pure posting rule and its
store: the legs post as given, in the books the chart keeps each account in, with the
books' mirrored pair where they cross; anything a person may not adjust, legs that do not
balance, and an entry approved by its proposer are refused naming why; replaying the same
messages from offset 0 gives the same chain head with the adjustment in it."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline import events
from clearline.events import PLATFORM, AdjustmentLeg, AdjustmentPosted, Event, Money
from clearline.ledger import Posted, Rejected, to_outcomes
from clearline.ledger.accounts import ADJUSTABLE, CHART, adjusting_key, adjustment_problems
from clearline.ledger.posting import PostingError, post
from clearline.ledger.store import LedgerStore
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, sign

T0 = datetime(2026, 1, 20, 15, tzinfo=timezone.utc)
VARIANCE = "var_0123456789abcdef0123"


def leg(account: str, side: str, minor: int, currency: str = "USD") -> AdjustmentLeg:
    return AdjustmentLeg(account, side, Money(minor, currency))


def adjustment(
    *legs: AdjustmentLeg, tenant: str = "rs_001", proposed_by: str = "alice", approved_by: str = "bob", n: int = 1
) -> Event:
    payload = AdjustmentPosted(VARIANCE, "fee", "our_error", "fee over the notice", proposed_by, approved_by, T0, legs)
    merchant = PLATFORM if tenant == PLATFORM else "m_00001"
    return Event(f"adj_{n}", "adjustment.posted", T0, merchant, tenant, payload)


def as_legs(postings) -> Counter:
    return Counter((p.account, p.side, p.amount.minor, p.amount.currency) for p in postings)


def balanced_per_book(postings) -> bool:
    net = defaultdict(int)
    for p in postings:
        net[(p.account.split(":")[0], p.amount.currency)] += p.amount.minor if p.side == "debit" else -p.amount.minor
    return not any(net.values())


FEE = (leg("fee_expense:stripe", "debit", 37), leg("processor_receivable:stripe", "credit", 37))


def test_a_fee_correction_posts_its_legs_and_the_books_mirrored_pair():
    out = post(adjustment(*FEE))
    assert as_legs(out) == Counter(
        {
            ("rs_001:fee_expense:stripe", "debit", 37, "USD"): 1,
            ("platform:processor_receivable:stripe", "credit", 37, "USD"): 1,
            ("platform:tenant_due:rs_001", "debit", 37, "USD"): 1,
            ("rs_001:platform_due", "credit", 37, "USD"): 1,
        }
    )
    assert [p.account for p in out[:2]] == ["rs_001:fee_expense:stripe", "platform:processor_receivable:stripe"]
    assert balanced_per_book(out)


def test_legs_inside_one_book_post_as_given_without_the_pair():
    out = post(adjustment(leg("merchant_payable:m_00001", "debit", 500), leg("fx_gain_loss", "credit", 500)))
    assert as_legs(out) == Counter(
        {("rs_001:merchant_payable:m_00001", "debit", 500, "USD"): 1, ("rs_001:fx_gain_loss", "credit", 500, "USD"): 1}
    )


def test_the_platform_adjusts_its_own_books_only():
    own = post(adjustment(leg("bank_cash:USD", "debit", 900), leg("suspense", "credit", 900), tenant=PLATFORM))
    assert as_legs(own) == Counter(
        {("platform:bank_cash:USD", "debit", 900, "USD"): 1, ("platform:suspense", "credit", 900, "USD"): 1}
    )
    with pytest.raises(PostingError, match=r"leg 1: account: fee_expense belongs to the tenant books"):
        post(adjustment(*FEE, tenant=PLATFORM))


@pytest.mark.parametrize(
    "legs, message",
    [
        ((leg("fee_expense:stripe", "debit", 37), leg("fx_position", "credit", 37)), r"leg 2: account: 'fx_position'"),
        ((leg("capital", "debit", 37), leg("suspense", "credit", 37)), r"leg 1: account: 'capital' is not one"),
        ((leg("auth_hold:pay_1", "debit", 5), leg("suspense", "credit", 5)), r"leg 1: account: 'auth_hold'"),
        (
            (leg("fee_expense", "debit", 5), leg("suspense", "credit", 5)),
            r"leg 1: account: fee_expense takes a processor",
        ),
        ((leg("bank_cash:EUR", "debit", 5), leg("suspense", "credit", 5)), r"leg 1: account: bank_cash:EUR holds EUR"),
        (
            (leg("fee_expense:stripe", "debit", 37), leg("suspense", "credit", 36)),
            r"unbalanced in USD: debits 37 vs credits 36",
        ),
        (
            (leg("fee_expense:stripe", "debit", 37), leg("suspense", "credit", 37, "EUR")),
            r"unbalanced in EUR: debits 0 vs credits 37.*unbalanced in USD",
        ),
    ],
)
def test_what_a_person_may_not_adjust_is_refused_naming_the_leg(legs, message):
    with pytest.raises(PostingError, match=message) as info:
        post(adjustment(*legs))
    assert info.value.reason == "adjustment" and VARIANCE in str(info.value)


@pytest.mark.parametrize("approver", ["alice", "Alice ", "ALICE"])
def test_an_entry_approved_by_its_proposer_is_refused(approver):
    with pytest.raises(PostingError, match="needs a second person") as info:
        post(adjustment(*FEE, approved_by=approver))
    assert info.value.reason == "maker_checker"


# ---------------------------------------------------------------- every entry

ACCOUNTS = {
    "fee_expense": ["fee_expense:stripe", "fee_expense:adyen"],
    "processor_receivable": ["processor_receivable:stripe"],
    "fx_gain_loss": ["fx_gain_loss"],
    "credit_loss_expense": ["credit_loss_expense"],
    "loss_reserve": ["loss_reserve"],
    "merchant_payable": ["merchant_payable:m_00001"],
    "bank_cash": ["bank_cash:USD", "bank_cash:EUR"],
    "suspense": ["suspense"],
}
legs_strategy = st.lists(
    st.builds(
        leg,
        st.sampled_from([a for name in ADJUSTABLE for a in ACCOUNTS[name]] + ["fx_position", "tenant_due:rs_001"]),
        st.sampled_from(["debit", "credit"]),
        st.integers(1, 10**6),
        st.sampled_from(["USD", "EUR"]),
    ),
    min_size=1,
    max_size=6,
)


def test_every_adjustable_account_is_in_the_chart():
    assert set(ACCOUNTS) == set(ADJUSTABLE) <= set(CHART)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(legs_strategy, st.sampled_from(["rs_001", PLATFORM]))
def test_an_entry_posts_exactly_when_it_has_no_problems_and_then_balances_in_every_book(legs, tenant):
    balanced = _balance(legs)
    for attempt in (legs, balanced):
        problems = adjustment_problems(
            [(x.account, x.side, x.amount.minor, x.amount.currency) for x in attempt], tenant
        )
        if problems:
            with pytest.raises(PostingError):
                post(adjustment(*attempt, tenant=tenant))
            continue
        out = post(adjustment(*attempt, tenant=tenant))
        assert balanced_per_book(out)
        given = out[: len(attempt)]
        assert [(p.account, p.side, p.amount) for p in given] == [
            (adjusting_key(tenant, x.account), x.side, x.amount) for x in attempt
        ]
        assert all(p.account.split(":")[1] in ("platform_due", "tenant_due") for p in out[len(attempt) :])


def _balance(legs: list[AdjustmentLeg]) -> list[AdjustmentLeg]:
    """The legs with one suspense leg per currency that evens them out."""
    net = defaultdict(int)
    for x in legs:
        net[x.amount.currency] += x.amount.minor if x.side == "debit" else -x.amount.minor
    return legs + [leg("suspense", "credit" if v > 0 else "debit", abs(v), c) for c, v in sorted(net.items()) if v]


# ------------------------------------------------------------ store and replay


@dataclass
class Message:
    """A consumed message as the ledger reads one (topic, partition, offset, value, headers)."""

    body: bytes
    tenant: str
    at: int

    def topic(self) -> str:
        return "payments.events"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.at

    def value(self) -> bytes:
        return self.body

    def headers(self) -> list[tuple[str, bytes]]:
        key = TenantKeys.from_config().key(self.tenant)
        return [(TENANT_HEADER, self.tenant.encode()), (SIGNATURE_HEADER, sign(self.body, key).encode())]


def messages() -> list[Message]:
    settle = Event(
        "evt_settle",
        "processor.settlement",
        T0,
        "m_00001",
        "rs_001",
        events.ProcessorSettlement(
            "stripe",
            "stl_1",
            "po_1",
            "charge",
            "pay_1",
            Money(10_000, "USD"),
            Money(290, "USD"),
            Money(9_710, "USD"),
            T0.date(),
        ),
    )
    bodies = [
        (settle, "rs_001"),
        (adjustment(*FEE, n=1), "rs_001"),
        (adjustment(*FEE, n=1), "rs_001"),  # the same approval published twice: a duplicate
        (adjustment(*FEE, approved_by="alice", n=2), "rs_001"),  # self-approved
        (adjustment(leg("fee_expense:stripe", "debit", 37), leg("suspense", "credit", 30), n=3), "rs_001"),
    ]
    return [Message(events.encode(e), tenant, i) for i, (e, tenant) in enumerate(bodies)]


def test_the_store_posts_counts_and_replays_an_adjustment_to_the_same_chain_head(tmp_path):
    keys = TenantKeys.from_config()
    outcomes = to_outcomes(messages(), keys)
    assert [type(o).__name__ for o in outcomes] == ["Posted", "Posted", "Posted", "Rejected", "Rejected"]
    refused = [o for o in outcomes if isinstance(o, Rejected)]
    assert [(o.event_id, o.reason) for o in refused] == [("adj_2", "posting"), ("adj_3", "posting")]
    assert "maker_checker" in refused[0].detail and "unbalanced in USD" in refused[1].detail
    heads = []
    for run in ("first", "replay"):
        with LedgerStore(tmp_path / f"{run}.duckdb") as store:
            store.apply(to_outcomes(messages(), keys))
            part = store.partitions()[("payments.events", 0)]
            assert (part.consumed, part.posted, part.duplicate, part.dead_lettered) == (5, 2, 1, 2)
            bal = store.balances()
            heads.append(store.stats()["head"])
    recv = bal.filter(bal["account"] == "platform:processor_receivable:stripe")["balance"].item()
    fee = bal.filter(bal["account"] == "rs_001:fee_expense:stripe")["balance"].item()
    assert (recv, fee) == (9_710 - 37, 37)
    assert heads[0] == heads[1] and isinstance(outcomes[1], Posted)
