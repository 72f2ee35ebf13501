"""Checkout.com Financial Actions by Payout ID: one row per breakdown of an action, signed.

Columns by name (`LAYOUT`): the action, its payout, its breakdown and the two amounts are
required; the rest (entity and sub-entity, reference, FX rate, payment method, …) are
used when present, and any other column is kept in the line's `raw`.

A line is one financial action (one Action ID): its payment breakdown (Capture, Refund,
Chargeback (ADJM), …) gives gross (Processing Currency Amount, signed: negative for
refunds and chargebacks), and each fee breakdown (Acquirer Fee, Interchange Fee, Scheme
Variable Fee, Gateway Fixed Fee, taxes on fees, …) a deduction, so net = the sum of the
action's Holding Currency Amounts and fee = -(the fee rows'). An action with fee rows only
is a stand-alone fee, gross 0 in the Processing Currency; an action of a balance kind
(Cover Negative Position, Invoice Settlement, Top Up, Security Deposit …) has gross = its
net + fee in the holding currency. The same breakdown twice under one Action ID starts a
second line with that id (the action appears twice), which the suite refuses. The kind
comes from the Action Type (and the Breakdown Type for chargebacks); an action type this
parser does not know is "unclassified" (see `processor`). The Payout action is the
batch's control total; a fee row of a payout (a merchant payout fee) is a stand-alone fee
of the batch. Times are ISO 8601 in UTC, as Checkout.com writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone
from pathlib import Path

from clearline.recon.intake import normalise as n
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.csv_report import CsvRow, Layout, Text, csv_rows
from clearline.recon.intake.model import Problems
from clearline.recon.intake.processor import Kinds, ProcessorFile, money
from clearline.recon.lines import PAYMENT_KINDS, SettlementLine

LAYOUT = Layout(
    "checkoutcom",
    required=(
        "Payout ID",
        "Action Type",
        "Action ID",
        "Requested On",
        "Processing Currency",
        "Holding Currency",
        "Breakdown Type",
        "Processing Currency Amount",
        "Holding Currency Amount",
    ),
    optional=(
        "Client Entity ID",
        "Client Entity Name",
        "Sub Entity ID",
        "Sub Entity Name",
        "Currency Account ID",
        "Currency Account Name",
        "Payment ID",
        "Reference",
        "Processed On",
        "FX Rate Applied",
        "Payment Method",
    ),
)
# Action types (checkout.com/docs/…/breakdown-types). A chargeback's direction is in its
# breakdown: ADJM debits, CBRV (and a reversal) credits.
RECORD_TYPES = {
    "Capture": "charge",
    "Refund": "refund",
    "Refund Reversal": "refund_reversal",
    "Chargeback": "chargeback",
    "Chargeback Reversal": "chargeback_reversal",
    "Adjustment": "adjustment",
    "Tiered Pricing Adjustment": "adjustment",
    "Transaction Amount Discrepancy": "adjustment",
    "Cover Negative Position": "balance_transfer",
    "Invoice Settlement": "invoice_deduction",
    "Operational Funding Release": "reserve",
    "Operational Funding Reservation": "reserve",
    "Security Deposit Release": "reserve",
    "Security Deposit Reservation": "reserve",
    "Rolling Reserve": "reserve",
    "Top Up": "transfer",
    "Card Payout": "transfer",
    "Payout Return": "payout_reversal",
}
KINDS = Kinds.of(RECORD_TYPES)
REVERSED_CHARGEBACKS = ("Chargeback (CBRV)", "Chargeback Reversal")
PAYOUT = "Payout"
FEE_WORDS = ("fee", "interchange", "tax", "vat")


def is_fee(breakdown: str) -> bool:
    """Fee breakdowns name a fee (Acquirer Fee, Scheme Variable Fee, Interchange…) or a tax on one."""
    return any(word in breakdown.casefold() for word in FEE_WORDS)


@dataclass
class _Action:
    """One action's rows as they are read: the payment breakdown row, if any, and sums."""

    rows: list[CsvRow]
    breakdowns: set[str]
    payment: CsvRow | None = None
    gross: int | None = 0
    fee: int | None = 0
    net: int | None = 0


def _plus(total: int | None, amount: int | None) -> int | None:
    return None if total is None or amount is None else total + amount


def parse(text: Text, source_file: str, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None) -> ProcessorFile:
    """`spill`: see `processor.ProcessorFile`."""
    out = ProcessorFile(chunk_rows, spill=spill)
    actions: list[_Action] = []
    by_id: dict[str, _Action] = {}
    for row in csv_rows(text, LAYOUT):
        line_no, p = row.line_no, out.problems
        holding_ccy = n.currency_code(row.get("Holding Currency"))
        amount = n.minor(row.get("Holding Currency Amount"), holding_ccy, "Holding Currency Amount", line_no, p)
        action_type, breakdown = row.get("Action Type"), row.get("Breakdown Type")
        if action_type == PAYOUT and not is_fee(breakdown):
            out.payouts.append((row.get("Payout ID"), line_no, None if amount is None else -amount))
            continue
        action = by_id.get(row.get("Action ID"))
        if action is None or breakdown in action.breakdowns:  # a new action, or this one again
            action = by_id[row.get("Action ID")] = _Action([], set())
            actions.append(action)
        action.rows.append(row)
        action.breakdowns.add(breakdown)
        action.net = _plus(action.net, amount)
        if is_fee(breakdown):
            action.fee = _plus(action.fee, None if amount is None else -amount)
        else:
            processing = n.currency_code(row.get("Processing Currency"))
            gross = n.minor(row.get("Processing Currency Amount"), processing, "Processing Currency Amount", line_no, p)
            action.gross = _plus(action.gross, gross)
            action.payment = action.payment or row
    for action in actions:
        out.add(_line(action, source_file, out.problems))
    return out


def _line(action: _Action, source_file: str, p: Problems) -> SettlementLine:
    """The settlement line of one action (the module's docstring has the rules)."""
    first, payment = action.rows[0], action.payment
    holding_ccy = n.currency_code(first.get("Holding Currency"))
    processing = n.currency_code((payment or first).get("Processing Currency")) or holding_ccy
    if payment is None:
        record_type, gross, gross_ccy = "fee", 0, processing
    else:
        record_type = _kind(payment.get("Action Type"), payment.get("Breakdown Type"))
        gross, gross_ccy = action.gross, processing
        if record_type not in PAYMENT_KINDS:
            gross, gross_ccy = _plus(action.net, action.fee), holding_ccy
    types = "+".join(dict.fromkeys(r.get("Breakdown Type") for r in action.rows))
    return SettlementLine(
        processor="checkoutcom",
        line_id=first.get("Action ID"),
        payment_id=n.optional(first.get("Reference")),
        payout_id=first.get("Payout ID"),
        record_type=record_type,
        merchant_id=n.optional(first.get("Sub Entity ID")),
        gross=money(gross, gross_ccy),
        fee=money(action.fee, holding_ccy),
        net=money(action.net, holding_ccy),
        fx_rate=n.fx_rate((payment or first).get("FX Rate Applied"), gross_ccy, holding_ccy),
        created_at=n.local_time(first.get("Requested On"), "Requested On", first.line_no, p, timezone.utc),
        value_date=n.local_day(
            first.get("Processed On") or first.get("Requested On"), "Processed On", first.line_no, p
        ),
        source_file=source_file,
        line_no=first.line_no,
        source_type=f"{first.get('Action Type')}/{types}",
        raw="[" + ",".join(r.raw for r in action.rows) + "]",
    )


def _kind(action: str, breakdown: str) -> str:
    if action == "Chargeback" and breakdown in REVERSED_CHARGEBACKS:
        return "chargeback_reversal"
    return KINDS.classify(action)
