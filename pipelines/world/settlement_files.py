"""Processor settlement reports, written in each processor's own CSV layout.

The world generator produces one normalised table of settlement lines (see
`write_settlement_reports`); reconciliation must instead cope with what processors
really send. This module turns the table into those files, so the intake has to detect
three layouts, unsigned debit/credit pairs, signed decimals, lower-case currencies,
per-breakdown rows and FX columns, exactly as in production.

Money inside is integer minor units; every decimal in a file is formatted from those
integers by `clearline.currency.minor_to_decimal` (the currency's ISO 4217 decimals, no
floats), so `decimal_to_minor` on a file gives the same integers back.

Layouts (under `<out_dir>/<processor>/`, out_dir being the world's `settlements/`)
------------------------------------------------------------------------------

adyen: Settlement Details Report, one file per batch, `settlement_detail_report_batch_<batch_id>.csv`
    (Adyen's own file name). Columns, in order: ADYEN_COLUMNS. One row per line.
    Type: charge Settled, refund Refunded, chargeback Chargeback, chargeback_reversal
    ChargebackReversed, fee Fee, payout MerchantPayout. Gross Debit/Credit (GC) are the
    unsigned gross in Gross Currency (empty on Fee and MerchantPayout rows, as Adyen
    writes them); Net Debit/Credit (NC) the unsigned net in Net Currency; Exchange Rate
    is the line's fx_rate, or 1. Commission/Markup/Scheme Fees/Interchange (NC) come from
    the fee breakdown and are empty when zero. Psp Reference = psp_reference, Merchant
    Reference = payment_id, Modification Reference = line_id, Merchant Account =
    merchant_id, Batch Number = batch_id, Booking Date = available_on, Creation Date =
    created_at to the second in UTC. Payment Method / Variant: ach, or visa/visacredit or
    mc/mccredit (the table says only "card"; the scheme is fixed per payment_id).

stripe: itemized payout reconciliation, one file per payout day,
    `payout_reconciliation_<YYYY-MM-DD>.csv`, holding every payout that arrives that day.
    Columns: STRIPE_COLUMNS. Amounts are signed decimals in the balance (net) currency:
    gross = net + fee, so a charge is gross 100.00 fee 3.20 net 96.80 and a stand-alone
    fee is gross 0.00 fee 15.00 net -15.00. currency and customer_facing_currency are
    lower case as Stripe writes them; customer_facing_amount is the presentment amount
    (gross_minor in gross_currency) on charges, refunds and disputes. reporting_category:
    charge, refund, dispute, dispute_reversal, fee, payout. The payout's own balance
    transaction (category payout, gross = -amount paid out) is included, so the net of
    one automatic_payout_id sums to zero; Stripe's dashboard download lists only the
    transactions the payout settles. balance_transaction_id = line_id, source_id =
    psp_reference, payment_metadata[merchant_reference] = payment_id,
    payment_metadata[merchant_id] = merchant_id.

checkoutcom: Financial Actions by Payout ID, one file per payout,
    `financial-actions_<entity>_<payout YYYYMMDD>_<payout_id>_1.csv` (Checkout.com's name).
    Columns: CHECKOUT_COLUMNS. One row per breakdown of a financial action, signed, as in
    the real report: a line gives a gross row (Action Type / Breakdown Type
    Capture/Capture, Refund/Refund, Chargeback/Chargeback (ADJM), Chargeback/Chargeback
    (CBRV), Payout/Payout) with Processing Currency Amount = gross_minor in the
    processing (gross) currency and Holding Currency Amount = net + fee in the holding
    (net) currency, plus an "Acquirer Fee" row of -fee in the holding currency when the
    fee is not zero. A stand-alone fee line is one Adjustment/Acquirer Fee row. Action
    ID = line_id, Payment ID = psp_reference, Reference = payment_id, Sub Entity ID =
    merchant_id, Requested On = created_at (milliseconds), Processed On = available_on.

In every file the rows follow created_at, with the payout row last. A batch's payout day
is the available_on of its payout line (the last available_on of a batch still open).
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from clearline.currency import minor_to_decimal

Row = dict[str, Any]

ADYEN_COMPANY_ACCOUNT = "ClearlineCOM"
CHECKOUT_ENTITY_ID = "ent_clearline"
CHECKOUT_ENTITY_NAME = "Clearline Payments Ltd"

FEE_PARTS = ("commission_minor", "markup_minor", "scheme_fee_minor", "interchange_minor")

# The default column sets, in the order each processor's default export writes them.
ADYEN_COLUMNS = (
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
STRIPE_COLUMNS = (
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
CHECKOUT_COLUMNS = (
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
_ADYEN_TYPE = {
    "charge": "Settled",
    "refund": "Refunded",
    "chargeback": "Chargeback",
    "chargeback_reversal": "ChargebackReversed",
    "fee": "Fee",
    "payout": "MerchantPayout",
}
_STRIPE_CATEGORY = {
    "charge": "charge",
    "refund": "refund",
    "chargeback": "dispute",
    "chargeback_reversal": "dispute_reversal",
    "fee": "fee",
    "payout": "payout",
}
_STRIPE_DESCRIPTION = {
    "charge": "Payment {ref}",
    "refund": "REFUND FOR CHARGE (Payment {ref})",
    "chargeback": "Chargeback withdrawal for {ref}",
    "chargeback_reversal": "Chargeback reversal for {ref}",
    "fee": "Stripe fee for {ref}",
    "payout": "STRIPE PAYOUT",
}
_CHECKOUT_ACTION = {
    "charge": ("Capture", "Capture"),
    "refund": ("Refund", "Refund"),
    "chargeback": ("Chargeback", "Chargeback (ADJM)"),
    "chargeback_reversal": ("Chargeback", "Chargeback (CBRV)"),
    "payout": ("Payout", "Payout"),
    "fee": ("Adjustment", None),
}
_CHECKOUT_FEE_BREAKDOWN = "Acquirer Fee"
_PAYMENT_TYPES = {"charge", "refund", "chargeback", "chargeback_reversal"}


def write_settlement_reports(lines: pl.DataFrame, out_dir: Path) -> list[Path]:
    """Write every processor's settlement files under `out_dir/<processor>/` and list them.

    `lines` has one row per line a processor reports: processor, line_id, batch_id
    (payout id), record_type, payment_id, psp_reference, merchant_id, created_at,
    available_on, gross_minor/gross_currency, fee_minor, net_minor/net_currency, fx_rate,
    payment_method and the Adyen fee split, either as the i64 columns in FEE_PARTS or as
    a `fee_breakdown` struct of them (missing parts count as zero).
    """
    lines = _prepared(lines)
    unknown = set(lines["processor"].unique().to_list()) - set(_WRITERS)
    if unknown:
        raise ValueError(f"no settlement layout for processor(s): {sorted(unknown)}")
    paths: list[Path] = []
    for processor, write in _WRITERS.items():
        own = lines.filter(pl.col("processor") == processor)
        if own.height:
            paths.extend(write(own, out_dir / processor))
    return paths


def _prepared(lines: pl.DataFrame) -> pl.DataFrame:
    """Fee split as plain columns, each line's payout day, rows in report order.

    The payout day is the available_on of the batch's payout line; a batch still open
    when the world ends has none, so it takes the last available_on of its lines.
    """
    if "fee_breakdown" in lines.columns:
        lines = lines.unnest("fee_breakdown")
    lines = lines.with_columns(pl.lit(0, pl.Int64).alias(part) for part in FEE_PARTS if part not in lines.columns)
    batch = ["processor", "batch_id"]
    last_day = pl.col("available_on").max().over(batch)
    payout_day = pl.col("available_on").filter(pl.col("record_type") == "payout").max().over(batch)
    return lines.with_columns(
        pl.col(list(FEE_PARTS)).fill_null(0), payout_day.fill_null(last_day).alias("payout_day")
    ).sort(pl.col("record_type") == "payout", "created_at", "line_id", maintain_order=True)


def _write_files(
    lines: pl.DataFrame,
    key: str,
    path_of: Callable[[Row], Path],
    columns: tuple[str, ...],
    rows_of: Callable[[Row], Iterable[list[str]]],
) -> list[Path]:
    """One CSV per distinct `key`, named by `path_of(first line)`, rows from `rows_of`."""
    paths = []
    for _, group in lines.group_by(key, maintain_order=True):
        records = list(group.iter_rows(named=True))
        path = path_of(records[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(row for record in records for row in rows_of(record))
        paths.append(path)
    return paths


def _write_adyen(lines: pl.DataFrame, folder: Path) -> list[Path]:
    return _write_files(
        lines,
        "batch_id",
        lambda r: folder / f"settlement_detail_report_batch_{r['batch_id']}.csv",
        ADYEN_COLUMNS,
        lambda r: [_adyen_row(r)],
    )


def _write_stripe(lines: pl.DataFrame, folder: Path) -> list[Path]:
    return _write_files(
        lines.sort("payout_day", "batch_id", maintain_order=True),
        "payout_day",
        lambda r: folder / f"payout_reconciliation_{r['payout_day'].isoformat()}.csv",
        STRIPE_COLUMNS,
        lambda r: [_stripe_row(r)],
    )


def _write_checkout(lines: pl.DataFrame, folder: Path) -> list[Path]:
    return _write_files(
        lines,
        "batch_id",
        lambda r: folder / (f"financial-actions_{CHECKOUT_ENTITY_ID}_{r['payout_day']:%Y%m%d}_{r['batch_id']}_1.csv"),
        CHECKOUT_COLUMNS,
        _checkout_rows,
    )


_WRITERS: dict[str, Callable[[pl.DataFrame, Path], list[Path]]] = {
    "adyen": _write_adyen,
    "stripe": _write_stripe,
    "checkoutcom": _write_checkout,
}


def _adyen_row(r: Row) -> list[str]:
    gross_ccy, net_ccy = r["gross_currency"], r["net_currency"]
    has_gross = r["record_type"] in _PAYMENT_TYPES
    gross_debit, gross_credit = _debit_credit(r["gross_minor"], gross_ccy) if has_gross else ("", "")
    net_debit, net_credit = _debit_credit(r["net_minor"], net_ccy)
    method, variant = _adyen_method(r)
    fees = [minor_to_decimal(r[part], net_ccy) if r[part] else "" for part in FEE_PARTS]
    return [
        ADYEN_COMPANY_ACCOUNT,
        r["merchant_id"],
        r["psp_reference"],
        r["payment_id"] or "",
        method,
        _seconds(r["created_at"]),
        "UTC",
        _ADYEN_TYPE[r["record_type"]],
        r["line_id"],
        gross_ccy,
        gross_debit,
        gross_credit,
        (r["fx_rate"] or "1") if has_gross else "",
        net_ccy,
        net_debit,
        net_credit,
        *fees,
        variant,
        r["batch_id"],
        r["available_on"].isoformat(),
    ]


def _stripe_row(r: Row) -> list[str]:
    net_ccy = r["net_currency"]
    customer_facing = r["record_type"] in _PAYMENT_TYPES
    return [
        r["batch_id"],
        f"{r['payout_day'].isoformat()} 00:00:00",
        r["line_id"],
        _seconds(r["created_at"]),
        f"{r['available_on'].isoformat()} 00:00:00",
        net_ccy.lower(),
        minor_to_decimal(r["net_minor"] + r["fee_minor"], net_ccy),
        minor_to_decimal(r["fee_minor"], net_ccy),
        minor_to_decimal(r["net_minor"], net_ccy),
        _STRIPE_CATEGORY[r["record_type"]],
        r["psp_reference"],
        _STRIPE_DESCRIPTION[r["record_type"]].format(ref=r["payment_id"] or r["psp_reference"]),
        minor_to_decimal(r["gross_minor"], r["gross_currency"]) if customer_facing else "",
        r["gross_currency"].lower() if customer_facing else "",
        {"card": "card", "ach": "us_bank_account"}.get(r["payment_method"], "") if customer_facing else "",
        r["payment_id"] or "",
        r["merchant_id"],
    ]


def _checkout_rows(r: Row) -> list[list[str]]:
    """A gross row (none for a stand-alone fee) and an Acquirer Fee row when there is a fee."""
    net_ccy, gross_ccy = r["net_currency"], r["gross_currency"]
    common = [CHECKOUT_ENTITY_ID, CHECKOUT_ENTITY_NAME, r["merchant_id"], r["batch_id"], r["psp_reference"]]
    timing = [r["payment_id"] or "", _milliseconds(r["created_at"]), f"{r['available_on'].isoformat()}T00:00:00.000"]
    method = _checkout_method(r)
    action, breakdown = _CHECKOUT_ACTION[r["record_type"]]
    rows = []
    if breakdown:
        rows.append(
            [
                *common,
                action,
                r["line_id"],
                *timing,
                gross_ccy,
                net_ccy,
                breakdown,
                r["fx_rate"] or "1",
                minor_to_decimal(r["gross_minor"], gross_ccy),
                minor_to_decimal(r["net_minor"] + r["fee_minor"], net_ccy),
                method,
            ]
        )
    if r["fee_minor"] or not breakdown:
        rows.append(
            [
                *common,
                action,
                r["line_id"],
                *timing,
                gross_ccy,
                net_ccy,
                _CHECKOUT_FEE_BREAKDOWN,
                "",
                "",
                minor_to_decimal(-r["fee_minor"], net_ccy),
                method,
            ]
        )
    return rows


def _debit_credit(minor: int, currency: str) -> tuple[str, str]:
    """Adyen's unsigned (debit, credit) pair: a negative amount is a debit, the rest credit."""
    if minor < 0:
        return minor_to_decimal(-minor, currency), ""
    return "", minor_to_decimal(minor, currency)


def _card_brand(r: Row) -> int:
    """0 for Visa, 1 for Mastercard: the table says only "card", reports name the scheme.

    Derived from the payment id so a payment keeps its brand on its refunds and disputes.
    """
    return zlib.crc32((r["payment_id"] or r["psp_reference"]).encode()) % 2


def _adyen_method(r: Row) -> tuple[str, str]:
    """(Payment Method, Payment Method Variant) as Adyen names them."""
    if r["record_type"] not in _PAYMENT_TYPES:
        return "", ""
    if r["payment_method"] == "ach":
        return "ach", "ach"
    return (("visa", "visacredit"), ("mc", "mccredit"))[_card_brand(r)]


def _checkout_method(r: Row) -> str:
    if r["record_type"] not in _PAYMENT_TYPES:
        return ""
    if r["payment_method"] == "ach":
        return "ACH"
    return ("VISA", "MASTERCARD")[_card_brand(r)]


def _seconds(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _milliseconds(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}"
