"""Adyen Settlement Details Report: one CSV per batch, unsigned debit/credit pairs.

Signs: a line's gross and net are Credit - Debit (a refund or chargeback is a debit, so
negative, as `clearline.recon.lines` wants); fee is the sum of Commission, Markup, Scheme Fees and
Interchange (NC), positive; a Fee row without that breakdown states its fee only as its
Net Debit, so there fee = -net. Fee rows have no gross: gross is 0 in the Gross Currency.
The MerchantPayout row is the batch's control total (see `processor`).
"""

from __future__ import annotations

from clearline.recon.intake import normalise as n
from clearline.recon.intake.processor import ProcessorFile, money
from clearline.recon.intake.reading import csv_rows
from clearline.recon.lines import SettlementLine

COLUMNS = (
    "Company Account",
    "Merchant Account",
    "Psp Reference",
    "Merchant Reference",
    "Payment Method",
    "Creation Date",
    "TimeZone",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Exchange Rate",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    "Commission (NC)",
    "Markup (NC)",
    "Scheme Fees (NC)",
    "Interchange (NC)",
    "Payment Method Variant",
    "Batch Number",
    "Booking Date",
)
RECORD_TYPES = {
    "Settled": "charge",
    "Refunded": "refund",
    "Chargeback": "chargeback",
    "ChargebackReversed": "chargeback_reversal",
    "Fee": "fee",
}
PAYOUT = "MerchantPayout"
FEE_COLUMNS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")


def parse(text: str, source_file: str) -> ProcessorFile:
    out = ProcessorFile()
    for line_no, row in csv_rows(text, COLUMNS):
        p = out.problems
        gross_ccy, net_ccy = n.currency_code(row["Gross Currency"]), n.currency_code(row["Net Currency"])
        net = n.credit_minus_debit(row["Net Credit (NC)"], row["Net Debit (NC)"], net_ccy, "Net (NC)", line_no, p)
        if row["Type"] == PAYOUT:
            out.payouts.append((row["Batch Number"], line_no, None if net is None else -net))
            continue
        record_type = RECORD_TYPES.get(row["Type"])
        if record_type is None:
            p.note(line_no, f"Type: unknown record type {row['Type']!r}")
        gross = n.credit_minus_debit(
            row["Gross Credit (GC)"], row["Gross Debit (GC)"], gross_ccy, "Gross (GC)", line_no, p
        )
        parts = [n.minor(row[c], net_ccy, c, line_no, p, empty=0) for c in FEE_COLUMNS]
        fee = None if None in parts else sum(parts)
        if record_type == "fee" and not any(row[c].strip() for c in FEE_COLUMNS):
            fee = None if net is None else -net  # a Fee row without a breakdown: its Net Debit is the fee
        out.lines.append(
            SettlementLine(
                processor="adyen",
                line_id=row["Modification Reference"],
                payment_id=n.optional(row["Merchant Reference"]),
                payout_id=row["Batch Number"],
                record_type=record_type,
                merchant_id=n.optional(row["Merchant Account"]),
                gross=money(gross, gross_ccy),
                fee=money(fee, net_ccy),
                net=money(net, net_ccy),
                fx_rate=n.fx_rate(row["Exchange Rate"], gross_ccy, net_ccy),
                created_at=n.moment(
                    row["Creation Date"],
                    "%Y-%m-%d %H:%M:%S",
                    "Creation Date",
                    line_no,
                    p,
                    row["TimeZone"].strip() or "UTC",
                ),
                value_date=n.day(row["Booking Date"], "%Y-%m-%d", "Booking Date", line_no, p),
                source_file=source_file,
                line_no=line_no,
            )
        )
    return out
