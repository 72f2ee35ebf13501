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
integers as `clearline.currency.minor_to_decimal` formats them (the currency's ISO 4217
decimals, no floats; `_decimal` does it for a whole column), so `decimal_to_minor` on a
file gives the same integers back. Every file is built column by column with Polars
expressions over all its lines at once, never a Python object per row.

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
import io
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from clearline.currency import EXPONENT

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
    moved = carried.group_by("processor", "reported_in", "batch_id", "net_currency", maintain_order=True).agg(
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
        unpaid.group_by(*batch, "net_currency", maintain_order=True)
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
    cells: pl.DataFrame,
    key: str,
    info: dict[str, pl.Expr],
    path_of: Callable[[Row], Path],
    columns_of: Callable[[Row], tuple[str, ...]],
) -> list[Path]:
    """One CSV per distinct `key`, files in the order their key first appears, rows in
    their order. `cells` holds every column a file may have as text (`_cell` names);
    `info` aggregates what `path_of` and `columns_of` need of a file's rows (the key and
    those aggregates, by name). Each file is joined from its slice of `cells` by Polars:
    no Python object per row."""
    cells = cells.with_row_index("_row").with_columns(_file=pl.col("_row").min().over(key)).sort("_file", "_row")
    files = cells.group_by("_file", maintain_order=True).agg(pl.col(key).first(), _rows=pl.len(), **info)
    paths, offset = [], 0
    for file in files.iter_rows(named=True):
        part = cells.slice(offset, file["_rows"])
        offset += file["_rows"]
        path, columns = path_of(file), columns_of(file)
        fields = [pl.col(_cell(c)) if _cell(c) in cells.columns else pl.lit("") for c in columns]  # unused: empty
        text = part.select(pl.concat_str(fields, separator=",")).to_series().str.join("\n")
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header.getvalue() + text.item() + "\n", encoding="utf-8", newline="")
        paths.append(path)
    return paths


def _cell(column: str) -> str:
    """The name under which a file column's text is held (apart from the lines' own columns)."""
    return f"cell:{column}"


def _cells(lines: pl.DataFrame, columns: dict[str, pl.Expr]) -> pl.DataFrame:
    """`lines` with each file column's text beside them, as the csv module writes a field:
    None as empty, quoted (quotes doubled) when it holds a comma, quote or line break.
    Only the columns where some field needs it go through the quoting."""
    special = r'[,"\r\n]'
    cells = lines.with_columns(**{_cell(name): expr.fill_null("") for name, expr in columns.items()})
    needs = cells.select(pl.col(_cell(name)).str.contains(special).any() for name in columns).row(0, named=True)
    return cells.with_columns(
        pl.when(pl.col(name).str.contains(special))
        .then(pl.lit('"') + pl.col(name).str.replace_all('"', '""', literal=True) + pl.lit('"'))
        .otherwise(pl.col(name))
        .alias(name)
        for name, need in needs.items()
        if need
    )


def _shuffled(columns: tuple[str, ...], key: str) -> tuple[str, ...]:
    """The columns in an order of their own (merchants reorder report columns)."""
    return tuple(sorted(columns, key=lambda c: zlib.crc32(f"{key}|{c}".encode())))


def _by_key(lines: pl.DataFrame, key: pl.Expr, of: Callable[[Any], Any], dtype: pl.DataType) -> pl.Series:
    """`of(key)` for every row, computed once per distinct key (a file's variant, a
    payment's card brand); null where the key is null."""
    keys = lines.select(key).to_series()
    distinct = keys.drop_nulls().unique(maintain_order=True).to_list()
    if not distinct:
        return pl.Series(keys.name, [None] * keys.len(), dtype=dtype)
    return keys.replace_strict(distinct, [of(k) for k in distinct], return_dtype=dtype)


def _text(column: str) -> pl.Expr:
    """A column as the csv module writes it: None as empty."""
    return pl.col(column).fill_null("")


def _or(column: str, fallback: pl.Expr) -> pl.Expr:
    """Python's `row[column] or fallback`: the column's text unless it is null or empty."""
    given = pl.col(column)
    return pl.when(given.is_not_null() & (given != "")).then(given).otherwise(fallback)


def _decimal(minor: pl.Expr, currency: str) -> pl.Expr:
    """`minor_to_decimal` for every row: exact decimal text of integer minor units in the
    row's `currency` column (its ISO 4217 decimals), no floats; in 128 bits, so sums and
    negations of any i64 amount stay exact as Python's integers do."""
    exp = pl.col(currency).replace_strict(EXPONENT, return_dtype=pl.Int64)
    scale = pl.lit(10, pl.Int128).pow(exp)
    amount = minor.cast(pl.Int128)
    sign = pl.when(amount < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    units = sign + (amount.abs() // scale).cast(pl.String)
    fraction = (amount.abs() % scale).cast(pl.String).str.zfill(exp)
    return pl.when(exp == 0).then(units).otherwise(units + pl.lit(".") + fraction)


def _negated(minor: pl.Expr) -> pl.Expr:
    return pl.lit(0, pl.Int128) - minor.cast(pl.Int128)


def _plus(minor: pl.Expr, other: pl.Expr) -> pl.Expr:
    return minor.cast(pl.Int128) + other.cast(pl.Int128)


def _when(condition: pl.Expr, text: pl.Expr | str) -> pl.Expr:
    """`text` where `condition` holds, else empty."""
    return pl.when(condition).then(pl.lit(text) if isinstance(text, str) else text).otherwise(pl.lit(""))


def _mapped(column: str, mapping: dict[str, str | None]) -> pl.Expr:
    """A column through a mapping that must know every value (as a dict lookup would)."""
    return pl.col(column).replace_strict(mapping, return_dtype=pl.String)


_PAYMENT = pl.col("record_type").is_in(sorted(_PAYMENT_TYPES))


def _with_brands(lines: pl.DataFrame) -> pl.DataFrame:
    """`_visa`: whether a line's card is Visa (else Mastercard). The table says only
    "card", reports name the scheme: derived from the payment id (else the PSP reference),
    so a payment keeps its brand on its refunds and disputes."""
    brand = _by_key(
        lines, _or("payment_id", pl.col("psp_reference")), lambda k: zlib.crc32(k.encode()) % 2 == 0, pl.Boolean
    )
    return lines.with_columns(_visa=brand)


def _seconds(moment: pl.Expr) -> pl.Expr:
    return moment.dt.strftime("%Y-%m-%d %H:%M:%S")


def _day(column: str) -> pl.Expr:
    return pl.col(column).dt.strftime("%Y-%m-%d")


def _adyen_columns(file: Row) -> tuple[str, ...]:
    """Classic columns with Booking Date; Adyen's default export (Modification Merchant
    Reference, Reserved4-10) with or without Booking Date (without it, a line's value day
    is its batch's payout day, so it is left out only where that is every line's day); or
    the classic ones in a merchant's own order with a column of the merchant's."""
    key = file["batch_id"]
    variant = _variant(key, 4)
    if variant == 1:
        paid = set(file["paid_days"])
        same_day = len(paid) == 1 and set(file["line_days"]) == paid
        return ADYEN_EXPORT if same_day else (*ADYEN_EXPORT, "Booking Date")
    if variant == 2:
        return (*ADYEN_EXPORT[:7], "Booking Date", *ADYEN_EXPORT[7:])
    if variant == 3:
        return _shuffled((*ADYEN_COLUMNS, "Store"), key)
    return ADYEN_COLUMNS


def _write_adyen(lines: pl.DataFrame, folder: Path) -> list[Path]:
    """Every column an Adyen file of the world may have. Variant 2 writes Creation Date in
    Europe/Amsterdam naming the zone, variant 3 with the abbreviation (CET or CEST) the
    offset in force has; the others in UTC."""
    lines = _with_brands(lines).with_columns(
        _local=_by_key(lines, pl.col("batch_id"), lambda k: _variant(k, 4) in (2, 3), pl.Boolean),
        _abbreviation=_by_key(lines, pl.col("batch_id"), lambda k: _variant(k, 4) == 3, pl.Boolean),
    )
    local = pl.col("created_at").dt.convert_time_zone("Europe/Amsterdam")
    summer = (local.dt.base_utc_offset() + local.dt.dst_offset()) == pl.duration(hours=2)
    gross, net = pl.col("gross_minor"), pl.col("net_minor")
    transfer = pl.col("record_type") == "balance_transfer"
    ach = pl.col("payment_method") == "ach"
    method = lambda a, visa, mc: _when(
        _PAYMENT, pl.when(ach).then(pl.lit(a)).when("_visa").then(pl.lit(visa)).otherwise(pl.lit(mc))
    )  # noqa: E731
    columns = {
        "Company Account": pl.lit(ADYEN_COMPANY_ACCOUNT),
        "Merchant Account": _text("merchant_id"),
        "Psp Reference": _text("psp_reference"),
        "Merchant Reference": _when(~transfer, _text("payment_id")),
        "Payment Method": method("ach", "visa", "mc"),
        "Creation Date": pl.when("_local").then(_seconds(local)).otherwise(_seconds(pl.col("created_at"))),
        "TimeZone": pl.when("_abbreviation")
        .then(pl.when(summer).then(pl.lit("CEST")).otherwise(pl.lit("CET")))
        .when("_local")
        .then(pl.lit("Europe/Amsterdam"))
        .otherwise(pl.lit("UTC")),
        "Type": _mapped("record_type", _ADYEN_TYPE),
        "Modification Reference": pl.col("line_id"),
        "Gross Currency": pl.col("gross_currency"),
        "Gross Debit (GC)": _when(_PAYMENT & (gross < 0), _decimal(_negated(gross), "gross_currency")),
        "Gross Credit (GC)": _when(_PAYMENT & (gross >= 0), _decimal(gross, "gross_currency")),
        "Exchange Rate": _when(_PAYMENT, _or("fx_rate", pl.lit("1"))),
        "Net Currency": pl.col("net_currency"),
        "Net Debit (NC)": _when(net < 0, _decimal(_negated(net), "net_currency")),
        "Net Credit (NC)": _when(net >= 0, _decimal(net, "net_currency")),
        **{c: _when(pl.col(p) != 0, _decimal(pl.col(p), "net_currency")) for c, p in zip(ADYEN_FEE_COLUMNS, FEE_PARTS)},
        "Payment Method Variant": method("ach", "visacredit", "mccredit"),
        "Modification Merchant Reference": _when(transfer, _text("payment_id")),
        "Batch Number": pl.col("batch_id"),
        "Booking Date": _day("available_on"),
        "Store": _when(_PAYMENT, "web"),
    }
    payout = pl.col("record_type") == "payout"
    return _write_files(
        _cells(lines, columns),
        "batch_id",
        {
            "paid_days": pl.col("created_at").filter(payout).dt.date().unique(),
            "line_days": pl.col("available_on").filter(~payout).unique(),
        },
        lambda file: folder / f"settlement_detail_report_batch_{file['batch_id']}.csv",
        _adyen_columns,
    )


def _stripe_columns(file: Row) -> tuple[str, ...]:
    """Classic columns, or local-time columns with the payout's `_utc` time, upper-case
    currencies and the payment intent, charge and card brand, in an order of their own."""
    key = file["payout_day"].isoformat()
    if _variant(key, 2):
        return _shuffled(STRIPE_VARIANT, key)
    return STRIPE_COLUMNS


def _write_stripe(lines: pl.DataFrame, folder: Path) -> list[Path]:
    """Every column a Stripe file of the world may have (times in UTC: the report run's
    zone is UTC, so the local columns say the same as the `_utc` ones)."""
    lines = _with_brands(lines.sort("payout_day", "batch_id", maintain_order=True))
    upper = _by_key(lines, pl.col("payout_day"), lambda day: bool(_variant(day.isoformat(), 2)), pl.Boolean)
    lines = lines.with_columns(_upper=upper)
    case = lambda column: (
        pl.when("_upper").then(pl.col(column).str.to_uppercase()).otherwise(pl.col(column).str.to_lowercase())
    )  # noqa: E731
    net, fee = pl.col("net_minor"), pl.col("fee_minor")
    psp = pl.col("psp_reference").fill_null("None")
    reference = _or("payment_id", psp)  # an f-string writes None as "None"
    description = pl.lit(None, pl.String)
    for record_type, template in _STRIPE_DESCRIPTION.items():
        before, _, after = template.partition("{ref}")
        text = pl.lit(before) + reference + pl.lit(after) if "{ref}" in template else pl.lit(template)
        description = pl.when(pl.col("record_type") == record_type).then(text).otherwise(description)
    payout_at = _day("payout_day") + pl.lit(" 00:00:00")
    available = _day("available_on") + pl.lit(" 00:00:00")
    created = _seconds(pl.col("created_at"))
    columns = {
        "automatic_payout_id": pl.col("batch_id"),
        "automatic_payout_effective_at": payout_at,
        "automatic_payout_effective_at_utc": payout_at,
        "balance_transaction_id": pl.col("line_id"),
        "created_utc": created,
        "created": created,
        "available_on_utc": available,
        "available_on": available,
        "currency": case("net_currency"),
        "gross": _decimal(_plus(net, fee), "net_currency"),
        "fee": _decimal(fee, "net_currency"),
        "net": _decimal(net, "net_currency"),
        "reporting_category": _mapped("record_type", _STRIPE_CATEGORY),
        "source_id": _or("psp_reference", pl.col("batch_id")),
        "description": description,
        "customer_facing_amount": _when(_PAYMENT, _decimal(pl.col("gross_minor"), "gross_currency")),
        "customer_facing_currency": _when(_PAYMENT, case("gross_currency")),
        "payment_method_type": _when(
            _PAYMENT, pl.col("payment_method").replace_strict({"card": "card", "ach": "us_bank_account"}, default="")
        ),
        "payment_intent_id": _when(_PAYMENT, pl.lit("pi_") + psp),
        "charge_id": _when(_PAYMENT, pl.lit("ch_") + psp),
        "card_brand": _when(
            _PAYMENT & (pl.col("payment_method") == "card"),
            pl.when("_visa").then(pl.lit("visa")).otherwise(pl.lit("mastercard")),
        ),
        "payment_metadata[merchant_reference]": _text("payment_id"),
        "payment_metadata[merchant_id]": _text("merchant_id"),
    }
    return _write_files(
        _cells(lines, columns),
        "payout_day",
        {},
        lambda file: folder / f"payout_reconciliation_{file['payout_day'].isoformat()}.csv",
        _stripe_columns,
    )


def _checkout_columns(file: Row) -> tuple[str, ...]:
    """Classic columns, or fewer of the optional ones and two more, in another order."""
    key = file["batch_id"]
    return _shuffled(CHECKOUT_VARIANT, key) if _variant(key, 2) else CHECKOUT_COLUMNS


def _write_checkout(lines: pl.DataFrame, folder: Path) -> list[Path]:
    """A gross row (none for a stand-alone fee) and an Acquirer Fee row when there is a fee."""
    lines = _with_brands(lines).with_row_index("_line")
    breakdown = _mapped("record_type", {k: b for k, (_, b) in _CHECKOUT_ACTION.items()})
    common = {
        "Client Entity ID": pl.lit(CHECKOUT_ENTITY_ID),
        "Client Entity Name": pl.lit(CHECKOUT_ENTITY_NAME),
        "Sub Entity ID": _text("merchant_id"),
        "Sub Entity Name": _when(_or("merchant_id", pl.lit("")) != "", pl.lit("Merchant ") + pl.col("merchant_id")),
        "Currency Account ID": pl.lit("ca_") + pl.col("net_currency").str.to_lowercase(),
        "Payout ID": pl.col("batch_id"),
        "Payment ID": _text("psp_reference"),
        "Action Type": _mapped("record_type", {k: a for k, (a, _) in _CHECKOUT_ACTION.items()}),
        "Action ID": pl.col("line_id"),
        "Reference": _text("payment_id"),
        "Requested On": pl.col("created_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.3f"),
        "Processed On": _day("available_on") + pl.lit("T00:00:00.000"),
        "Processing Currency": pl.col("gross_currency"),
        "Holding Currency": pl.col("net_currency"),
        "Payment Method": _when(
            _PAYMENT,
            pl.when(pl.col("payment_method") == "ach")
            .then(pl.lit("ACH"))
            .when("_visa")
            .then(pl.lit("VISA"))
            .otherwise(pl.lit("MASTERCARD")),
        ),
    }
    gross_rows = _cells(
        lines.filter(breakdown.is_not_null()),
        {
            **common,
            "Breakdown Type": breakdown,
            "FX Rate Applied": _or("fx_rate", pl.lit("1")),
            "Processing Currency Amount": _decimal(pl.col("gross_minor"), "gross_currency"),
            "Holding Currency Amount": _decimal(_plus(pl.col("net_minor"), pl.col("fee_minor")), "net_currency"),
        },
    )
    fee_rows = _cells(
        lines.filter((pl.col("fee_minor") != 0) | breakdown.is_null()),
        {
            **common,
            "Breakdown Type": pl.lit(_CHECKOUT_FEE_BREAKDOWN),
            "FX Rate Applied": pl.lit(""),
            "Processing Currency Amount": pl.lit(""),
            "Holding Currency Amount": _decimal(_negated(pl.col("fee_minor")), "net_currency"),
        },
    )
    rows = pl.concat([gross_rows.with_columns(_part=0), fee_rows.with_columns(_part=1)]).sort("_line", "_part")
    return _write_files(
        rows,
        "batch_id",
        {"payout_day": pl.col("payout_day").first()},
        lambda file: (
            folder / f"financial-actions_{CHECKOUT_ENTITY_ID}_{file['payout_day']:%Y%m%d}_{file['batch_id']}_1.csv"
        ),
        _checkout_columns,
    )


_WRITERS: dict[str, Callable[[pl.DataFrame, Path], list[Path]]] = {
    "adyen": _write_adyen,
    "stripe": _write_stripe,
    "checkoutcom": _write_checkout,
}
