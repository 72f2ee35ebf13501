"""How well the matcher found what was injected: precision and recall per category,
against a generated world's ground truth (`truth/discrepancies.csv`).

A found variance counts only when its category, what it is about and its amount and
currency all agree with one truth row: a line-level break by (processor, line id), a
payout missing from the bank by its payout id (a merchant payout's or a repayment's
reference where it is no processor's payout), a balance break, statement gap or balance
mismatch by the statement it shows on (account and day, the variance's reference), and
an unexplained bank line (its bank id exists only inside the generator) by currency and
amount. Each truth row can be claimed once, so a break reported twice costs precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from clearline.recon.matching.variance import CATEGORIES

_LINE_KINDS = (
    "missing_at_processor",
    "missing_in_ledger",
    "amount_mismatch",
    "fee_mismatch",
    "currency_fx_mismatch",
    "duplicate",
    "late_settlement",
)


@dataclass(frozen=True)
class CategoryScore:
    category: str
    injected: int
    found: int
    correct: int

    @property
    def precision(self) -> float:
        return self.correct / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.injected if self.injected else 1.0


_STATEMENT_KINDS = ("statement_gap", "balance_break", "bank_balance_mismatch")


def _key(kind: pl.Expr, processor: pl.Expr, line_id: pl.Expr, payout_id: pl.Expr, statement: pl.Expr) -> pl.Expr:
    amount = pl.concat_str(pl.col("amount_minor").cast(pl.String), pl.lit(" "), pl.col("currency"))
    return (
        pl.when(kind.is_in(list(_LINE_KINDS)))
        .then(pl.concat_str(processor, pl.lit("|"), line_id, pl.lit("|"), amount))
        .when(kind == "payout_not_in_bank")
        .then(pl.concat_str(payout_id, pl.lit("|"), amount))
        .when(kind.is_in(list(_STATEMENT_KINDS)))
        .then(pl.concat_str(statement, pl.lit("|"), amount))
        .otherwise(amount)
    )


def _claimable(frame: pl.DataFrame, kind: str, key: pl.Expr) -> pl.DataFrame:
    """(row, kind, key, n-th occurrence of that key) so equal keys pair up one by one."""
    return (
        frame.with_row_index("row")
        .select("row", kind=pl.col(kind), key=key)
        .with_columns(nth=pl.int_range(pl.len()).over("kind", "key"))
    )


def _sides(truth: pl.DataFrame, variances: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    statement = pl.col("statement") if "statement" in truth.columns else pl.lit(None, pl.String)  # older truths
    t = _claimable(
        truth, "kind", _key(pl.col("kind"), pl.col("processor"), pl.col("line_id"), pl.col("payout_id"), statement)
    )
    v = _claimable(
        variances,
        "category",
        _key(
            pl.col("category"),
            pl.col("processor"),
            pl.col("reference"),
            pl.coalesce("payout_id", "reference"),
            pl.col("reference"),
        ),
    )
    return t, v


def score(truth: pl.DataFrame, variances: pl.DataFrame) -> list[CategoryScore]:
    """Per category: injected (truth rows), found (variances) and correct (agreeing pairs)."""
    t, v = _sides(truth, variances)
    correct = t.join(v, on=["kind", "key", "nth"], how="inner")
    count = lambda df: dict(df.group_by("kind").len().iter_rows())  # noqa: E731
    injected, found, right = count(t), count(v), count(correct)
    kinds = list(CATEGORIES) + sorted(set(found) - set(CATEGORIES))
    return [CategoryScore(k, injected.get(k, 0), found.get(k, 0), right.get(k, 0)) for k in kinds]


def misses(truth: pl.DataFrame, variances: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(truth rows nobody found, variances that match no truth row), for a person to read."""
    t, v = _sides(truth, variances)
    on = ["kind", "key", "nth"]
    missed = truth.with_row_index("row").join(t.join(v, on=on, how="anti").select("row"), on="row").drop("row")
    extra = variances.with_row_index("row").join(v.join(t, on=on, how="anti").select("row"), on="row").drop("row")
    return missed, extra
