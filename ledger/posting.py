"""Posting rules: each event becomes, by a pure function of that event alone, a set of
postings that balances in every currency, and within that in each tenant's books.

The rules follow the money as this world moves it (pipelines/world/settlement.py):

* Card and ACH. An authorization is an off-balance hold; captures draw on it and a void
  releases the rest. A capture is a sale the processor owes and the merchant is owed, but
  neither is settled yet: both sit gross, in the presentment currency, in
  `processor_unsettled` and `merchant_pending`. Refunds and chargebacks take it back,
  reversals return it. When the processor settles an item, it converts it to the
  merchant's settlement currency and withholds its fee: the merchant is owed the net from
  then on (`merchant_payable`), the processor owes that net in its next payout batch
  (`platform:processor_receivable`), and the batch lands in the platform's bank.
* Terms. The platform funds the merchant when the order is placed (paid out the next
  business day) and the buyer owes the platform until it repays into the platform's
  bank, or is written off.
* Fees. The platform charges merchants a take rate on terms orders and passes each
  processor chargeback fee on as a dispute fee; the processor's chargeback fee itself is a
  separate settlement record the platform's book bears.
* The platform pays each merchant from its bank what `merchant_payable` holds.

Cash crosses books: the bank and the processors' payouts are the platform's, merchants and
buyers belong to tenants. A rule that moves cash for a tenant posts both halves — the
tenant's side against `platform_due`, the platform's against `tenant_due:<tenant>` — so
every tenant's postings balance by themselves (see ledger/accounts.py).

Amounts are positive; a zero amount posts nothing. Money is integers; FX is checked with
exact fractions. An event whose own figures contradict each other (a fee record with a
gross, net ≠ gross ± fee in one currency, a rate that does not give the net) cannot be
posted balanced and truthfully, and raises PostingError for the flow to dead-letter.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable

from clearline.currency import EXPONENT
from clearline.events import (
    PLATFORM,
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
from clearline.ledger.accounts import account_key, adjusting_key, adjustment_problems, parse_account
from clearline.ledger.model import Posting

Legs = tuple[Posting, ...]


class PostingError(ValueError):
    """An event the rules cannot post; `reason` is a short sortable kind, the message says why."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


# ------------------------------------------------------------------------- legs


def _pair(debit: str, credit: str, amount: Money) -> Legs:
    """Debit one account and credit another with the same amount; nothing for zero."""
    if amount.minor < 0:
        raise PostingError("sign", f"{amount.minor} {amount.currency} is negative; amounts are magnitudes")
    if amount.minor == 0:
        return ()
    return Posting(debit, "debit", amount), Posting(credit, "credit", amount)


def _exchange(tenant: str, debit: str, paid: Money, credit: str, got: Money) -> Legs:
    """Debit `paid` to one account and credit `got` to another, the two worth the same at
    the settlement's rate. In one currency that is one pair (the caller has checked
    paid == got); across two, each side balances in its own currency against the book's
    fx_position."""
    if paid.currency == got.currency:
        return _pair(debit, credit, paid)
    fx = account_key(tenant, "fx_position")
    return _pair(debit, fx, paid) + _pair(fx, credit, got)


def _tenant(e: Event) -> str:
    """The book an event posts to: its reseller. Only processor payouts are the platform's."""
    if e.reseller_id == PLATFORM:
        raise PostingError(
            "tenant", f"{e.event_type} {e.event_id} must come from a merchant's tenant, not the platform"
        )
    return e.reseller_id


# ------------------------------------------------------------------ orders, holds


def _order_created(e: Event) -> Legs:
    """A terms order: the buyer owes the platform and the merchant is owed at once.
    Card and ACH orders post nothing; their money moves with the authorization and captures."""
    p: OrderCreated = e.payload
    t = _tenant(e)
    if p.payment_method != "terms":
        return ()
    return _pair(
        account_key(t, "buyer_receivable", p.buyer_id), account_key(t, "merchant_payable", e.merchant_id), p.amount
    )


def _payment_authorized(e: Event) -> Legs:
    """Opens an off-balance hold for the authorized amount (two-phase: pending)."""
    p: PaymentAuthorized = e.payload
    t = _tenant(e)
    return _pair(account_key(t, "auth_hold", p.payment_id), account_key(t, "auth_hold_offset", p.processor), p.amount)


def _release(t: str, p: PaymentCaptured | PaymentVoided) -> Legs:
    return _pair(account_key(t, "auth_hold_offset", p.processor), account_key(t, "auth_hold", p.payment_id), p.amount)


def _payment_captured(e: Event) -> Legs:
    """Draws the captured amount from the hold and books it as a sale not yet settled.
    `final` is not read: a rule sees one event, not the hold's balance, so the rest of a
    hold is released by the void that carries its amount."""
    p: PaymentCaptured = e.payload
    t = _tenant(e)
    sale = _pair(
        account_key(t, "processor_unsettled", p.processor), account_key(t, "merchant_pending", e.merchant_id), p.amount
    )
    return _release(t, p) + sale


def _payment_voided(e: Event) -> Legs:
    """Releases what is left of the hold; nothing was captured for it, so nothing else moves."""
    p: PaymentVoided = e.payload
    return _release(_tenant(e), p)


# ------------------------------------------------------- refunds and chargebacks


def _taken_back(t: str, merchant: str, processor: str, amount: Money) -> Legs:
    """Money returned to the buyer through the processor: off the merchant's unsettled sales."""
    return _pair(account_key(t, "merchant_pending", merchant), account_key(t, "processor_unsettled", processor), amount)


def _payment_refunded(e: Event) -> Legs:
    """Each partial refund is its own event and takes its own amount back."""
    p: PaymentRefunded = e.payload
    return _taken_back(_tenant(e), e.merchant_id, p.processor, p.amount)


def _chargeback_opened(e: Event) -> Legs:
    """The buyer's bank takes the amount back (the merchant bears it) and the dispute is
    recorded off-balance until it is reversed."""
    p: ChargebackOpened = e.payload
    t = _tenant(e)
    dispute = _pair(
        account_key(t, "chargeback", p.chargeback_id), account_key(t, "chargeback_offset", e.merchant_id), p.amount
    )
    return _taken_back(t, e.merchant_id, p.processor, p.amount) + dispute


def _chargeback_reversed(e: Event) -> Legs:
    """The merchant won: the amount comes back as an unsettled sale and the dispute closes."""
    p: ChargebackReversed = e.payload
    t = _tenant(e)
    back = _pair(
        account_key(t, "processor_unsettled", p.processor), account_key(t, "merchant_pending", e.merchant_id), p.amount
    )
    dispute = _pair(
        account_key(t, "chargeback_offset", e.merchant_id), account_key(t, "chargeback", p.chargeback_id), p.amount
    )
    return back + dispute


# ------------------------------------------------------------------- settlement

_INWARD = {"charge": True, "chargeback_reversal": True, "refund": False, "chargeback": False}


def _converted(p: ProcessorSettlement, inward: bool) -> Money:
    """What the item is worth in the settlement currency before the processor's fee:
    net + fee for money in, net − fee for money out. It must equal the gross in one
    currency, and be within half a minor unit of gross × fx_rate across two (the rate is
    per major unit, hence the exponents)."""
    minor = p.net.minor + p.fee.minor if inward else p.net.minor - p.fee.minor
    if minor < 0:
        raise PostingError(
            "settlement", f"{p.settlement_id}: fee {p.fee.minor} exceeds the {p.record_type}'s net {p.net.minor}"
        )
    if p.gross.currency == p.net.currency:
        if p.gross.minor != minor:
            raise PostingError(
                "settlement", f"{p.settlement_id}: gross {p.gross.minor} is not net ± fee = {minor} {p.net.currency}"
            )
        return Money(minor, p.net.currency)
    if p.fx_rate is None:
        raise PostingError(
            "fx", f"{p.settlement_id}: {p.gross.currency} settled in {p.net.currency} without an fx_rate"
        )
    scale = Fraction(10) ** (EXPONENT[p.net.currency] - EXPONENT[p.gross.currency])
    exact = p.gross.minor * Fraction(p.fx_rate) * scale
    if abs(minor - exact) > Fraction(1, 2):
        raise PostingError(
            "fx",
            f"{p.settlement_id}: {p.gross.minor} {p.gross.currency} at {p.fx_rate} is "
            f"{round(exact)}, not net ± fee = {minor} {p.net.currency}",
        )
    return Money(minor, p.net.currency)


def _settled_item(t: str, merchant: str, p: ProcessorSettlement) -> Legs:
    """A sale, refund, chargeback or reversal settles. The merchant's unsettled claim
    becomes payable, and the processor's unsettled debt passes to the platform, which
    collects it in the payout batch — both converted at the processor's rate. The
    processor's fee is withheld from the batch and borne by the merchant."""
    inward = _INWARD[p.record_type]
    converted = _converted(p, inward)
    pending, payable = account_key(t, "merchant_pending", merchant), account_key(t, "merchant_payable", merchant)
    unsettled, due = account_key(t, "processor_unsettled", p.processor), account_key(t, "platform_due")
    receivable, tenant_due = (
        account_key(PLATFORM, "processor_receivable", p.processor),
        account_key(PLATFORM, "tenant_due", t),
    )
    if inward:
        legs = (
            _exchange(t, pending, p.gross, payable, converted)
            + _exchange(t, due, converted, unsettled, p.gross)
            + _pair(receivable, tenant_due, p.net)
        )
    else:
        legs = (
            _exchange(t, payable, converted, pending, p.gross)
            + _exchange(t, unsettled, p.gross, due, converted)
            + _pair(tenant_due, receivable, p.net)
        )
    return legs + _pair(payable, due, p.fee)


def _processor_fee(t: str, p: ProcessorSettlement) -> Legs:
    """A chargeback fee the processor withholds from its batch: the book's own expense
    (the platform recovers it from the merchant as a dispute fee, a fee.charged event)."""
    if p.gross.minor != 0 or p.net != p.fee:
        raise PostingError("settlement", f"{p.settlement_id}: a fee record has no gross and its net is its fee")
    expense = _pair(account_key(t, "fee_expense", p.processor), account_key(t, "platform_due"), p.fee)
    withheld = _pair(
        account_key(PLATFORM, "tenant_due", t), account_key(PLATFORM, "processor_receivable", p.processor), p.net
    )
    return expense + withheld


def _processor_settlement(e: Event) -> Legs:
    p: ProcessorSettlement = e.payload
    t = _tenant(e)
    if p.fee.currency != p.net.currency:
        raise PostingError("settlement", f"{p.settlement_id}: fee in {p.fee.currency}, net in {p.net.currency}")
    return _processor_fee(t, p) if p.record_type == "fee" else _settled_item(t, e.merchant_id, p)


def _processor_payout(e: Event) -> Legs:
    """A payout batch lands in the platform's bank and clears what the processor owed.
    The platform's event and the platform's books only: one batch pays many tenants' lines."""
    p: ProcessorPayout = e.payload
    if e.reseller_id != PLATFORM:
        raise PostingError(
            "tenant", f"processor.payout {e.event_id} must come from the platform, not {e.reseller_id!r}"
        )
    return _pair(
        account_key(PLATFORM, "bank_cash", p.amount.currency),
        account_key(PLATFORM, "processor_receivable", p.processor),
        p.amount,
    )


# ------------------------------------------------------------ terms, fees, payouts


def _buyer_repayment(e: Event) -> Legs:
    """The buyer repays into the platform's bank, which now holds that cash for the book."""
    p: BuyerRepayment = e.payload
    t = _tenant(e)
    book = _pair(account_key(t, "platform_due"), account_key(t, "buyer_receivable", p.buyer_id), p.amount)
    bank = _pair(
        account_key(PLATFORM, "bank_cash", p.amount.currency), account_key(PLATFORM, "tenant_due", t), p.amount
    )
    return book + bank


def _buyer_default(e: Event) -> Legs:
    """Provision the loss, then write the receivable off against the reserve. No event
    carries an expected loss ahead of default, so both happen here; the write-off leg is
    the one that stays if provisioning ever moves earlier."""
    p: BuyerDefault = e.payload
    t = _tenant(e)
    reserve = account_key(t, "loss_reserve")
    provision = _pair(account_key(t, "credit_loss_expense"), reserve, p.amount)
    return provision + _pair(reserve, account_key(t, "buyer_receivable", p.buyer_id), p.amount)


def _paid_out(t: str, owed: str, amount: Money) -> Legs:
    """The platform pays a merchant from its bank what `owed` (an account of the book) holds."""
    book = _pair(owed, account_key(t, "platform_due"), amount)
    bank = _pair(account_key(PLATFORM, "tenant_due", t), account_key(PLATFORM, "bank_cash", amount.currency), amount)
    return book + bank


def _merchant_payout(e: Event) -> Legs:
    """The platform pays the merchant from its bank what the book owes it."""
    p: MerchantPayout = e.payload
    t = _tenant(e)
    return _paid_out(t, account_key(t, "merchant_payable", e.merchant_id), p.amount)


def _payout_held(e: Event) -> Legs:
    """A payout a freeze held: what the merchant is owed is set aside, and no cash moves."""
    p: PayoutHeld = e.payload
    t = _tenant(e)
    return _pair(
        account_key(t, "merchant_payable", e.merchant_id), account_key(t, "payouts_held", e.merchant_id), p.amount
    )


def _payout_released(e: Event) -> Legs:
    """A held payout is sent: from what was set aside, out of the platform's bank. A
    release of more than was held breaks `payouts_held`'s floor, which `ledger verify`
    reports: a rule sees one event, not the balance."""
    p: PayoutReleased = e.payload
    t = _tenant(e)
    return _paid_out(t, account_key(t, "payouts_held", e.merchant_id), p.amount)


def _fee_charged(e: Event) -> Legs:
    """A fee is deducted from what the merchant is owed and earned by the book."""
    p: FeeCharged = e.payload
    t = _tenant(e)
    return _pair(account_key(t, "merchant_payable", e.merchant_id), account_key(t, "fee_revenue", p.kind), p.amount)


# ------------------------------------------------------------- adjusting entries


def _adjustment_posted(e: Event) -> Legs:
    """An approved adjusting entry posts its legs as given, each in the books the chart
    keeps its account in (the event's tenant's, or the platform's). Where the legs cross
    books, the mirrored pair (`platform_due` / `tenant_due:<tenant>`) carries the
    difference per currency, as every rule that crosses books does, so each book still
    balances. Refused, naming the leg: an account a person may not adjust, a leg of
    nothing, legs that do not balance per currency; and an entry approved by the person
    who proposed it (the workbench refuses that too: this is the second line)."""
    p: AdjustmentPosted = e.payload
    if p.approved_by.strip().casefold() == p.proposed_by.strip().casefold():
        raise PostingError(
            "maker_checker",
            f"{e.event_id}: approved by {p.approved_by!r}, who proposed it; an adjusting entry needs a second person",
        )
    t = e.reseller_id
    problems = adjustment_problems(
        [(leg.account, leg.side, leg.amount.minor, leg.amount.currency) for leg in p.legs], t
    )
    if problems:
        raise PostingError("adjustment", f"{e.event_id} for {p.variance_id}: {'; '.join(problems)}")
    legs = tuple(Posting(adjusting_key(t, leg.account), leg.side, leg.amount) for leg in p.legs)
    if t == PLATFORM:
        return legs
    crossing: dict[str, int] = defaultdict(int)  # platform books' debits - credits, per currency
    for leg in legs:
        if leg.account.startswith(f"{PLATFORM}:"):
            crossing[leg.amount.currency] += leg.amount.minor if leg.side == "debit" else -leg.amount.minor
    due, tenant_due = account_key(t, "platform_due"), account_key(PLATFORM, "tenant_due", t)
    for currency, net in sorted(crossing.items()):
        amount = Money(abs(net), currency)
        legs += _pair(tenant_due, due, amount) if net < 0 else _pair(due, tenant_due, amount)
    return legs


_RULES: dict[str, Callable[[Event], Legs]] = {
    "order.created": _order_created,
    "payment.authorized": _payment_authorized,
    "payment.captured": _payment_captured,
    "payment.voided": _payment_voided,
    "payment.refunded": _payment_refunded,
    "chargeback.opened": _chargeback_opened,
    "chargeback.reversed": _chargeback_reversed,
    "processor.settlement": _processor_settlement,
    "processor.payout": _processor_payout,
    "buyer.repayment": _buyer_repayment,
    "buyer.default": _buyer_default,
    "merchant.payout": _merchant_payout,
    "fee.charged": _fee_charged,
    "adjustment.posted": _adjustment_posted,
    "payout.held": _payout_held,
    "payout.released": _payout_released,
}


def post(event: Event) -> Legs:
    """The postings of one event, balanced per currency and per tenant within it."""
    rule = _RULES.get(event.event_type)
    if rule is None:
        raise PostingError("event_type", f"{event.event_type!r} has no posting rule")
    return rule(event)


def capital(amount: Money) -> Legs:
    """The platform's own funds placed in its bank account in one currency (an opening
    balance). No event of the contract carries it, yet the platform finances terms orders
    from it: without it the bank's no-overdraft floor breaks at the first such payout."""
    return _pair(account_key(PLATFORM, "bank_cash", amount.currency), account_key(PLATFORM, "capital"), amount)


# --------------------------------------------------------------------- balances


def balances(postings: Iterable[Posting]) -> dict[tuple[str, str], int]:
    """Signed balance per (account, currency), debits positive. Derived from the postings
    every time: they are the truth, a balance is only a sum of them."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for leg in postings:
        out[(leg.account, leg.amount.currency)] += leg.amount.minor if leg.side == "debit" else -leg.amount.minor
    return dict(out)


@dataclass(frozen=True, slots=True)
class FloorViolation:
    """An account past its floor; `balance` is on the account's normal side."""

    account: str
    currency: str
    balance: int
    floor: str

    def __str__(self) -> str:
        return f"{self.account} {self.currency}: {self.balance} breaks its floor ({self.floor})"


def check_floors(bals: dict[tuple[str, str], int]) -> list[FloorViolation]:
    """Every balance below zero on its normal side where the chart says `non_negative`, and
    every non-zero balance where it says `flat`; `either` accounts are never reported."""
    out = []
    for (account, currency), signed in sorted(bals.items()):
        spec = parse_account(account).spec
        normal = signed if spec.normal == "debit" else -signed
        if (spec.floor == "non_negative" and normal < 0) or (spec.floor == "flat" and normal != 0):
            out.append(FloorViolation(account, currency, normal, spec.floor))
    return out
