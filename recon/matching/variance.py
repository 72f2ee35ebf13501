"""A variance: one difference between what the ledger expected and what a processor or
the bank reported, typed, priced and traceable to its evidence.

Its id is a hash of its category and the references it is about, never of its amounts or
age, so a re-run that finds the same difference gives the same id and a finance team's
status on it survives. Its text names the field and both values as people read them
("fee: 2.90 EUR vs 3.10 EUR"), never "data mismatch".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

import polars as pl

from clearline.currency import EXPONENT
from clearline.events import Money

CATEGORIES = (
    "missing_at_processor",
    "missing_in_ledger",
    "amount_mismatch",
    "fee_mismatch",
    "currency_fx_mismatch",
    "duplicate",
    "late_settlement",
    "payout_not_in_bank",
    "unexplained_bank_line",
    "statement_gap",  # a bank statement missing between two received ones (matching/continuity.py)
    "balance_break",  # a statement that does not open at the previous one's closing balance
    "bank_balance_mismatch",  # a closing balance that is not the ledger's bank cash that day
    "corrected_line",  # a processor line sent again under its id with other values (matching/copies.py)
    "corrected_statement",  # a bank statement re-issued under its id with other entries
    "unclassified_processor_line",  # a processor line of a record type intake does not know (matching/settlements.py)
)
ABSENT = "absent"  # the value shown for the side that has no record at all


@dataclass(frozen=True, slots=True)
class Variance:
    """One break. `amount` is the magnitude at stake; `field`, `expected` and `actual`
    say what differs; `since` is the day the break is counted from and `age_days` its age
    at the run's as-of time; `ledger_event_ids` and `evidence` ("file:line") point at the
    records it rests on (a bank_balance_mismatch also lists there the ids of the open
    variances that explain it). `processor` is None for a bank line nobody expected, `merchant_id`
    for what belongs to no one merchant (a payout batch, an unexplained bank line)."""

    variance_id: str
    category: str
    processor: str | None
    merchant_id: str | None
    reference: str
    payout_id: str | None
    amount: Money
    field: str
    expected: str
    actual: str
    since: date
    age_days: int
    ledger_event_ids: tuple[str, ...]
    evidence: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"{self.field}: {self.expected} vs {self.actual}"


SCHEMA: dict[str, pl.DataType] = {
    "variance_id": pl.String(),
    "category": pl.String(),
    "processor": pl.String(),
    "merchant_id": pl.String(),
    "reference": pl.String(),
    "payout_id": pl.String(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "field": pl.String(),
    "expected": pl.String(),
    "actual": pl.String(),
    "since": pl.Date(),
    "age_days": pl.Int64(),
    "ledger_event_ids": pl.List(pl.String()),
    "evidence": pl.List(pl.String()),
}


def variance_id(category: str, key: str) -> str:
    """`var_` + 20 hex digits of SHA-256 over the category and what the variance is about."""
    return "var_" + hashlib.sha256(f"{category}|{key}".encode()).hexdigest()[:20]


def money_text(minor: pl.Expr, currency: pl.Expr) -> pl.Expr:
    """'2.90 EUR' for (290, 'EUR'), exponent-aware (JPY has no decimals), integers only.
    A code outside ISO 4217 (intake's suite refuses those) shows its raw minor units."""
    exp = currency.replace_strict(EXPONENT, default=None, return_dtype=pl.Int64)
    scale = pl.lit(10, pl.Int64).pow(exp)
    units = (minor.abs() // scale).cast(pl.String)
    frac = (minor.abs() % scale).cast(pl.String).str.zfill(exp)
    sign = pl.when(minor < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    number = (
        pl.when(exp.is_null())
        .then(pl.concat_str(minor.cast(pl.String), pl.lit(" minor units of")))
        .when(exp == 0)
        .then(pl.concat_str(sign, units))
        .otherwise(pl.concat_str(sign, units, pl.lit("."), frac))
    )
    return pl.concat_str(number, pl.lit(" "), currency)


RAW_SCHEMA = {k: v for k, v in SCHEMA.items() if k not in ("variance_id", "age_days")} | {"key": pl.String()}
PENDING_SCHEMA: dict[str, pl.DataType] = {
    "awaiting": pl.String(),
    "processor": pl.String(),
    "reference": pl.String(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "since": pl.Date(),
    "due_on": pl.Date(),
}


def ids(raw: pl.DataFrame) -> pl.Series:
    """The `variance_id` of each of rules' raw variances (columns category and key)."""
    return pl.Series([variance_id(c, k) for c, k in raw.select("category", "key").iter_rows()], dtype=pl.String)


def finish(raw: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Rules' raw variances (with a `key` column naming what each is about) as the final
    frame: ids from category and key, age at `as_of`, in a canonical order."""
    return (
        raw.with_columns(
            variance_id=ids(raw),
            age_days=(pl.lit(as_of) - pl.col("since")).dt.total_days().cast(pl.Int64),
        )
        .select(list(SCHEMA))
        .sort("category", "variance_id")
    )


def records(frame: pl.DataFrame) -> list[Variance]:
    """A variance frame as typed records, for callers that handle them one by one."""
    return [
        Variance(
            variance_id=r["variance_id"],
            category=r["category"],
            processor=r["processor"],
            merchant_id=r["merchant_id"],
            reference=r["reference"],
            payout_id=r["payout_id"],
            amount=Money(r["amount_minor"], r["currency"]),
            field=r["field"],
            expected=r["expected"],
            actual=r["actual"],
            since=r["since"],
            age_days=r["age_days"],
            ledger_event_ids=tuple(r["ledger_event_ids"]),
            evidence=tuple(r["evidence"]),
        )
        for r in frame.iter_rows(named=True)
    ]
