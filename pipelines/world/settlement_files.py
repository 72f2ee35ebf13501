"""Processor settlement reports, written in each processor's own CSV layout.

The world generator produces one normalised table of settlement lines (see
`write_settlement_reports`); reconciliation must instead cope with what processors
really send. This module turns the table into those files, so the intake has to detect
three layouts, unsigned debit/credit pairs, signed decimals, lower-case currencies,
per-breakdown rows and FX columns, exactly as in production, and the variants real
reports come in: each file is written in one of its layout's column sets (subsets,
Adyen's Reserved columns, a merchant's own column, optional columns present or not,
spelling variants, another column order), chosen by its name (`_variant`), so a world
exercises them all and stays the same bytes for the same seed. Every batch ends with its
payout row, and Adyen carries a negative day's balance to the batch that pays it with a
Balancetransfer row in each report.

Money inside is integer minor units; every decimal in a file is formatted from those
integers by `clearline.currency.minor_to_decimal` (the currency's ISO 4217 decimals, no
floats), so `decimal_to_minor` on a file gives the same integers back.

Layouts (under `<out_dir>/<processor>/`, out_dir being the world's `settlements/`)
------------------------------------------------------------------------------

adyen: Settlement Details Report, one file per batch, `settlement_detail_report_batch_<batch_id>.csv`
    (Adyen's own file name). Columns: ADYEN_COLUMNS; Adyen's default export ADYEN_EXPORT
    (Booking Date left out where every line's day is the payout's); ADYEN_EXPORT with
    Booking Date, times in Europe/Amsterdam; or ADYEN_COLUMNS and a "Store" column in a
    merchant's order, times with the abbreviation (CET/CEST) in force. One row per line.
    Type: charge Settled, refund Refunded, chargeback Chargeback, chargeback_reversal
    ChargebackReversed, fee Fee, balance_transfer Balancetransfer, payout MerchantPayout.
    A line whose day ended negative (`reported_in`) is listed in that day's batch, which
    ends with a Balancetransfer credit "to batch" the paying one (so it pays nothing and
    has no MerchantPayout), and the paying batch has the matching debit "from batch"
    (Modification Merchant Reference says which). Gross Debit/Credit (GC) are the
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
    Columns: STRIPE_COLUMNS, or STRIPE_VARIANT (local-time `created`, `available_on`,
    the payout's `_utc` time, upper-case currencies, payment intent, charge and card
    brand) in an order of its own. Amounts are signed decimals in the balance (net) currency:
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
    Columns: CHECKOUT_COLUMNS or CHECKOUT_VARIANT in an order of its own. One row per
    breakdown of a financial action, signed, as in the real report: a line gives a gross
    row (Action Type / Breakdown Type Capture/Capture, Refund/Refund, Chargeback/Chargeback
    (ADJM), Chargeback/Chargeback (CBRV), Payout/Payout) with Processing Currency Amount =
    gross_minor in the processing (gross) currency and Holding Currency Amount = net + fee
    in the holding (net) currency, plus an "Acquirer Fee" row of -fee in the holding
    currency when the fee is not zero. A stand-alone fee line is one Adjustment/Acquirer Fee row. Action
    ID = line_id, Payment ID = psp_reference, Reference = payment_id, Sub Entity ID =
    merchant_id, Requested On = created_at (milliseconds), Processed On = available_on.

In every file the rows follow created_at, with the payout row last. A batch's payout day
is the available_on of its payout line (the last available_on of a batch still open).
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
ADYEN_FEE_COLUMNS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
# What Adyen's Customer Area exports by default today (REFERENCE.md): no Booking Date,
# Modification Merchant Reference, and seven Reserved columns after the batch number.
ADYEN_EXPORT = (
    *ADYEN_COLUMNS[:20],
    "Payment Method Variant",
    "Modification Merchant Reference",
    "Batch Number",
    *(f"Reserved{n}" for n in range(4, 11)),
)
# Columns a user picks: local-time columns beside the payout's `_utc` time, and more ids.
STRIPE_VARIANT = (
    STRIPE_COLUMNS[0],
    "automatic_payout_effective_at_utc",
    STRIPE_COLUMNS[2],
    "created",
    "available_on",
    *STRIPE_COLUMNS[5:11],
    *STRIPE_COLUMNS[12:14],
    "payment_intent_id",
    "charge_id",
    "card_brand",
    *STRIPE_COLUMNS[15:],
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
# Fewer of the optional columns (no client name, payment id or method) and two more.
CHECKOUT_VARIANT = (
    "Client Entity ID",
    "Sub Entity ID",
    "Sub Entity Name",
    "Currency Account ID",
    *(c for c in CHECKOUT_COLUMNS[3:-1] if c != "Payment ID"),
)

_ADYEN_TYPE = {
    "charge": "Settled",
    "refund": "Refunded",
    "chargeback": "Chargeback",
    "chargeback_reversal": "ChargebackReversed",
    "fee": "Fee",
    "balance_transfer": "Balancetransfer",
    "payout": "MerchantPayout",
    "unclassified": "ReserveHold",  # the world's "new" record types, which intake does not know
}
_STRIPE_CATEGORY = {
    "charge": "charge",
    "refund": "refund",
    "chargeback": "dispute",
    "chargeback_reversal": "dispute_reversal",
    "fee": "fee",
    "payout": "payout",
    "unclassified": "anticipation_repayment",
}
_STRIPE_DESCRIPTION = {
    "charge": "Payment {ref}",
    "refund": "REFUND FOR CHARGE (Payment {ref})",
    "chargeback": "Chargeback withdrawal for {ref}",
    "chargeback_reversal": "Chargeback reversal for {ref}",
    "fee": "Stripe fee for {ref}",
    "payout": "STRIPE PAYOUT",
    "unclassified": "Repayment {ref}",
}
_CHECKOUT_ACTION = {
    "charge": ("Capture", "Capture"),
    "refund": ("Refund", "Refund"),
    "chargeback": ("Chargeback", "Chargeback (ADJM)"),
    "chargeback_reversal": ("Chargeback", "Chargeback (CBRV)"),
    "payout": ("Payout", "Payout"),
    "fee": ("Adjustment", None),
    "unclassified": ("Rolling Reserve Hold", "Rolling Reserve Hold"),
}
_CHECKOUT_FEE_BREAKDOWN = "Acquirer Fee"
_PAYMENT_TYPES = {"charge", "refund", "chargeback", "chargeback_reversal"}


def write_settlement_reports(lines: pl.DataFrame, out_dir: Path) -> list[Path]:
    """Write every processor's settlement files under `out_dir/<processor>/` and list them.

    `lines` has one row per line a processor reports: processor, line_id, batch_id
    (payout id), record_type, payment_id, psp_reference, merchant_id, created_at,
    available_on, gross_minor/gross_currency, fee_minor, net_minor/net_currency, fx_rate,
    payment_method and the Adyen fee split, either as the i64 columns in FEE_PARTS or as
    a `fee_breakdown` struct of them (missing parts count as zero); optionally
    `reported_in` (see `clearline.pipelines.world.settlement.processor_payouts`). A batch
    without a payout line gets one that pays out its net.
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
    """Fee split as plain columns, Adyen's balance transfers and every batch's payout line,
    each line's payout day, rows in report order.

    The payout day is the available_on of the batch's payout line; a batch still open
    when the world ends has none, so it takes the last available_on of its lines.
    """
    if "fee_breakdown" in lines.columns:
        lines = lines.unnest("fee_breakdown")
    lines = lines.with_columns(pl.lit(0, pl.Int64).alias(part) for part in FEE_PARTS if part not in lines.columns)
    if "reported_in" not in lines.columns:
        lines = lines.with_columns(reported_in=pl.lit(None, pl.String))
    lines = _with_payouts(_with_balance_transfers(lines.with_columns(pl.col(list(FEE_PARTS)).fill_null(0))))
    batch = ["processor", "batch_id"]
    last_day = pl.col("available_on").max().over(batch)
    payout_day = pl.col("available_on").filter(pl.col("record_type") == "payout").max().over(batch)
    return lines.with_columns(payout_day.fill_null(last_day).alias("payout_day")).sort(
        pl.col("record_type") == "payout", "created_at", "line_id", maintain_order=True
    )


def _extra_rows(template: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` (processor, batch_id, line_id, record_type, net_minor, net_currency,
    available_on, created_at, payment_id) as lines of `template`'s columns: no gross of
    their own (gross = net in the net currency), no fee, no payment method."""
    filled = rows.with_columns(
        gross_minor=pl.col("net_minor"),
        gross_currency=pl.col("net_currency"),
        fee_minor=pl.lit(0, pl.Int64),
        **{part: pl.lit(0, pl.Int64) for part in FEE_PARTS},
    )
    missing = [c for c in template.columns if c not in filled.columns]
    return filled.with_columns(pl.lit(None, template.schema[c]).alias(c) for c in missing).select(template.columns)


def _with_balance_transfers(lines: pl.DataFrame) -> pl.DataFrame:
    """Adyen reports a line whose day ended negative in that day's batch (`reported_in`)
    and carries the batch's balance to the batch that pays it: a Balancetransfer row in
    each report ("to batch" credits the first to zero, "from batch" debits the second)."""
    carried = lines.filter((pl.col("processor") == "adyen") & pl.col("reported_in").is_not_null())
    if carried.is_empty():
        return lines.drop("reported_in")
    moved = carried.group_by("processor", "reported_in", "batch_id", "net_currency").agg(
        total=pl.col("net_minor").sum(), day=pl.col("available_on").max()
    )
    paid_day = lines.group_by("processor", "batch_id").agg(paid=pl.col("available_on").max())
    moved = moved.join(paid_day, on=["processor", "batch_id"])
    at = lambda day: pl.col(day).cast(pl.Datetime("us")).dt.replace_time_zone("UTC") + pl.duration(hours=22)  # noqa: E731
    out_rows = moved.select(
        "processor",
        "net_currency",
        batch_id="reported_in",
        line_id=pl.format("BT-{}-OUT", "reported_in"),
        payment_id=pl.format("Balancetransfer to batch {}", "batch_id"),
        record_type=pl.lit("balance_transfer"),
        net_minor=-pl.col("total"),
        available_on="day",
        created_at=at("day"),
    )
    in_rows = moved.select(
        "processor",
        "net_currency",
        "batch_id",
        line_id=pl.format("BT-{}-IN", "reported_in"),
        payment_id=pl.format("Balancetransfer from batch {}", "reported_in"),
        record_type=pl.lit("balance_transfer"),
        net_minor="total",
        available_on="paid",
        created_at=at("paid") - pl.duration(hours=16),
    )
    lines = lines.with_columns(
        batch_id=pl.when(pl.col("processor") == "adyen")
        .then(pl.coalesce("reported_in", "batch_id"))
        .otherwise("batch_id")
    ).drop("reported_in")
    return pl.concat([lines, _extra_rows(lines, out_rows), _extra_rows(lines, in_rows)])


def _with_payouts(lines: pl.DataFrame) -> pl.DataFrame:
    """A payout line for every batch that has none and pays something: it pays out the
    batch's net (every line, balance transfers included), on the batch's last day."""
    batch = ["processor", "batch_id"]
    have = lines.filter(pl.col("record_type") == "payout").select(batch).unique()
    unpaid = lines.join(have, on=batch, how="anti")
    if unpaid.is_empty():
        return lines
    due = (
        unpaid.group_by(*batch, "net_currency")
        .agg(total=pl.col("net_minor").sum(), day=pl.col("available_on").max())
        .filter(pl.col("total") != 0)
    )
    rows = due.select(
        *batch,
        "net_currency",
        line_id=pl.format("payout_{}", "batch_id"),
        payment_id=pl.lit(None, pl.String),
        record_type=pl.lit("payout"),
        net_minor=-pl.col("total"),
        available_on="day",
        created_at=pl.col("day").cast(pl.Datetime("us")).dt.replace_time_zone("UTC") + pl.duration(hours=7),
    )
    return pl.concat([lines, _extra_rows(lines, rows)])


def _variant(key: str, count: int) -> int:
    """Which of `count` variants a file is written in: fixed by its name, so a world is
    the same bytes every time, and spread over the files of a world."""
    return zlib.crc32(key.encode()) % count


def _write_files(
    lines: pl.DataFrame,
    key: str,
    path_of: Callable[[Row], Path],
    columns_of: Callable[[Row, list[Row]], tuple[str, ...]],
    rows_of: Callable[[Row], Iterable[dict[str, str]]],
) -> list[Path]:
    """One CSV per distinct `key`, named by `path_of(first line)`, with the columns
    `columns_of(first line, all lines)` picks, rows from `rows_of`."""
    paths = []
    for _, group in lines.group_by(key, maintain_order=True):
        records = list(group.iter_rows(named=True))
        path = path_of(records[0])
        columns = columns_of(records[0], records)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([row.get(c, "") for c in columns] for record in records for row in rows_of(record))
        paths.append(path)
    return paths


def _shuffled(columns: tuple[str, ...], key: str) -> tuple[str, ...]:
    """The columns in an order of their own (merchants reorder report columns)."""
    return tuple(sorted(columns, key=lambda c: zlib.crc32(f"{key}|{c}".encode())))


def _adyen_columns(first: Row, records: list[Row]) -> tuple[str, ...]:
    """Classic columns with Booking Date; Adyen's default export (Modification Merchant
    Reference, Reserved4-10) with or without Booking Date (without it, a line's value day
    is its batch's payout day, so it is left out only where that is every line's day); or
    the classic ones in a merchant's own order with a column of the merchant's."""
    key = first["batch_id"]
    paid = {r["created_at"].date() for r in records if r["record_type"] == "payout"}
    variant = _variant(key, 4)
    if variant == 1:
        same_day = len(paid) == 1 and {r["available_on"] for r in records if r["record_type"] != "payout"} == paid
        return ADYEN_EXPORT if same_day else (*ADYEN_EXPORT, "Booking Date")
    if variant == 2:
        return (*ADYEN_EXPORT[:7], "Booking Date", *ADYEN_EXPORT[7:])
    if variant == 3:
        return _shuffled((*ADYEN_COLUMNS, "Store"), key)
    return ADYEN_COLUMNS


def _write_adyen(lines: pl.DataFrame, folder: Path) -> list[Path]:
    return _write_files(
        lines,
        "batch_id",
        lambda r: folder / f"settlement_detail_report_batch_{r['batch_id']}.csv",
        _adyen_columns,
        lambda r: [_adyen_row(r, _variant(r["batch_id"], 4))],
    )


def _stripe_columns(first: Row, records: list[Row]) -> tuple[str, ...]:
    """Classic columns, or local-time columns with the payout's `_utc` time, upper-case
    currencies and the payment intent, charge and card brand, in an order of their own."""
    key = first["payout_day"].isoformat()
    if _variant(key, 2):
        return _shuffled(STRIPE_VARIANT, key)
    return STRIPE_COLUMNS


def _write_stripe(lines: pl.DataFrame, folder: Path) -> list[Path]:
    return _write_files(
        lines.sort("payout_day", "batch_id", maintain_order=True),
        "payout_day",
        lambda r: folder / f"payout_reconciliation_{r['payout_day'].isoformat()}.csv",
        _stripe_columns,
        lambda r: [_stripe_row(r, upper=bool(_variant(r["payout_day"].isoformat(), 2)))],
    )


def _checkout_columns(first: Row, records: list[Row]) -> tuple[str, ...]:
    """Classic columns, or fewer of the optional ones and two more, in another order."""
    key = first["batch_id"]
    return _shuffled(CHECKOUT_VARIANT, key) if _variant(key, 2) else CHECKOUT_COLUMNS


def _write_checkout(lines: pl.DataFrame, folder: Path) -> list[Path]:
    return _write_files(
        lines,
        "batch_id",
        lambda r: folder / (f"financial-actions_{CHECKOUT_ENTITY_ID}_{r['payout_day']:%Y%m%d}_{r['batch_id']}_1.csv"),
        _checkout_columns,
        _checkout_rows,
    )


_WRITERS: dict[str, Callable[[pl.DataFrame, Path], list[Path]]] = {
    "adyen": _write_adyen,
    "stripe": _write_stripe,
    "checkoutcom": _write_checkout,
}
_AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def _adyen_row(r: Row, variant: int) -> dict[str, str]:
    """Every column an Adyen file of the world may have. Variant 2 writes Creation Date in
    Europe/Amsterdam naming the zone, variant 3 with the abbreviation (CET or CEST) the
    offset in force has; the others in UTC."""
    gross_ccy, net_ccy = r["gross_currency"], r["net_currency"]
    has_gross = r["record_type"] in _PAYMENT_TYPES
    gross_debit, gross_credit = _debit_credit(r["gross_minor"], gross_ccy) if has_gross else ("", "")
    net_debit, net_credit = _debit_credit(r["net_minor"], net_ccy)
    method, variant_name = _adyen_method(r)
    created, zone = r["created_at"], "UTC"
    if variant in (2, 3):
        created = created.astimezone(_AMSTERDAM)
        zone = "Europe/Amsterdam" if variant == 2 else ("CEST" if created.utcoffset() == timedelta(hours=2) else "CET")
    transfer = r["record_type"] == "balance_transfer"
    return {
        "Company Account": ADYEN_COMPANY_ACCOUNT,
        "Merchant Account": r["merchant_id"] or "",
        "Psp Reference": r["psp_reference"] or "",
        "Merchant Reference": "" if transfer else r["payment_id"] or "",
        "Payment Method": method,
        "Creation Date": _seconds(created),
        "TimeZone": zone,
        "Type": _ADYEN_TYPE[r["record_type"]],
        "Modification Reference": r["line_id"],
        "Gross Currency": gross_ccy,
        "Gross Debit (GC)": gross_debit,
        "Gross Credit (GC)": gross_credit,
        "Exchange Rate": (r["fx_rate"] or "1") if has_gross else "",
        "Net Currency": net_ccy,
        "Net Debit (NC)": net_debit,
        "Net Credit (NC)": net_credit,
        **{c: minor_to_decimal(r[p], net_ccy) if r[p] else "" for c, p in zip(ADYEN_FEE_COLUMNS, FEE_PARTS)},
        "Payment Method Variant": variant_name,
        "Modification Merchant Reference": r["payment_id"] if transfer else "",
        "Batch Number": r["batch_id"],
        "Booking Date": r["available_on"].isoformat(),
        "Store": "web" if has_gross else "",
    }


def _stripe_row(r: Row, upper: bool) -> dict[str, str]:
    """Every column a Stripe file of the world may have (times in UTC: the report run's
    zone is UTC, so the local columns say the same as the `_utc` ones)."""
    net_ccy = r["net_currency"]
    customer_facing = r["record_type"] in _PAYMENT_TYPES
    case = str.upper if upper else str.lower
    payout_at = f"{r['payout_day'].isoformat()} 00:00:00"
    available = f"{r['available_on'].isoformat()} 00:00:00"
    return {
        "automatic_payout_id": r["batch_id"],
        "automatic_payout_effective_at": payout_at,
        "automatic_payout_effective_at_utc": payout_at,
        "balance_transaction_id": r["line_id"],
        "created_utc": _seconds(r["created_at"]),
        "created": _seconds(r["created_at"]),
        "available_on_utc": available,
        "available_on": available,
        "currency": case(net_ccy),
        "gross": minor_to_decimal(r["net_minor"] + r["fee_minor"], net_ccy),
        "fee": minor_to_decimal(r["fee_minor"], net_ccy),
        "net": minor_to_decimal(r["net_minor"], net_ccy),
        "reporting_category": _STRIPE_CATEGORY[r["record_type"]],
        "source_id": r["psp_reference"] or r["batch_id"],
        "description": _STRIPE_DESCRIPTION[r["record_type"]].format(ref=r["payment_id"] or r["psp_reference"]),
        "customer_facing_amount": minor_to_decimal(r["gross_minor"], r["gross_currency"]) if customer_facing else "",
        "customer_facing_currency": case(r["gross_currency"]) if customer_facing else "",
        "payment_method_type": {"card": "card", "ach": "us_bank_account"}.get(r["payment_method"], "")
        if customer_facing
        else "",
        "payment_intent_id": f"pi_{r['psp_reference']}" if customer_facing else "",
        "charge_id": f"ch_{r['psp_reference']}" if customer_facing else "",
        "card_brand": ("visa", "mastercard")[_card_brand(r)]
        if customer_facing and r["payment_method"] == "card"
        else "",
        "payment_metadata[merchant_reference]": r["payment_id"] or "",
        "payment_metadata[merchant_id]": r["merchant_id"] or "",
    }


def _checkout_rows(r: Row) -> list[dict[str, str]]:
    """A gross row (none for a stand-alone fee) and an Acquirer Fee row when there is a fee."""
    net_ccy, gross_ccy = r["net_currency"], r["gross_currency"]
    action, breakdown = _CHECKOUT_ACTION[r["record_type"]]
    common = {
        "Client Entity ID": CHECKOUT_ENTITY_ID,
        "Client Entity Name": CHECKOUT_ENTITY_NAME,
        "Sub Entity ID": r["merchant_id"] or "",
        "Sub Entity Name": f"Merchant {r['merchant_id']}" if r["merchant_id"] else "",
        "Currency Account ID": f"ca_{net_ccy.lower()}",
        "Payout ID": r["batch_id"],
        "Payment ID": r["psp_reference"] or "",
        "Action Type": action,
        "Action ID": r["line_id"],
        "Reference": r["payment_id"] or "",
        "Requested On": _milliseconds(r["created_at"]),
        "Processed On": f"{r['available_on'].isoformat()}T00:00:00.000",
        "Processing Currency": gross_ccy,
        "Holding Currency": net_ccy,
        "Payment Method": _checkout_method(r),
    }
    rows = []
    if breakdown:
        rows.append(
            {
                **common,
                "Breakdown Type": breakdown,
                "FX Rate Applied": r["fx_rate"] or "1",
                "Processing Currency Amount": minor_to_decimal(r["gross_minor"], gross_ccy),
                "Holding Currency Amount": minor_to_decimal(r["net_minor"] + r["fee_minor"], net_ccy),
            }
        )
    if r["fee_minor"] or not breakdown:
        rows.append(
            {
                **common,
                "Breakdown Type": _CHECKOUT_FEE_BREAKDOWN,
                "Holding Currency Amount": minor_to_decimal(-r["fee_minor"], net_ccy),
            }
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
