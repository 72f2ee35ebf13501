"""Stripe itemized payout reconciliation report: signed decimals, columns by name.

Stripe lets the user pick the report's columns, so `LAYOUT` requires only what
reconciliation needs (a line id, its payout, currency, gross/fee/net, category and a
time) and uses the rest when present. Known spellings: `created_utc` or `created`,
`available_on_utc` or `available_on`, `automatic_payout_effective_at_utc` or
`automatic_payout_effective_at`, `gross` or `amount` (the balance-history export), and
currency codes in either case. `payment_metadata[KEY]` columns exist only where the
merchant set KEY; `payment_metadata[merchant_reference]` and `[merchant_id]` are used when
present.

Times: a `_utc` column is UTC. A column without the suffix is in the report run's time
zone, which the file does not state (Stripe: the run's `timezone` parameter, Etc/UTC
unless the user chose another; Dashboard downloads use the account's zone). Where both
are present the `_utc` one is used; where only the local one is, it is read as UTC, so a
line of an account in another zone may be off by that offset (at most a day on its value
date, within the matcher's date window). Days are taken as the file writes them.

Signs: gross, fee and net are signed in the balance currency as Stripe writes them (a
refund's net is negative, a fee is positive), gross = net + fee on every row (a control).
A line's gross in `clearline.recon.lines` is the presentment amount (customer_facing_amount
in customer_facing_currency, signed like the row's gross, as Stripe writes it unsigned on
some rows), else the gross in the balance currency. The report carries no exchange rate,
so fx_rate is None. The payment is the merchant's reference in the metadata, else the
payment intent, charge or source id. The value date is available_on, else the payout's
effective day, else the created day. A payout row (category payout; its payout is
automatic_payout_id, else its source id) is the batch's control total (see `processor`).
"""

from __future__ import annotations

from datetime import timezone
from pathlib import Path

from clearline.recon.intake import normalise as n
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.csv_report import Layout, Text, csv_rows
from clearline.recon.intake.processor import Kinds, ProcessorFile, money
from clearline.recon.lines import SettlementLine

LAYOUT = Layout(
    "stripe",
    required=(
        "balance_transaction_id",
        "automatic_payout_id",
        ("created_utc", "created"),
        "currency",
        ("gross", "amount"),
        "fee",
        "net",
        "reporting_category",
    ),
    optional=(
        "automatic_payout_effective_at_utc",
        "automatic_payout_effective_at",
        "available_on_utc",
        "available_on",
        "source_id",
        "description",
        "customer_facing_amount",
        "customer_facing_currency",
        "payment_intent_id",
        "charge_id",
        "payment_method_type",
        "card_brand",
        "payment_metadata[merchant_reference]",
        "payment_metadata[merchant_id]",
    ),
    hint=" (a balance report without automatic_payout_id does not say which payout paid each line: reconcile with"
    " the itemized payout reconciliation report)",
)
# The Dashboard's Payments export (unified_payments.csv): one row per charge, with no
# balance transaction, net or payout, so nothing in it can be tied to a bank credit.
PAYMENTS_EXPORT = Layout("stripe payments", required=("id", "amount_refunded", "captured"))
PAYMENTS_REFUSAL = (
    "a Stripe Payments export (one row per charge: no balance transactions, fees or payouts): it has no lines to "
    "reconcile; send the itemized payout reconciliation report instead"
)
# Stripe's reporting categories (docs.stripe.com/reports/reporting-categories).
RECORD_TYPES = {
    "charge": "charge",
    "refund": "refund",
    "refund_failure": "refund_reversal",
    "dispute": "chargeback",
    "charge_failure": "chargeback",
    "dispute_reversal": "chargeback_reversal",
    "fee": "fee",
    "network_cost": "misc_cost",
    "tax": "misc_cost",
    "climate_order_purchase": "misc_cost",
    "climate_order_refund": "misc_cost",
    "contribution": "misc_cost",
    "partial_capture_reversal": "adjustment",
    "other_adjustment": "adjustment",
    "adjustment": "adjustment",
    "platform_earning": "adjustment",
    "platform_earning_refund": "adjustment",
    "payout_reversal": "payout_reversal",
    "transfer": "transfer",
    "transfer_reversal": "transfer",
    "connect_collection_transfer": "transfer",
    "topup": "transfer",
    "topup_reversal": "transfer",
    "risk_reserved_funds": "reserve",
    "connect_reserved_funds": "reserve",
}
KINDS = Kinds.of(RECORD_TYPES)
PAYOUT = "payout"
PAYMENT_IDS = ("payment_metadata[merchant_reference]", "payment_intent_id", "charge_id", "source_id")


def parse(text: Text, source_file: str, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None) -> ProcessorFile:
    """`spill`: see `processor.ProcessorFile`."""
    out = ProcessorFile(chunk_rows, spill=spill)
    for row in csv_rows(text, LAYOUT):
        line_no, p = row.line_no, out.problems
        ccy = n.currency_code(row.get("currency"))
        gross_col, fee, net = (
            n.minor(row.get(*c), ccy, c[0], line_no, p) for c in (("gross", "amount"), ("fee",), ("net",))
        )
        category = row.get("reporting_category")
        payout_id = row.get("automatic_payout_id")
        if category == PAYOUT:
            out.payouts.append((payout_id or row.get("source_id"), line_no, None if net is None else -net))
            continue
        record_type = KINDS.classify(category)
        if None not in (gross_col, fee, net) and gross_col != net + fee:
            p.note(line_no, f"gross {row.get('gross', 'amount')} is not net {row.get('net')} + fee {row.get('fee')}")
        presented = n.currency_code(row.get("customer_facing_currency")) or ccy
        if row.get("customer_facing_amount"):  # the presentment amount, in its currency (ISO 4217 or refused)
            facing = n.minor(row.get("customer_facing_amount"), presented, "customer_facing_amount", line_no, p)
            gross = None if facing is None or gross_col is None else abs(facing) * (1 if gross_col >= 0 else -1)
        else:
            gross, presented = gross_col, ccy
        time = n.local_time(row.get("created_utc", "created"), "created_utc", line_no, p, timezone.utc)
        day_text = row.get("available_on_utc", "available_on", "automatic_payout_effective_at_utc")
        day_text = day_text or row.get("automatic_payout_effective_at")
        day = n.local_day(day_text, "available_on_utc", line_no, p) if day_text else (time and time.date())
        out.add(
            SettlementLine(
                processor="stripe",
                line_id=row.get("balance_transaction_id"),
                payment_id=n.optional(row.get(*PAYMENT_IDS)) if record_type != "fee" else _metadata(row),
                payout_id=payout_id,
                record_type=record_type,
                merchant_id=n.optional(row.get("payment_metadata[merchant_id]")),
                gross=money(gross, presented),
                fee=money(fee, ccy),
                net=money(net, ccy),
                fx_rate=None,
                created_at=time,
                value_date=day,
                source_file=source_file,
                line_no=line_no,
                source_type=category,
                raw=row.raw,
            )
        )
    return out


def _metadata(row) -> str | None:
    """A stand-alone fee's payment: only the merchant's own reference (its source is the fee)."""
    return n.optional(row.get("payment_metadata[merchant_reference]"))
