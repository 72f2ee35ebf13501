"""Adjusting entries proposed for reconciliation variances: the correction the numbers of
a variance already state, as legs a person accepts or edits before another approves them.

Pure functions of one variance row (the columns of `matching.variance.SCHEMA`; a store
row with its status columns too). Where the variance states both values in money
("fee: 2.90 EUR vs 3.10 EUR"), the entry moves exactly their difference; the side each
leg takes follows from which way the difference goes:

* fee_mismatch: the processor withheld another fee than its notice said. The difference
  is the book's fee expense, and the processor owes that much less (or more):
  fee_expense:<processor> against processor_receivable:<processor>.
* amount_mismatch: the processor settled another amount for the item. The merchant is
  owed what was settled: merchant_payable:<merchant> against the receivable.
* currency_fx_mismatch: the processor converted at another rate; the difference in the
  converted net is an FX gain or loss: fx_gain_loss against the receivable. For a wrong
  rate whose net the report does not state, the variance's amount at stake is taken, a
  loss when the processor's rate is lower (money in; a refund goes the other way).
* missing_at_processor: a line the processor never reported, past its deadline; writing
  it off is the remedy: credit_loss_expense against the receivable.

Breaks between the bank and the ledger move the ledger's bank cash (`bank_cash:<currency>`)
to what the bank booked, so the statement's balance and the ledger agree again from the
day the entry posts (reconciliation reads that leg: `matching.adjusted.bank_movements`).
A person still says why, so these are "manual" entries with their legs filled in:

* unexplained_bank_line: a bank line nobody expected is booked as the bank booked it and
  parked in `suspense` until its cause is known;
* payout_not_in_bank: a movement the bank never booked, past its deadline, is taken back
  out of the bank's cash: a processor's payout is owed by the processor again, a
  merchant's payout owed to the merchant again, anything else parked in suspense;
* amount_mismatch between a bank line and its payout (field "amount"): the difference
  moves the bank's cash, against the processor's receivable for a processor's payout,
  else suspense.

Anything else (a wrong currency, a duplicate, a balance that differs with no line to
show why) has no correction these numbers state: no proposal, a person writes the entry
("manual"). Account names are the chart's (`clearline.ledger.accounts`) without their
tenant: the ledger places each in the book it belongs to when it posts the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Literal, Mapping

from clearline.currency import EXPONENT, decimal_to_minor, minor_to_decimal
from clearline.events import AdjustmentLeg, Money
from clearline.ledger import accounts

Kind = Literal["fee", "fx", "amount", "write_off", "manual"]
KINDS: tuple[str, ...] = ("fee", "fx", "amount", "write_off", "manual")
# The accounts a person may pick, with what each is kept per ("fee_expense:<processor>");
# None: the account takes no sub-ledger key.
ADJUSTMENT_ACCOUNTS: dict[str, str | None] = {name: accounts.CHART[name].sub for name in accounts.ADJUSTABLE}


@dataclass(frozen=True, slots=True)
class AdjustmentProposal:
    """An adjusting entry for one variance, in one currency, not yet approved. Its legs are
    the contract's (`clearline.events.AdjustmentLeg`: account, side, amount), the very legs
    `adjustment.posted` carries once approved; each leg's amount is in `currency`."""

    variance_id: str
    merchant_id: str | None
    processor: str | None
    currency: str
    kind: Kind
    legs: tuple[AdjustmentLeg, ...]
    memo: str


def check_adjustment(proposal: AdjustmentProposal) -> list[str]:
    """What keeps the entry from posting, as a person reads it; [] when it posts: a known
    kind and currency, every leg in the entry's currency, at least one minor unit, on an
    account a person may adjust, the legs balanced. The ledger's posting rule makes the
    same checks."""
    problems = []
    if proposal.kind not in KINDS:
        problems.append(f"kind {proposal.kind!r} is not one of {', '.join(KINDS)}")
    if proposal.currency not in EXPONENT:
        return problems + [f"currency {proposal.currency!r} is not an ISO 4217 code"]
    problems += [
        f"leg {n} ({leg.account}) is in {leg.amount.currency}, the entry in {proposal.currency}"
        for n, leg in enumerate(proposal.legs, 1)
        if leg.amount.currency != proposal.currency
    ]
    legs = [(leg.account, leg.side, leg.amount.minor, leg.amount.currency) for leg in proposal.legs]
    return problems + accounts.adjustment_problems(legs)


# ------------------------------------------------------------------ proposals


def propose_adjustment(variance: Mapping[str, object]) -> AdjustmentProposal | None:
    """The adjusting entry a variance's own numbers call for, or None when they state no
    correction (a person then writes the entry by hand)."""
    rule = _RULES.get(str(variance.get("category")))
    return rule(variance) if rule is not None else None


def _money(text: object, currency: str) -> int | None:
    """Minor units of a variance's money text ("12.90 USD", "net -3.10 EUR") in
    `currency`; None when the text is not money in that currency."""
    if not isinstance(text, str):
        return None
    parts = text.removeprefix("net ").split(" ")
    if len(parts) != 2 or parts[1] != currency:
        return None
    try:
        return decimal_to_minor(parts[0], currency)
    except ValueError:
        return None


def _difference(v: Mapping[str, object]) -> int | None:
    """actual − expected in minor units, when both are money in the variance's currency."""
    currency = str(v.get("currency"))
    expected, actual = _money(v.get("expected"), currency), _money(v.get("actual"), currency)
    return None if expected is None or actual is None else actual - expected


def _entry(v: Mapping[str, object], kind: Kind, debit: str, credit: str, minor: int, memo: str) -> AdjustmentProposal:
    amount = Money(minor, str(v["currency"]))
    return AdjustmentProposal(
        str(v["variance_id"]),
        _text(v.get("merchant_id")),
        _text(v.get("processor")),
        amount.currency,
        kind,
        (AdjustmentLeg(debit, "debit", amount), AdjustmentLeg(credit, "credit", amount)),
        memo,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _shown(minor: int, currency: str) -> str:
    return f"{minor_to_decimal(minor, currency)} {currency}"


def _fee(v: Mapping[str, object]) -> AdjustmentProposal | None:
    """More fee withheld: expense it and the processor owes less; less fee: the reverse."""
    diff, processor = _difference(v), v.get("processor")
    if v.get("field") != "fee" or not diff or not processor:
        return None
    expense, receivable = f"fee_expense:{processor}", f"processor_receivable:{processor}"
    memo = (
        f"{processor} withheld {v['actual']} of fee where its notice said {v['expected']}: "
        f"{_shown(abs(diff), str(v['currency']))} {'more' if diff > 0 else 'less'} fee expense, "
        f"and it owes that much {'less' if diff > 0 else 'more'}"
    )
    debit, credit = (expense, receivable) if diff > 0 else (receivable, expense)
    return _entry(v, "fee", debit, credit, abs(diff), memo)


def _amount(v: Mapping[str, object]) -> AdjustmentProposal | None:
    """The processor settled another amount: the merchant is owed what was settled."""
    diff, processor, merchant = _difference(v), v.get("processor"), v.get("merchant_id")
    if v.get("field") not in ("gross", "net") or not diff or not processor or not merchant:
        return None
    receivable, payable = f"processor_receivable:{processor}", f"merchant_payable:{merchant}"
    memo = (
        f"{processor} settled {v['field']} {v['actual']} where the ledger expected {v['expected']}: "
        f"{merchant} is owed {_shown(abs(diff), str(v['currency']))} {'more' if diff > 0 else 'less'}"
    )
    debit, credit = (receivable, payable) if diff > 0 else (payable, receivable)
    return _entry(v, "amount", debit, credit, abs(diff), memo)


def _fx(v: Mapping[str, object]) -> AdjustmentProposal | None:
    """Another rate: the converted net's difference is an FX gain (more) or loss (less)."""
    processor, field = v.get("processor"), v.get("field")
    if not processor:
        return None
    if field == "converted net":
        diff = _difference(v)
    elif field == "fx_rate":
        try:
            lower = Fraction(str(v["actual"])) < Fraction(str(v["expected"]))
        except (ValueError, ZeroDivisionError):
            return None
        at_stake = v.get("amount_minor")
        diff = None if not isinstance(at_stake, int) else (-at_stake if lower else at_stake)
    else:  # a wrong currency states no rate and no amount to correct by
        return None
    if not diff:
        return None
    receivable, fx = f"processor_receivable:{processor}", "fx_gain_loss"
    memo = (
        f"{processor} converted at {field} {v['actual']} where the ledger expected {v['expected']}: "
        f"an FX {'gain' if diff > 0 else 'loss'} of {_shown(abs(diff), str(v['currency']))}"
    )
    debit, credit = (receivable, fx) if diff > 0 else (fx, receivable)
    return _entry(v, "fx", debit, credit, abs(diff), memo)


def _write_off(v: Mapping[str, object]) -> AdjustmentProposal | None:
    """A line the processor never paid, past its deadline: the receivable is a credit loss.
    A missing refund or chargeback (a negative net) is money the processor kept: no loss."""
    processor, currency = v.get("processor"), str(v.get("currency"))
    net = _money(v.get("expected"), currency)
    if not processor or net is None or net <= 0:
        return None
    memo = f"{processor} never reported or paid its line for {v.get('reference')}: write off {_shown(net, currency)}"
    return _entry(v, "write_off", "credit_loss_expense", f"processor_receivable:{processor}", net, memo)


def _trailing(text: object, currency: str) -> int | None:
    """Minor units of the money that ends a variance's text ("INCOMING WIRE 12.90 USD",
    "merchant payout -4.00 USD") in `currency`; None when it ends in no such money."""
    return _money(" ".join(text.split(" ")[-2:]), currency) if isinstance(text, str) else None


def _bank(v: Mapping[str, object], moved: int, other: str, memo: str) -> AdjustmentProposal:
    """A manual entry that moves `moved` minor units into (+) or out of (-) the bank's cash
    in the variance's currency, against `other`."""
    bank = f"bank_cash:{v['currency']}"
    debit, credit = (bank, other) if moved > 0 else (other, bank)
    return _entry(v, "manual", debit, credit, abs(moved), memo)


def _bank_line(v: Mapping[str, object]) -> AdjustmentProposal | None:
    """A bank line nobody expected: into the books as booked, parked in suspense."""
    moved = _trailing(v.get("actual"), str(v.get("currency")))
    if not moved:
        return None
    memo = (
        f"a bank line nobody expected ({str(v['actual']).strip()}): booked as the bank booked it, "
        "held in suspense until its cause is known"
    )
    return _bank(v, moved, "suspense", memo)


def _owed_again(v: Mapping[str, object]) -> str:
    """Who owes (or is owed) a bank movement that did not happen: the processor for its
    payout, the merchant for theirs, else suspense."""
    if v.get("payout_id") and v.get("processor"):
        return f"processor_receivable:{v['processor']}"
    if v.get("merchant_id") and str(v.get("expected", "")).startswith("merchant payout"):
        return f"merchant_payable:{v['merchant_id']}"
    return "suspense"


def _not_in_bank(v: Mapping[str, object]) -> AdjustmentProposal | None:
    """A movement the bank never booked: taken back out of the bank's cash."""
    expected = _trailing(v.get("expected"), str(v.get("currency")))
    if not expected:
        return None
    memo = f"the bank never booked the {v['expected']} the ledger put in its cash: taken back out"
    return _bank(v, -expected, _owed_again(v), memo)


def _bank_amount(v: Mapping[str, object]) -> AdjustmentProposal | None:
    """The bank booked another amount than the payout: the bank's cash moves the difference."""
    diff = _difference(v) if v.get("field") == "amount" else None
    if not diff:
        return None
    memo = f"the bank booked {v['actual']} where the ledger expected {v['expected']}: its cash moves by the difference"
    return _bank(v, diff, _owed_again(v), memo)


def _amounts(v: Mapping[str, object]) -> AdjustmentProposal | None:
    """A line's gross or net (`_amount`), or a bank line's amount (`_bank_amount`)."""
    return _bank_amount(v) if v.get("field") == "amount" else _amount(v)


_RULES: dict[str, Callable[[Mapping[str, object]], AdjustmentProposal | None]] = {
    "fee_mismatch": _fee,
    "amount_mismatch": _amounts,
    "currency_fx_mismatch": _fx,
    "missing_at_processor": _write_off,
    "unexplained_bank_line": _bank_line,
    "payout_not_in_bank": _not_in_bank,
}
