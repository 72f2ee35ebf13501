"""Adyen Settlement Details Report: one CSV per batch, unsigned debit/credit pairs, read by name.

Columns (`LAYOUT`): the ones reconciliation needs are required; the rest of Adyen's
(Payment Method, Exchange Rate, the fee split, Booking Date, Modification Merchant
Reference…) are used when present, and any other column (Reserved4…Reserved10, what a
merchant adds) is ignored and kept in the line's `raw`. Adyen lets merchants add and
reorder columns, so order never matters.

Signs: a line's gross and net are Credit - Debit (a refund or chargeback is a debit, so
negative, as `clearline.recon.lines` wants); fee is the sum of Commission, Markup, Scheme
Fees and Interchange (NC), positive. A Fee row without that breakdown states its fee only
as its Net Debit, so there fee = -net and gross is 0; a row of a batch kind (MiscCosts,
Balancetransfer, …) has no gross of its own, so gross = net + fee in the Net Currency.
Without any fee column the fee of a same-currency line is gross - net. The MerchantPayout
row is the batch's control total (see `processor`).

Times: Creation Date is in the zone the TimeZone column names ("CET", "Europe/Amsterdam",
"UTC"; `normalise.zone`); without a TimeZone column, UTC. The value date is Booking Date
when the report has it, else the day of the batch's MerchantPayout row (the day the batch
closed), else the line's own Creation Date, as a day in the report's zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from clearline.recon.intake import normalise as n
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.csv_report import CsvRow, Layout, Text, csv_rows
from clearline.recon.intake.model import Problems
from clearline.recon.intake.processor import Kinds, ProcessorFile, money, settle_days
from clearline.recon.lines import SettlementLine

FEE_COLUMNS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
LAYOUT = Layout(
    "adyen",
    required=(
        "Merchant Account",
        "Merchant Reference",
        "Creation Date",
        "Type",
        "Modification Reference",
        "Gross Currency",
        "Gross Debit (GC)",
        "Gross Credit (GC)",
        "Net Currency",
        "Net Debit (NC)",
        "Net Credit (NC)",
        "Batch Number",
    ),
    optional=(
        "Company Account",
        "Psp Reference",
        "Payment Method",
        "TimeZone",
        "Exchange Rate",
        *FEE_COLUMNS,
        "Payment Method Variant",
        "Modification Merchant Reference",
        "Booking Date",
    ),
    hint=" (the Net columns carry what each line and the batch's payout settled: export the Settlement details"
    " report with its default columns)",
    ignored=r"Reserved\d+",
)
# Adyen's record types (the Type column). "Bulk" and "Externally" variants are the same
# movements settled in bulk or outside Adyen's own processing.
RECORD_TYPES = {
    "Settled": "charge",
    "SettledBulk": "charge",
    "SettledExternally": "charge",
    "Refunded": "refund",
    "RefundedBulk": "refund",
    "RefundedExternally": "refund",
    "RefundedReversed": "refund_reversal",
    "Chargeback": "chargeback",
    "SecondChargeback": "chargeback",
    "ChargebackExternally": "chargeback",
    "ChargebackReversed": "chargeback_reversal",
    "ChargebackReversedExternally": "chargeback_reversal",
    "Fee": "fee",
    "PaymentCost": "fee",
    "MiscCosts": "misc_cost",
    "InvoiceDeduction": "invoice_deduction",
    "DepositCorrection": "deposit_correction",
    "ManualCorrected": "adjustment",
    "Balancetransfer": "balance_transfer",
    "ReserveAdjustment": "reserve",
    "MerchantPayoutReversed": "payout_reversal",
}
KINDS = Kinds.of(RECORD_TYPES)
PAYOUT = "MerchantPayout"


PAYMENT_ROWS = ("charge", "refund", "refund_reversal", "chargeback", "chargeback_reversal")


def parse(text: Text, source_file: str, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None) -> ProcessorFile:
    """`spill`: see `processor.ProcessorFile`."""
    out = ProcessorFile(chunk_rows, spill=spill)
    shared = _shared_references(csv_rows(text, LAYOUT))
    for row in csv_rows(text, LAYOUT):
        line_id = _line_id(row, shared)
        line_no, p = row.line_no, out.problems
        tz = n.zone(row.get("TimeZone"))
        if tz is None:
            p.note(line_no, f"TimeZone: unknown time zone {row.get('TimeZone')!r}")
        net_ccy = n.currency_code(row.get("Net Currency"))
        net = n.credit_minus_debit(
            row.get("Net Credit (NC)"), row.get("Net Debit (NC)"), net_ccy, "Net (NC)", line_no, p
        )
        created = n.local_time(row.get("Creation Date"), "Creation Date", line_no, p, tz)
        day = None if created is None or tz is None else created.astimezone(tz).date()
        batch = row.get("Batch Number")
        if row.get("Type") == PAYOUT:
            out.payouts.append((batch, line_no, None if net is None else -net))
            out.closing[batch] = day
            continue
        record_type = KINDS.classify(row.get("Type"))
        gross_ccy, gross, fee = _gross_and_fee(row, record_type, net, net_ccy, p)
        if row.get("Booking Date"):
            value = n.local_day(row.get("Booking Date"), "Booking Date", line_no, p)
        else:
            value = None
            settle_days(out, line_no, batch, day, "Booking Date")
        out.add(
            SettlementLine(
                processor="adyen",
                line_id=line_id,
                payment_id=n.optional(row.get("Merchant Reference")),
                payout_id=batch,
                record_type=record_type,
                merchant_id=n.optional(row.get("Merchant Account")),
                gross=money(gross, gross_ccy),
                fee=money(fee, net_ccy),
                net=money(net, net_ccy),
                fx_rate=n.fx_rate(row.get("Exchange Rate"), gross_ccy, net_ccy),
                created_at=created,
                value_date=value,
                source_file=source_file,
                line_no=line_no,
                source_type=row.get("Type"),
                raw=row.raw,
            )
        )
    return out


def _base(row: CsvRow) -> str:
    return row.get("Modification Reference") or row.get("Psp Reference") or row.get("Type")


def _shared_references(rows: Iterable[CsvRow]) -> set[str]:
    """The references (Modification Reference, else Psp Reference, else type) that rows of
    different types or descriptions share anywhere in the report: a first pass, so a line's
    id does not depend on which chunk it is read in."""
    kinds: dict[str, tuple[str, str]] = {}
    shared: set[str] = set()
    for row in rows:
        base, kind = _base(row), (row.get("Type"), row.get("Modification Merchant Reference"))
        if kinds.setdefault(base, kind) != kind:
            shared.add(base)
    return shared


def _line_id(row: CsvRow, shared: set[str]) -> str:
    """A row's line id: its Modification Reference (else its Psp Reference, else its type
    and batch). Real reports share one between rows that are different movements (a
    payment's Settled and Refunded rows, every "Balancetransfer" row, fee rows of one
    day), so a reference that rows of different types or descriptions share (`shared`) gets
    the type and the Modification Merchant Reference added; rows alike in all three keep
    one id, so a row written twice is still refused as appearing twice."""
    base = _base(row)
    if base not in shared:
        return base
    return " ".join(filter(None, (base, row.get("Type"), row.get("Modification Merchant Reference"))))


def _gross_and_fee(
    row: CsvRow, record_type: str, net: int | None, net_ccy: str, p: Problems
) -> tuple[str, int | None, int | None]:
    """(gross currency, gross, fee) of one row by the sign rules in the module's docstring."""
    line_no = row.line_no
    stated = bool(row.get("Gross Debit (GC)") or row.get("Gross Credit (GC)"))
    gross_ccy = n.currency_code(row.get("Gross Currency")) or net_ccy
    parts = [n.minor(row.get(c), net_ccy, c, line_no, p, empty=0) for c in FEE_COLUMNS]
    fee = None if None in parts else sum(parts)  # type: ignore[arg-type]
    if record_type == "fee" and not any(row.get(c) for c in FEE_COLUMNS):
        return gross_ccy, 0, None if net is None else -net  # a Fee row without a breakdown: its Net Debit is the fee
    if not stated and record_type not in PAYMENT_ROWS:
        return net_ccy, None if net is None or fee is None else net + fee, fee
    gross = n.credit_minus_debit(
        row.get("Gross Credit (GC)"), row.get("Gross Debit (GC)"), gross_ccy, "Gross (GC)", line_no, p
    )
    if not any(row.has(c) for c in FEE_COLUMNS):
        if gross_ccy != net_ccy:
            p.note(line_no, "no fee columns (Commission, Markup, Scheme Fees, Interchange) on a converted line")
            return gross_ccy, gross, None
        return gross_ccy, gross, None if gross is None or net is None else gross - net
    return gross_ccy, gross, fee
