"""The chart of accounts: every account a posting rule may touch, what kind of account it
is, the side it normally sits on, how low it may go, and what it is kept per.

An account key is "<tenant>:<name>[:<sub>]" — "rs_001:merchant_payable:m_00004",
"platform:bank_cash:USD". The sub-ledger key is whatever the account is kept per
(a processor, a merchant, a buyer, a currency, …); the currency of an amount is not part of
the key: a balance is always per (account, currency), so one processor's receivable can
hold USD and EUR side by side without being confused.

Two kinds of books, so that every tenant's postings balance on their own:

* each reseller tenant keeps the books of its merchants and buyers: what it owes its
  merchants, what its buyers owe, what the processors hold for its payments, its fees,
  its credit losses, the authorization holds and disputes of its payments;
* the platform tenant keeps what only the platform has: its operating bank accounts, the
  processors' payout receivables (one payout batch pays for many tenants' lines), its
  capital, and what it owes each tenant's book.

The two meet through one mirrored pair: a tenant's `platform_due` (what the platform holds
for that book, or has advanced to it when negative) and the platform's
`tenant_due:<tenant>`. Every posting that crosses books moves both by the same amount, so
the tenant's half and the platform's half each balance, and the pair eliminates when the
books are consolidated.

Floors: `non_negative` — the balance may not go below zero on its normal side (a buyer
cannot repay more than it borrowed, a hold cannot be drawn below nothing, the bank has no
overdraft); `either` — the balance legitimately goes either way, and the docstring says
why; `flat` — the balance must be zero after every event (a conversion account whose
non-zero balance would be an open position the platform does not take).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clearline.events import PLATFORM

AccountType = Literal["asset", "liability", "equity", "revenue", "expense", "memo"]
Side = Literal["debit", "credit"]
Floor = Literal["non_negative", "either", "flat"]
Books = Literal["tenant", "platform"]


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """One account type of the chart; `sub` names what its sub-ledger key is, or None."""

    name: str
    type: AccountType
    normal: Side
    floor: Floor
    sub: str | None
    books: Books
    meaning: str


_SPECS = (
    # ---------------------------------------------------------------- tenant books
    AccountSpec(
        "merchant_pending",
        "liability",
        "credit",
        "either",
        "merchant_id",
        "tenant",
        "Captured sales less refunds and chargebacks (plus reversals) the processor has "
        "not settled yet, gross, in the presentment currency. Either way: a refund of a "
        "sale that already settled takes it below zero until the refund settles.",
    ),
    AccountSpec(
        "merchant_payable",
        "liability",
        "credit",
        "either",
        "merchant_id",
        "tenant",
        "What the platform owes the merchant: terms orders funded, settled card/ACH "
        "lines net of the processor's fee, less platform and dispute fees, less payouts; "
        "settlement currency. Either way: refunds, chargebacks and dispute fees can "
        "exceed what is owed, and the merchant then owes the platform until later sales "
        "cover it (payouts roll forward until the running total is positive).",
    ),
    AccountSpec(
        "payouts_held",
        "liability",
        "credit",
        "non_negative",
        "merchant_id",
        "tenant",
        "Payouts the platform owed the merchant and did not send because an emergency "
        "freeze held them (payout.held), until the freeze is lifted and each is sent "
        "(payout.released). Floor: nothing is released that was not held.",
    ),
    AccountSpec(
        "processor_unsettled",
        "asset",
        "debit",
        "either",
        "processor",
        "tenant",
        "What the processor owes for this book's captures less refunds and chargebacks "
        "(plus reversals) not settled yet, gross, presentment currency: the processor's "
        "view of merchant_pending. Either way, for the same reason.",
    ),
    AccountSpec(
        "buyer_receivable",
        "asset",
        "debit",
        "non_negative",
        "buyer_id",
        "tenant",
        "Terms orders the platform funded and the buyer has not repaid or been "
        "written off for. Floor: repayments and write-offs never exceed what was lent.",
    ),
    AccountSpec(
        "platform_due",
        "asset",
        "debit",
        "either",
        None,
        "tenant",
        "Cash the platform holds for this book (settled processor lines, buyers' "
        "repayments) less what it paid out for it (merchant payouts). Either way: "
        "negative while the platform finances terms orders ahead of repayment. Mirrors "
        "platform:tenant_due:<tenant>.",
    ),
    AccountSpec(
        "fee_revenue",
        "revenue",
        "credit",
        "non_negative",
        "fee_kind",
        "tenant",
        "Fees charged to merchants: platform_fee (take rate on terms orders) and "
        "dispute_fee (the processor's chargeback fee passed on). No event reverses a fee.",
    ),
    AccountSpec(
        "fee_expense",
        "expense",
        "debit",
        "either",
        "processor",
        "tenant",
        "Processor fees this book bears itself: chargeback fees ('fee' settlement "
        "records), and the difference when a processor withheld another fee than its "
        "settlement notice said (an adjusting entry). Processing fees on sales are the "
        "merchant's and land here only through such a correction. Either way: a "
        "processor that withheld less than its notice said is a credit here.",
    ),
    AccountSpec(
        "loss_reserve",
        "asset",
        "credit",
        "non_negative",
        None,
        "tenant",
        "Allowance for credit losses (contra-asset to buyer_receivable). Floor: a "
        "write-off may not draw more than has been provisioned.",
    ),
    AccountSpec(
        "credit_loss_expense",
        "expense",
        "debit",
        "non_negative",
        None,
        "tenant",
        "Provisions for terms orders written off.",
    ),
    AccountSpec(
        "fx_position",
        "equity",
        "credit",
        "flat",
        None,
        "tenant",
        "Currency trading account: each side of a conversion passes through it in its "
        "own currency. Flat: the processor converts the receivable and the merchant is "
        "credited at the same rate, so the platform takes no FX position; any balance "
        "left after an event is a conversion at two different rates.",
    ),
    AccountSpec(
        "fx_gain_loss",
        "revenue",
        "credit",
        "either",
        None,
        "tenant",
        "Gains (credit) and losses (debit) when a processor converted at another rate "
        "than its settlement notice said, booked by adjusting entries. Either way.",
    ),
    AccountSpec(
        "auth_hold",
        "memo",
        "debit",
        "non_negative",
        "payment_id",
        "tenant",
        "Off-balance: the open part of an authorization. Captures draw it down, a void "
        "releases the rest. Floor: captures and voids never exceed the hold, so a hold "
        "resolves at most once.",
    ),
    AccountSpec(
        "auth_hold_offset",
        "memo",
        "credit",
        "non_negative",
        "processor",
        "tenant",
        "Off-balance contra of auth_hold: open holds per processor.",
    ),
    AccountSpec(
        "chargeback",
        "memo",
        "debit",
        "non_negative",
        "chargeback_id",
        "tenant",
        "Off-balance: a chargeback's disputed amount until it is reversed. Floor: a "
        "reversal never returns more than was charged back, and only once.",
    ),
    AccountSpec(
        "chargeback_offset",
        "memo",
        "credit",
        "non_negative",
        "merchant_id",
        "tenant",
        "Off-balance contra of chargeback: amount charged back and not won back, per "
        "merchant (the merchant's dispute exposure).",
    ),
    # -------------------------------------------------------------- platform books
    AccountSpec(
        "bank_cash",
        "asset",
        "debit",
        "non_negative",
        "currency",
        "platform",
        "The platform's operating bank account in one currency. Floor: no overdraft.",
    ),
    AccountSpec(
        "processor_receivable",
        "asset",
        "debit",
        "either",
        "processor",
        "platform",
        "Settled lines the processor has not paid out yet, net of its fees, settlement "
        "currency. Either way: processors carry a negative balance (refunds, chargebacks "
        "and fees over sales) forward into the next batch.",
    ),
    AccountSpec(
        "tenant_due",
        "liability",
        "credit",
        "either",
        "tenant",
        "platform",
        "What the platform holds for a tenant's book; mirrors <tenant>:platform_due.",
    ),
    AccountSpec(
        "suspense",
        "asset",
        "debit",
        "either",
        None,
        "platform",
        "Amounts an adjusting entry parks until their cause is known (a bank line "
        "nobody expected, a correction waiting for its counterpart). Either way; it "
        "should be empty once every variance is worked.",
    ),
    AccountSpec(
        "capital",
        "equity",
        "credit",
        "non_negative",
        None,
        "platform",
        "The platform's own funds in its bank accounts (opening balances), which "
        "finance terms orders until buyers repay.",
    ),
)

CHART: dict[str, AccountSpec] = {spec.name: spec for spec in _SPECS}


@dataclass(frozen=True, slots=True)
class AccountRef:
    tenant: str
    name: str
    sub: str | None

    @property
    def spec(self) -> AccountSpec:
        return CHART[self.name]


def _check(tenant: str, name: str, sub: str | None) -> AccountSpec:
    """The spec of a well-formed account, or ValueError saying what is wrong with it."""
    spec = CHART.get(name)
    if spec is None:
        raise ValueError(f"account: {name!r} is not in the chart ({', '.join(CHART)})")
    if not tenant or ":" in tenant:
        raise ValueError(f"account: tenant {tenant!r} must be non-empty and hold no ':'")
    if (spec.books == "platform") != (tenant == PLATFORM):
        raise ValueError(f"account: {name} belongs to the {spec.books} books, not to tenant {tenant!r}")
    if (sub is None) != (spec.sub is None) or sub == "":
        want = f"a {spec.sub}" if spec.sub else "no sub-ledger key"
        raise ValueError(f"account: {name} takes {want}, got {sub!r}")
    return spec


_KEYS: dict[tuple[str, str, str | None], str] = {}


def account_key(tenant: str, name: str, sub: str | None = None) -> str:
    """ "<tenant>:<name>[:<sub>]" for an account of the chart, checked against it. Keys
    already checked are remembered (a bounded cache: the posting rules ask for the same
    few thousand accounts again and again)."""
    key = _KEYS.get((tenant, name, sub))
    if key is None:
        _check(tenant, name, sub)
        if len(_KEYS) > 50_000:
            _KEYS.clear()
        key = _KEYS[(tenant, name, sub)] = f"{tenant}:{name}" if sub is None else f"{tenant}:{name}:{sub}"
    return key


def parse_account(key: str) -> AccountRef:
    """The parts of an account key. Tenants and names hold no ':', so everything after the
    name is the sub-ledger key, which may (ids allow it)."""
    parts = key.split(":", 2)
    if len(parts) < 2:
        raise ValueError(f"account: {key!r} is not <tenant>:<name>[:<sub>]")
    tenant, name, sub = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
    _check(tenant, name, sub)
    return AccountRef(tenant, name, sub)


def normal_side(key: str) -> Side:
    """The side an account's balance normally sits on (for the stored-ledger floor check)."""
    return parse_account(key).spec.normal


def floor_of(key: str) -> int | None:
    """The lowest balance, on the normal side, an account may hold; None where it may go
    either way. A `flat` account's floor is 0 here; that it may not go above 0 either is
    checked by clearline.ledger.posting.check_floors."""
    return None if parse_account(key).spec.floor == "either" else 0


# ------------------------------------------------------------- adjusting entries

# The accounts a person may name in an adjusting entry (`adjustment.posted`): where the
# correction of a reconciliation variance lands. Holds, disputes, conversions in flight
# (fx_position), the books' mirrored pair and capital are the posting rules' alone.
ADJUSTABLE = (
    "fee_expense",
    "processor_receivable",
    "fx_gain_loss",
    "credit_loss_expense",
    "loss_reserve",
    "merchant_payable",
    "bank_cash",
    "suspense",
)


def adjusting_key(tenant: str, account: str) -> str:
    """The key of an adjustable account named without its tenant ("fee_expense:stripe"),
    in the books the chart keeps it in: `tenant`'s, or the platform's. ValueError when the
    account is not one a person may adjust, or not well formed."""
    name, _, sub = account.partition(":")
    if name not in ADJUSTABLE:
        raise ValueError(f"account: {name!r} is not one an adjusting entry may name ({', '.join(ADJUSTABLE)})")
    books = PLATFORM if CHART[name].books == "platform" else tenant
    return account_key(books, name, sub or None)


def adjustment_problems(legs: list[tuple[str, str, int, str]], tenant: str | None = None) -> list[str]:
    """What keeps an adjusting entry's legs, (account without tenant, side, minor units,
    currency), from posting, each naming its leg by number ("leg 2: …"); [] when they
    post. The legs must name adjustable accounts (a bank account in its own currency),
    move at least one minor unit each, and balance per currency. `tenant`: the book the
    entry is for; the platform may name only platform accounts (None: any tenant)."""
    problems, net = [], {}
    for i, (account, side, minor, currency) in enumerate(legs, 1):
        try:
            ref = parse_account(adjusting_key(tenant or "tenant", account))  # the platform's: its own books only
            if ref.spec.sub == "currency" and ref.sub != currency:
                raise ValueError(f"account: {account} holds {ref.sub}, the leg moves {currency}")
        except ValueError as exc:
            problems.append(f"leg {i}: {exc}")
        if side not in ("debit", "credit"):
            problems.append(f"leg {i}: side {side!r} is neither debit nor credit")
        if not isinstance(minor, int) or isinstance(minor, bool) or minor < 1:
            problems.append(f"leg {i}: {minor!r} {currency} moves nothing; a leg is at least 1 minor unit")
        elif side in ("debit", "credit"):
            net[currency] = net.get(currency, 0) + (minor if side == "debit" else -minor)
    for currency, off in sorted(net.items()):
        if off:
            debits = sum(m for _, s, m, c in legs if c == currency and s == "debit")
            problems.append(
                f"unbalanced in {currency}: debits {debits} vs credits {debits - off} (off by {off} minor units)"
            )
    if not legs:
        problems.append("no legs: an adjusting entry moves money between at least two accounts")
    return problems
