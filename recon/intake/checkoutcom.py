"""Checkout.com Financial Actions by Payout ID: one row per breakdown of an action, signed.

An action's gross row (Capture, Refund, Chargeback ADJM/CBRV) gives gross (Processing
Currency Amount, signed: negative for refunds and chargebacks) and net + fee (Holding
Currency Amount); the Acquirer Fee row right after it with the same Action ID gives -fee.
A line is a gross row plus its fee row; an Acquirer Fee row with no gross row before it is
a stand-alone fee (Action Type Adjustment), gross 0 in the Processing Currency. So a
duplicated action becomes two lines with one Action ID, which the suite refuses. The
Payout row is the batch's control total (see `processor`).
"""

from __future__ import annotations

from dataclasses import replace

from clearline.recon.intake import normalise as n
from clearline.recon.intake.model import Problems
from clearline.recon.intake.processor import ProcessorFile, money
from clearline.recon.intake.reading import csv_rows
from clearline.recon.lines import SettlementLine

COLUMNS = (
    "Client Entity ID",
    "Client Entity Name",
    "Sub Entity ID",
    "Payout ID",
    "Payment ID",
    "Action Type",
    "Action ID",
    "Reference",
    "Requested On",
    "Processed On",
    "Processing Currency",
    "Holding Currency",
    "Breakdown Type",
    "FX Rate Applied",
    "Processing Currency Amount",
    "Holding Currency Amount",
    "Payment Method",
)
RECORD_TYPES = {
    ("Capture", "Capture"): "charge",
    ("Refund", "Refund"): "refund",
    ("Chargeback", "Chargeback (ADJM)"): "chargeback",
    ("Chargeback", "Chargeback (CBRV)"): "chargeback_reversal",
}
FEE, PAYOUT = "Acquirer Fee", ("Payout", "Payout")
MILLIS = "%Y-%m-%dT%H:%M:%S.%f"


def parse(text: str, source_file: str) -> ProcessorFile:
    out = ProcessorFile()
    for line_no, row in csv_rows(text, COLUMNS):
        p = out.problems
        holding = n.currency_code(row["Holding Currency"])
        amount = n.minor(row["Holding Currency Amount"], holding, "Holding Currency Amount", line_no, p)
        kind = (row["Action Type"], row["Breakdown Type"])
        last = out.lines[-1] if out.lines else None
        if kind == PAYOUT:
            out.payouts.append((row["Payout ID"], line_no, None if amount is None else -amount))
        elif row["Breakdown Type"] == FEE and last and last.line_id == row["Action ID"] and last.fee.minor == 0:
            fee = None if amount is None else -amount
            net = None if None in (fee, last.net.minor) else last.net.minor - fee
            out.lines[-1] = _replace_fee(last, fee, net)
        elif row["Breakdown Type"] == FEE:
            out.lines.append(_line(row, line_no, p, source_file, "fee", 0, amount))
        else:
            record_type = RECORD_TYPES.get(kind)
            if record_type is None:
                p.note(line_no, f"Action Type/Breakdown Type: unknown pair {kind[0]!r}/{kind[1]!r}")
            processing = n.currency_code(row["Processing Currency"])
            gross = n.minor(row["Processing Currency Amount"], processing, "Processing Currency Amount", line_no, p)
            out.lines.append(_line(row, line_no, p, source_file, record_type, gross, amount))
    return out


def _line(
    row: dict[str, str],
    line_no: int,
    p: Problems,
    source_file: str,
    record_type: str | None,
    gross: int | None,
    holding: int | None,
) -> SettlementLine:
    """A line from its first row: a gross row (holding = net + fee, fee 0 until its fee
    row comes) or a stand-alone fee row (holding = -fee)."""
    processing, holding_ccy = n.currency_code(row["Processing Currency"]), n.currency_code(row["Holding Currency"])
    standalone = record_type == "fee"
    fee = (None if holding is None else -holding) if standalone else 0
    return SettlementLine(
        processor="checkoutcom",
        line_id=row["Action ID"],
        payment_id=n.optional(row["Reference"]),
        payout_id=row["Payout ID"],
        record_type=record_type,
        merchant_id=n.optional(row["Sub Entity ID"]),
        gross=money(gross, processing),
        fee=money(fee, holding_ccy),
        net=money(holding, holding_ccy),
        fx_rate=n.fx_rate(row["FX Rate Applied"], processing, holding_ccy),
        created_at=n.moment(row["Requested On"], MILLIS, "Requested On", line_no, p),
        value_date=n.day(row["Processed On"], MILLIS, "Processed On", line_no, p),
        source_file=source_file,
        line_no=line_no,
    )


def _replace_fee(line: SettlementLine, fee: int | None, net: int | None) -> SettlementLine:
    return replace(line, fee=money(fee, line.fee.currency), net=money(net, line.net.currency))
