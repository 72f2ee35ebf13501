"""The backtest's metrics: plain functions of scores, outcomes and amounts, so the same
numbers come out of a CLI run, a notebook or a test.

* **AUC, Gini, KS** — ranking: Gini = 2·AUC − 1; KS is the largest gap between the
  cumulative score distributions of defaulted and good orders.
* **Brier** and the **calibration table** — the orders cut into ten score deciles
  (equal counts; ties never split across deciles), each with its mean score beside its
  observed default rate.
* **PSI** — population stability of a variable between the training window (expected)
  and the backtest window (actual): bins are the training window's deciles (cut points
  at its 10th…90th percentiles, duplicates merged, so a variable with few values gets
  fewer bins), missing values are a bin of their own; each bin's share gets
  `epsilon` (1e-4) added before the logs, so a bin empty on one side counts as a large
  but finite shift instead of infinity. PSI = Σ (a − e)·ln(a / e). The usual reading:
  below 0.1 stable, 0.1–0.25 a shift to look at, above 0.25 a different population.
* **cut-offs** — at each score cut-off c, approve the orders scoring below c: the
  approval rate and the bad rate among the approved.
* **expected loss** — PD × EAD × LGD per order: PD the score, EAD the order amount (the
  exposure on a terms order is all of it until repaid), LGD from configs/backtest.yaml;
  in minor units per currency, rounded to whole units once per currency (money is never
  a float past this function), beside the realised loss (EAD × LGD of the orders that
  defaulted).
* **vintages** — per monthly cohort of decision times, the cumulative share of orders
  written off by k months after origination (calendar months of the write-off's
  `default_at` minus the order's month), shown only for the months the data covers.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import polars as pl
from sklearn.metrics import brier_score_loss, roc_auc_score

PSI_EPSILON = 1e-4
PSI_BINS = 10


class BacktestError(ValueError):
    """The backtest cannot be computed as asked; the message says what is missing."""


def ranking(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUC, Gini, KS and Brier of scores (probability of default) against outcomes."""
    y = np.asarray(y, dtype=int)
    if y.min(initial=1) == y.max(initial=0):
        raise BacktestError(f"the {len(y)} orders hold only one outcome; AUC needs both defaults and good orders")
    auc = float(roc_auc_score(y, score))
    return {"auc": auc, "gini": 2 * auc - 1, "ks": ks(y, score), "brier": float(brier_score_loss(y, score))}


def ks(y: np.ndarray, score: np.ndarray) -> float:
    """Largest distance between the score CDFs of the defaulted and the good orders,
    evaluated after each distinct score (so ties move together)."""
    order = np.argsort(score, kind="stable")
    s, bad = np.asarray(score)[order], np.asarray(y)[order].astype(bool)
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of equal scores
    cum_bad = np.cumsum(bad)[last] / bad.sum()
    cum_good = np.cumsum(~bad)[last] / (~bad).sum()
    return float(np.max(np.abs(cum_bad - cum_good)))


def calibration(y: np.ndarray, score: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Per score decile (1 = lowest scores): orders, mean score, observed default rate."""
    frame = pl.DataFrame({"score": np.asarray(score, dtype=float), "y": np.asarray(y, dtype=int)})
    rank = pl.col("score").rank("min") - 1  # ties share a rank, hence a decile
    return (
        frame.with_columns((rank * bins // pl.len() + 1).cast(pl.Int64).alias("decile"))
        .group_by("decile")
        .agg(
            pl.len().alias("orders"),
            pl.col("score").mean().alias("mean_score"),
            pl.col("y").mean().alias("default_rate"),
            pl.col("score").min().alias("min_score"),
            pl.col("score").max().alias("max_score"),
        )
        .sort("decile")
    )


def psi(
    expected: Sequence[float | None], actual: Sequence[float | None], bins: int = PSI_BINS, epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index of `actual` against `expected` (see module doc)."""
    e = np.asarray([np.nan if v is None else v for v in expected], dtype=float)
    a = np.asarray([np.nan if v is None else v for v in actual], dtype=float)
    if e.size == 0 or a.size == 0:
        raise BacktestError("PSI needs values on both sides (a training window and a backtest window)")
    seen = e[~np.isnan(e)]
    edges = np.unique(np.quantile(seen, np.linspace(0, 1, bins + 1)[1:-1])) if seen.size else np.array([])

    def shares(v: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, v[~np.isnan(v)], side="right"), minlength=edges.size + 1)
        return np.r_[counts, np.isnan(v).sum()] / v.size + epsilon

    pe, pa = shares(e), shares(a)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def cutoff_table(y: np.ndarray, score: np.ndarray, cutoffs: Sequence[float]) -> pl.DataFrame:
    """Per cut-off: approve the orders scoring below it; approval rate, bad rate among the
    approved (null when none is approved), and the defaults let through."""
    y, score = np.asarray(y, dtype=int), np.asarray(score, dtype=float)
    rows = []
    for c in sorted(set(float(x) for x in cutoffs)):
        approved = score < c
        n = int(approved.sum())
        rows.append(
            {
                "cutoff": c,
                "approved": n,
                "approval_rate": n / len(y),
                "bad_rate": float(y[approved].mean()) if n else None,
                "defaults_approved": int(y[approved].sum()),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "cutoff": pl.Float64,
            "approved": pl.Int64,
            "approval_rate": pl.Float64,
            "bad_rate": pl.Float64,
            "defaults_approved": pl.Int64,
        },
    )


def expected_loss(rows: pl.DataFrame, lgd: float) -> pl.DataFrame:
    """Per currency: orders, exposure (EAD), expected loss Σ PD·EAD·LGD and realised loss
    Σ EAD·LGD over the defaulted, in minor units. `rows`: score, amount_minor, currency,
    defaulted."""
    if not 0.0 <= lgd <= 1.0:
        raise BacktestError(f"configs/backtest.yaml: lgd must be a share between 0 and 1, got {lgd}")
    return (
        rows.group_by("currency")
        .agg(
            pl.len().alias("orders"),
            pl.col("amount_minor").sum().alias("exposure_minor"),
            (pl.col("score") * pl.col("amount_minor") * lgd).sum().round(0).cast(pl.Int64).alias("expected_loss_minor"),
            (pl.col("amount_minor") * pl.col("defaulted").cast(pl.Int64))
            .sum()
            .cast(pl.Float64)
            .mul(lgd)
            .round(0)
            .cast(pl.Int64)
            .alias("realised_loss_minor"),
        )
        .sort("currency")
    )


def vintages(rows: pl.DataFrame, data_end) -> pl.DataFrame:
    """Per monthly cohort (`decision_time`'s month) and months since origination k (0…),
    the cumulative default rate: orders of the cohort written off (`default_at`) in
    month ≤ cohort + k, over the cohort's orders. Only k up to the month of `data_end`."""
    month = lambda c: pl.col(c).dt.year() * 12 + pl.col(c).dt.month() - 1  # noqa: E731
    end = data_end.year * 12 + data_end.month - 1
    base = rows.select(
        month("decision_time").alias("cohort_m"), (month("default_at") - month("decision_time")).alias("k_default")
    )
    sizes = base.group_by("cohort_m").agg(pl.len().alias("orders"))
    horizon = sizes.with_columns(pl.int_ranges(0, end - pl.col("cohort_m") + 1).alias("months_since")).explode(
        "months_since"
    )
    defaults = base.filter(pl.col("k_default").is_not_null()).group_by("cohort_m", "k_default").agg(pl.len().alias("n"))
    curve = (
        horizon.join(defaults, left_on=["cohort_m", "months_since"], right_on=["cohort_m", "k_default"], how="left")
        .sort("cohort_m", "months_since")
        .with_columns(pl.col("n").fill_null(0).cum_sum().over("cohort_m").alias("defaults"))
    )
    return curve.select(
        pl.format(
            "{}-{}", (pl.col("cohort_m") // 12), (pl.col("cohort_m") % 12 + 1).cast(pl.String).str.pad_start(2, "0")
        ).alias("cohort"),
        pl.col("months_since").cast(pl.Int64),
        "orders",
        "defaults",
        (pl.col("defaults") / pl.col("orders")).alias("cumulative_default_rate"),
    )


def compare(champion: dict, challenger: dict, approve_below: float) -> tuple[str, str]:
    """A plain-words recommendation from two models' metrics on the same orders: promote
    the challenger when it ranks better (AUC up by 0.005 or more) without letting more
    defaults through at the approve cut-off; keep the champion otherwise. Returns
    (verdict, sentence)."""
    d_auc = challenger["auc"] - champion["auc"]
    a, b = _at(champion, approve_below), _at(challenger, approve_below)
    d_appr = (b["approval_rate"] - a["approval_rate"]) * 100
    d_bad = None if a["bad_rate"] is None or b["bad_rate"] is None else (b["bad_rate"] - a["bad_rate"]) * 100
    approval = "same approval rate" if abs(d_appr) < 0.5 else f"approval rate {_signed(d_appr, '.1f')} pt"
    bad = (
        "bad rate n/a"
        if d_bad is None
        else "same bad rate"
        if abs(d_bad) < 0.05
        else f"bad rate {_signed(d_bad, '.1f')} pt"
    )
    facts = f"AUC {_signed(d_auc, '.3f')}, {approval}, {bad} (at the approve cut-off {approve_below:g})"
    if d_auc >= 0.005 and (d_bad is None or d_bad <= 0.05):
        return "promote", f"promote the challenger: {facts}"
    if d_auc <= -0.005:
        return "keep", f"keep the champion: the challenger ranks worse — {facts}"
    return "keep", f"keep the champion: the challenger is no clear improvement — {facts}"


def _signed(x: float, fmt: str) -> str:
    """+0.021 / −0.4: a typographic minus, as people write a difference."""
    return format(x, "+" + fmt).replace("-", "\u2212")


def _at(metrics: dict, cutoff: float) -> dict:
    for row in metrics["cutoffs"]:
        if math.isclose(row["cutoff"], cutoff):
            return row
    raise BacktestError(f"no cut-off {cutoff} in the cut-off table")
