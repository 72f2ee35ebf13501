"""Checkout.com Settlement Breakdown Report: one row per financial movement of a settlement.

The newer of Checkout.com's two settlement reports (the other, Financial Actions by Payout
ID, is `checkoutcom`): one file per payout (`settlement-breakdown_{entity}_{date}_{payout
id}_1.csv`), one row per movement with its amounts already summed per movement rather
than one row per breakdown. Columns by name (`LAYOUT`); every other column is kept in the
line's `raw`.

Amounts are signed decimals in the holding currency: Gross + Deduction = Net on every row
(a deduction is negative: the movement's fees and taxes, itemised in the Processing,
Scheme, Interchange and Tax columns, and a reserve), which is checked per row. A line's
fee is -Deduction, its net is Net, its gross the Gross In Processing Currency in the
Processing Currency (the presentment amount) where the row has one, else the gross in the
holding currency. A movement of a batch kind (a fee of its own such as Void, Account
Updater or a network token, a merchant payout fee, a reserve or a top-up) has gross = net +
fee in the holding currency, as in `checkoutcom`. A Charge with no gross is the fees of a
charge that settled elsewhere (an authorization's), a cost of the batch.

The report has no action id, so a line is known by its payment, its type and when it was
processed (`line_id`), the same in any re-download; it has no payout row either (the
Payouts report states each payout's amount), so no payout control is declared and the
batch's expected payout is the sum of its lines' nets. Times are ISO 8601 in UTC, as
Checkout.com writes them.
"""

from __future__ import annotations

from datetime import timezone
from pathlib import Path

from clearline.recon.intake import checkoutcom
from clearline.recon.intake import normalise as n
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.csv_report import Layout, Text, csv_rows
from clearline.recon.intake.processor import Kinds, ProcessorFile, money
from clearline.recon.lines import PAYMENT_KINDS, SettlementLine

LAYOUT = Layout(
    "checkoutcom_breakdown",
    required=(
        "Type",
        "Payment ID",
        "Processed On",
        "Holding Currency",
        "Payout ID",
        "Gross In Holding Currency",
        "Deduction In Holding Currency",
        "Net In Holding Currency",
    ),
    optional=(
        "Client Entity ID",
        "Client Entity Name",
        "Processing Channel ID",
        "Processing Channel Name",
        "Reference",
        "Available On",
        "Processing Fee In Holding Currency",
        "Scheme Fee In Holding Currency",
        "Interchange In Holding Currency",
        "Tax In Holding Currency",
        "Reserve In Holding Currency",
        "Processing Currency",
        "Gross In Processing Currency",
        "FX Rate Applied",
        "Payment Method",
    ),
)
# Checkout.com's Payouts report: one row per payout with its amount and totals by kind, and
# no line to reconcile; refused naming the report that explains a payout line by line.
PAYOUTS_REPORT = Layout("checkoutcom payouts", required=("Payout ID", "Payout Amount", "Merchant Payout Fees"))
PAYOUTS_REFUSAL = (
    "a Checkout.com Payouts report (one row per payout, totals only): it has no lines to reconcile; send the "
    "Settlement Breakdown Report (or Financial Actions by Payout ID) of each payout instead"
)
# Movement types: the payment lifecycle (docs: reconciliation breakdown types), the fees a
# movement of its own carries, and the balance kinds the Financial Actions report knows.
RECORD_TYPES = {
    **checkoutcom.RECORD_TYPES,
    "Charge": "charge",
    "Partial Capture": "charge",
    "Partial Refund": "refund",
    "Clearing Failed": "adjustment",
    "Void": "misc_cost",
    "Authorization": "misc_cost",
    "Card Verification": "misc_cost",
    "Account Updater": "misc_cost",
    "Network Token Provisioning": "misc_cost",
    "Network Token Update": "misc_cost",
    "Authentication": "misc_cost",
    "Merchant Payout": "misc_cost",
}
KINDS = Kinds.of(RECORD_TYPES)


def parse(text: Text, source_file: str, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None) -> ProcessorFile:
    """`spill`: see `processor.ProcessorFile`."""
    out = ProcessorFile(chunk_rows, spill=spill)
    for row in csv_rows(text, LAYOUT):
        line_no, p = row.line_no, out.problems
        holding = n.currency_code(row.get("Holding Currency"))
        gross_held, deduction, net = (
            n.minor(row.get(column), holding, column, line_no, p)
            for column in ("Gross In Holding Currency", "Deduction In Holding Currency", "Net In Holding Currency")
        )
        if None not in (gross_held, deduction, net) and gross_held + deduction != net:
            p.note(
                line_no,
                f"Gross In Holding Currency {row.get('Gross In Holding Currency')} + Deduction "
                f"{row.get('Deduction In Holding Currency')} is not Net {row.get('Net In Holding Currency')}",
            )
        fee = None if deduction is None else -deduction
        kind = _kind(row.get("Type"), gross_held)
        processing = n.currency_code(row.get("Processing Currency"))
        if kind not in PAYMENT_KINDS or not processing:
            gross, gross_ccy = (None if net is None or fee is None else net + fee), holding
        else:
            gross_ccy = processing
            gross = n.minor(
                row.get("Gross In Processing Currency"), processing, "Gross In Processing Currency", line_no, p
            )
        processed = row.get("Processed On")
        out.add(
            SettlementLine(
                processor="checkoutcom",
                line_id=f"{row.get('Payment ID') or row.get('Payout ID')}:{row.get('Type')}:{processed}",
                payment_id=n.optional(row.get("Reference")),
                payout_id=row.get("Payout ID"),
                record_type=kind,
                merchant_id=None,
                gross=money(gross, gross_ccy),
                fee=money(fee, holding),
                net=money(net, holding),
                fx_rate=n.fx_rate(row.get("FX Rate Applied"), gross_ccy, holding),
                created_at=n.local_time(processed, "Processed On", line_no, p, timezone.utc),
                value_date=n.local_day(row.get("Available On") or processed, "Available On", line_no, p),
                source_file=source_file,
                line_no=line_no,
                source_type=row.get("Type"),
                raw=row.raw,
            )
        )
    return out


def _kind(movement: str, gross_held: int | None) -> str:
    """A movement's line kind: a Charge with no gross is a charge's fees (a cost of the
    batch), a Chargeback with a positive gross gives the money back (a reversal)."""
    kind = KINDS.classify(movement)
    if kind == "charge" and gross_held == 0:
        return "misc_cost"
    if kind == "chargeback" and gross_held is not None and gross_held > 0:
        return "chargeback_reversal"
    return kind
