"""Injected discrepancies: what the processors and the bank report differs, on purpose,
from what the platform recorded, with a ground-truth row for every difference.

The event stream stays the platform's own record. Each injection changes the processors'
or the bank's side at one point, and that side stays internally consistent downstream: a
fee overcharge lowers the line's net, the payout that carries it, and the bank credit of
that payout, just as it would in life. Every variance category of ARCHITECTURE.md gets at
least one injection whenever the rate is above zero, so a small world still tests them all.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from clearline.pipelines.world.ids import letter_ids
from clearline.pipelines.world.settlement import convert, fx_rate_micro, rate_text

LINE_KINDS = (
    "missing_at_processor",
    "missing_in_ledger",
    "amount_mismatch",
    "fee_mismatch",
    "currency_fx_mismatch",
    "duplicate",
    "late_settlement",
)
CATEGORIES = LINE_KINDS + ("payout_not_in_bank", "unexplained_bank_line")
TRUTH_SCHEMA = {
    "kind": pl.String,
    "processor": pl.String,
    "payment_id": pl.String,
    "line_id": pl.String,
    "payout_id": pl.String,
    "bank_line_id": pl.String,
    "amount_minor": pl.Int64,
    "currency": pl.String,
    "field": pl.String,
    "expected": pl.String,
    "actual": pl.String,
}


def _count(rate: float, eligible: int, share: int) -> int:
    return 0 if rate <= 0 or eligible == 0 else max(1, round(rate * eligible / share))


def _truth(rows: pl.DataFrame, kind: str, **exprs) -> pl.DataFrame:
    cols = {k: pl.lit(None, dtype=t) for k, t in TRUTH_SCHEMA.items()}
    cols.update({"kind": pl.lit(kind)}, **exprs)
    return rows.select(**cols)


def inject_lines(
    rng: np.random.Generator, lines: pl.DataFrame, rate: float, last_safe_day: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The processors' actual lines and the truth of what differs from the expected ones."""
    eligible = lines.filter(
        (pl.col("record_type") == "charge")
        & pl.col("batch_id").is_not_null()
        & (pl.col("available_on") <= last_safe_day)
    )
    per_kind = _count(rate, eligible.height, len(LINE_KINDS))
    same_ccy = eligible.filter(pl.col("fx_rate").is_null())["line_id"].to_numpy()
    picks = same_ccy[rng.permutation(len(same_ccy))]
    fx_first = eligible.sort(pl.col("fx_rate").is_null(), "line_id")["line_id"].head(per_kind).to_list()
    chosen, taken = {}, set(fx_first)
    chosen["currency_fx_mismatch"] = fx_first
    pool = iter(p for p in picks if p not in taken)
    for kind in LINE_KINDS:
        if kind != "currency_fx_mismatch":
            chosen[kind] = [p for _, p in zip(range(per_kind), pool)]
            taken.update(chosen[kind])
    actual, truths = lines, []
    by_kind = {k: eligible.filter(pl.col("line_id").is_in(v)) for k, v in chosen.items()}
    ref = dict(
        processor=pl.col("processor"),
        payment_id=pl.col("payment_id"),
        line_id=pl.col("line_id"),
        payout_id=pl.col("batch_id"),
        currency=pl.col("net_currency"),
    )

    rows = by_kind["missing_at_processor"]
    actual = actual.filter(~pl.col("line_id").is_in(rows["line_id"].to_list()))
    truths.append(_truth(rows, "missing_at_processor", **ref, amount_minor=pl.col("net_minor")))

    rows = by_kind["missing_in_ledger"]
    n = rows.height
    phantom = rows.with_columns(
        line_id=pl.Series(letter_ids("stx_", 0, n)),
        psp_reference=pl.Series(letter_ids("pspx", 0, n, 9)),
        payment_id=pl.Series(letter_ids("payx_", 0, n)),
    )
    actual = pl.concat([actual, phantom])
    truths.append(_truth(phantom, "missing_in_ledger", **ref, amount_minor=pl.col("net_minor")))

    rows = by_kind["duplicate"]
    dup = rows.with_columns(line_id=pl.Series(letter_ids("std_", 0, rows.height)))
    actual = pl.concat([actual, dup])
    truths.append(_truth(dup, "duplicate", **ref, amount_minor=pl.col("net_minor")))

    delta = lambda r: pl.Series(
        np.maximum(1, (r["gross_minor"].to_numpy() * rng.uniform(0.01, 0.05, r.height)).astype(np.int64))
    )  # noqa: E731
    rows = by_kind["amount_mismatch"]
    rows = rows.with_columns(delta=delta(rows))
    actual = _patch(
        actual,
        rows,
        gross_minor=pl.col("gross_minor") - pl.col("delta"),
        net_minor=pl.col("net_minor") - pl.col("delta"),
    )
    truths.append(
        _truth(
            rows,
            "amount_mismatch",
            **ref,
            amount_minor=pl.col("delta"),
            field=pl.lit("gross"),
            expected=pl.col("gross_minor").cast(pl.String),
            actual=(pl.col("gross_minor") - pl.col("delta")).cast(pl.String),
        )
    )

    rows = by_kind["fee_mismatch"].with_columns(delta=pl.Series(rng.integers(5, 60, by_kind["fee_mismatch"].height)))
    actual = _patch(
        actual,
        rows,
        fee_minor=pl.col("fee_minor") + pl.col("delta"),
        net_minor=pl.col("net_minor") - pl.col("delta"),
        markup_minor=pl.col("markup_minor") + pl.when(pl.col("processor") == "adyen").then("delta").otherwise(0),
    )
    truths.append(
        _truth(
            rows,
            "fee_mismatch",
            **ref,
            amount_minor=pl.col("delta"),
            field=pl.lit("fee"),
            expected=pl.col("fee_minor").cast(pl.String),
            actual=(pl.col("fee_minor") + pl.col("delta")).cast(pl.String),
        )
    )

    rows = _fx_mismatch(by_kind["currency_fx_mismatch"])
    actual = _patch(
        actual, rows, fx_rate=pl.col("new_rate"), net_minor=pl.col("new_net"), gross_currency=pl.col("new_gross_ccy")
    )
    truths.append(
        _truth(
            rows,
            "currency_fx_mismatch",
            **ref,
            amount_minor=(pl.col("net_minor") - pl.col("new_net")).abs(),
            field=pl.col("field"),
            expected=pl.col("expected"),
            actual=pl.col("actual"),
        )
    )

    rows = by_kind["late_settlement"].with_columns(
        late_on=pl.col("available_on").dt.add_business_days(
            pl.Series(rng.integers(3, 6, by_kind["late_settlement"].height))
        )
    )
    rows = rows.with_columns(
        new_batch=pl.format(
            "po_{}_{}_{}",
            "processor",
            pl.col("net_currency").str.to_lowercase(),
            _batch_day(pl.col("late_on"), pl.col("batch_id")).dt.strftime("%Y%m%d"),
        )
    )
    actual = _patch(actual, rows, available_on=pl.col("late_on"), batch_id=pl.col("new_batch"))
    truths.append(
        _truth(
            rows,
            "late_settlement",
            **ref,
            amount_minor=pl.col("net_minor"),
            field=pl.lit("available_on"),
            expected=pl.col("available_on").cast(pl.String),
            actual=pl.col("late_on").cast(pl.String),
        )
    )
    return actual.sort("available_on", "processor", "line_id"), pl.concat(truths)


def _batch_day(day: pl.Expr, old_batch: pl.Expr) -> pl.Expr:
    """The batch day a late line lands in: weekly processors pay on the following Monday."""
    weekly = old_batch.str.starts_with("po_checkoutcom")
    monday = day.dt.add_business_days(0, roll="forward", week_mask=[True, False, False, False, False, False, False])
    return pl.when(weekly).then(monday).otherwise(day)


def _fx_mismatch(rows: pl.DataFrame) -> pl.DataFrame:
    """FX lines get a rate 1.5 % off (net follows); same-currency lines a wrong currency code."""
    is_fx = rows["fx_rate"].is_not_null().to_numpy()
    gross = rows["gross_minor"].to_numpy()
    present, settle = rows["gross_currency"].to_numpy(), rows["net_currency"].to_numpy()
    day = rows["available_on"].cast(pl.Int64).to_numpy()
    rate = fx_rate_micro(present, settle, day) * 985 // 1000
    new_net = np.where(
        is_fx, convert(gross, rate, present, settle) - rows["fee_minor"].to_numpy(), rows["net_minor"].to_numpy()
    )
    swap = {"USD": "CAD", "EUR": "USD", "GBP": "EUR"}
    new_ccy = np.where(is_fx, present, np.array([swap.get(c, "USD") for c in present]))
    new_rate = np.where(is_fx, rate_text(rate), None)
    text = lambda a: pl.Series(list(a), dtype=pl.String)  # noqa: E731  (numpy str/object -> String)
    return rows.with_columns(
        new_rate=text(new_rate),
        new_net=pl.Series(new_net, dtype=pl.Int64),
        new_gross_ccy=text(new_ccy),
        field=text(np.where(is_fx, "fx_rate", "currency")),
        expected=text(np.where(is_fx, rows["fx_rate"].fill_null("").to_numpy(), present)),
        actual=text(np.where(is_fx, new_rate, new_ccy)),
    )


def _patch(df: pl.DataFrame, rows: pl.DataFrame, **changes: pl.Expr) -> pl.DataFrame:
    """`df` with the lines in `rows` changed by `changes` (computed on the rows' columns)."""
    patched = rows.with_columns(**changes).select(df.columns)
    return pl.concat([df.filter(~pl.col("line_id").is_in(rows["line_id"].to_list())), patched])


def inject_bank(
    rng: np.random.Generator, bank: pl.DataFrame, rate: float, last_safe_day: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Drop some payout credits from the bank and add some lines nobody can explain."""
    payouts = bank.filter((pl.col("kind") == "processor_payout") & (pl.col("booking_date") <= last_safe_day))
    k = _count(rate, payouts.height, 1)
    missing = payouts.sample(n=min(k, payouts.height), seed=int(rng.integers(1 << 31)))
    truth_missing = _truth(
        missing,
        "payout_not_in_bank",
        payout_id=pl.col("customer_reference"),
        bank_line_id=pl.col("line_id"),
        amount_minor=pl.col("amount_minor"),
        currency=pl.col("currency"),
    )
    k = _count(rate, bank.height, 1)
    donors = bank.sample(n=min(k, bank.height), seed=int(rng.integers(1 << 31)))
    extra = donors.with_columns(
        line_id=pl.Series(letter_ids("bnx_", 0, donors.height)),
        bank_reference=pl.Series(letter_ids("BX", 0, donors.height, 9)).str.to_uppercase(),
        customer_reference=pl.Series(letter_ids("wire_", 0, donors.height)),
        amount_minor=pl.Series(
            rng.integers(1_000, 500_000, donors.height) * np.where(rng.random(donors.height) < 0.5, 1, -1)
        ),
        text=pl.lit("INCOMING WIRE NO REMITTANCE INFO"),
        kind=pl.lit("other"),
    )
    truth_extra = _truth(
        extra,
        "unexplained_bank_line",
        bank_line_id=pl.col("line_id"),
        amount_minor=pl.col("amount_minor").abs(),
        currency=pl.col("currency"),
    )
    actual = pl.concat([bank.filter(~pl.col("line_id").is_in(missing["line_id"].to_list())), extra]).sort(
        "booking_date", "line_id"
    )
    return actual, pl.concat([truth_missing, truth_extra])
