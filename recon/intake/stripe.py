"""Stripe itemized payout reconciliation report: signed decimals, lower-case currencies.

Signs: gross, fee and net are signed in the balance currency as Stripe writes them (a
refund's net is negative, a fee is positive), gross = net + fee on every row (a control).
A line's gross in `clearline.recon.lines` is the presentment amount, customer_facing_amount in
customer_facing_currency, or 0 in the balance currency on rows without one (fees). The
report does not carry the exchange rate, so fx_rate stays None. The payout's own row
(category payout) is the batch's control total (see `processor`).
"""

from __future__ import annotations

from clearline.recon.intake import normalise as n
from clearline.recon.intake.processor import ProcessorFile, money
from clearline.recon.intake.reading import csv_rows
from clearline.recon.lines import SettlementLine

COLUMNS = (
    "automatic_payout_id",
    "automatic_payout_effective_at",
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "payment_method_type",
    "payment_metadata[merchant_reference]",
    "payment_metadata[merchant_id]",
)
RECORD_TYPES = {
    "charge": "charge",
    "refund": "refund",
    "dispute": "chargeback",
    "dispute_reversal": "chargeback_reversal",
    "fee": "fee",
}
PAYOUT = "payout"
TIME = "%Y-%m-%d %H:%M:%S"


def parse(text: str, source_file: str) -> ProcessorFile:
    out = ProcessorFile()
    for line_no, row in csv_rows(text, COLUMNS):
        p = out.problems
        ccy = n.currency_code(row["currency"])
        gross_col, fee, net = (n.minor(row[c], ccy, c, line_no, p) for c in ("gross", "fee", "net"))
        if row["reporting_category"] == PAYOUT:
            out.payouts.append((row["automatic_payout_id"], line_no, None if net is None else -net))
            continue
        record_type = RECORD_TYPES.get(row["reporting_category"])
        if record_type is None:
            p.note(line_no, f"reporting_category: unknown category {row['reporting_category']!r}")
        if None not in (gross_col, fee, net) and gross_col != net + fee:
            p.note(line_no, f"gross {row['gross']} is not net {row['net']} + fee {row['fee']}")
        presented = n.currency_code(row["customer_facing_currency"]) or ccy
        gross = n.minor(row["customer_facing_amount"], presented, "customer_facing_amount", line_no, p, empty=0)
        out.lines.append(
            SettlementLine(
                processor="stripe",
                line_id=row["balance_transaction_id"],
                payment_id=n.optional(row["payment_metadata[merchant_reference]"]),
                payout_id=row["automatic_payout_id"],
                record_type=record_type,
                merchant_id=n.optional(row["payment_metadata[merchant_id]"]),
                gross=money(gross, presented),
                fee=money(fee, ccy),
                net=money(net, ccy),
                fx_rate=None,
                created_at=n.moment(row["created_utc"], TIME, "created_utc", line_no, p),
                value_date=n.day(row["available_on_utc"], TIME, "available_on_utc", line_no, p),
                source_file=source_file,
                line_no=line_no,
            )
        )
    return out
