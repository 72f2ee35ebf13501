"""What a variance report says, computed from the variance store's rows.

A finance team works a variance list by urgency, so each variance gets an ageing bucket
and an SLA tier (how much is at stake and how long it has been open decide how soon it is
due), and the period is summed up by category, processor, currency and merchant. Money
is summed per currency and never converted: a total of EUR and GBP together would be a
number nobody can book. Files intake refused are listed beside the variances with their
reasons, whatever the period: a refused file is money nobody has reconciled, and must
never be out of sight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from clearline.currency import EXPONENT
from clearline.recon.intake.registry import QUARANTINED_SCHEMA

UNKNOWN = "—"  # shown where a variance has no processor or merchant (a stray bank line)
# Past this many days a period's trend is counted per week: a bar a day would be a pixel
# or two wide on the page, too thin to read or to hover, and weekly sums smooth the
# weekend dips a finance team does not act on.
WEEKLY_TREND_AFTER_DAYS = 120


class ReportConfigError(ValueError):
    """configs/reports.yaml is missing a rule or has one that cannot be applied."""


@dataclass(frozen=True, slots=True)
class SlaTier:
    tier: str
    min_age_days: int
    min_amount: dict[str, int]  # major units by currency, with a "default"
    due_hours: int

    def min_minor(self, currency: str) -> int:
        major = self.min_amount.get(currency, self.min_amount["default"])
        return major * 10 ** EXPONENT.get(currency, 2)


@dataclass(frozen=True, slots=True)
class ReportRules:
    ageing: tuple[tuple[str, int | None], ...]  # (bucket label, largest age in days or None)
    sla: tuple[SlaTier, ...]

    @classmethod
    def from_config(cls, cfg: dict) -> ReportRules:
        try:
            ageing = tuple((b["bucket"], b["max_age_days"]) for b in cfg["ageing"])
            sla = tuple(
                SlaTier(
                    t["tier"],
                    int(t["min_age_days"]),
                    {k: int(v) for k, v in t["min_amount"].items()},
                    int(t["due_hours"]),
                )
                for t in cfg["sla"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportConfigError(f"configs/reports.yaml: ageing and sla rules are incomplete ({exc!r})") from exc
        if not ageing or ageing[-1][1] is not None:
            raise ReportConfigError(
                "configs/reports.yaml: the last ageing bucket must be open-ended (max_age_days: null)"
            )
        if (
            not sla
            or any("default" not in t.min_amount for t in sla)
            or sla[-1].min_age_days
            or sla[-1].min_amount["default"]
        ):
            raise ReportConfigError(
                "configs/reports.yaml: every sla tier needs a default amount and the last must catch all (0, 0)"
            )
        return cls(ageing, sla)


def classify(variances: pl.DataFrame, rules: ReportRules) -> pl.DataFrame:
    """The variances with their ageing bucket, SLA tier and due time added."""
    bucket = pl.lit(rules.ageing[-1][0])
    for label, max_age in reversed(rules.ageing[:-1]):
        bucket = pl.when(pl.col("age_days") <= max_age).then(pl.lit(label)).otherwise(bucket)
    tier, due = pl.lit(rules.sla[-1].tier), pl.lit(rules.sla[-1].due_hours)
    for t in reversed(rules.sla[:-1]):
        threshold = pl.col("currency").replace_strict(
            {c: t.min_minor(c) for c in EXPONENT}, default=t.min_minor("XXX"), return_dtype=pl.Int64
        )
        reached = (pl.col("age_days") >= t.min_age_days) & (pl.col("amount_minor").abs() >= threshold)
        tier = pl.when(reached).then(pl.lit(t.tier)).otherwise(tier)
        due = pl.when(reached).then(pl.lit(t.due_hours)).otherwise(due)
    frame = (
        variances if "merchant_id" in variances.columns else variances.with_columns(merchant_id=pl.lit(None, pl.String))
    )
    return frame.with_columns(
        ageing_bucket=bucket,
        sla_tier=tier,
        due_at=pl.col("first_seen") + pl.duration(hours=due),
        processor=_known(pl.col("processor")),
        merchant_id=_known(pl.col("merchant_id")),
    )


def _known(column: pl.Expr) -> pl.Expr:
    return pl.when(column.is_null() | (column == "")).then(pl.lit(UNKNOWN)).otherwise(column)


def totals(frame: pl.DataFrame, by: str) -> pl.DataFrame:
    """Count, open count and amount at stake per value of `by` and currency."""
    keys = list(dict.fromkeys([by, "currency"]))
    return (
        frame.group_by(keys)
        .agg(
            count=pl.len(), open=(pl.col("status") != "resolved").sum(), amount_minor=pl.col("amount_minor").abs().sum()
        )
        .sort(keys)
    )


@dataclass(frozen=True)
class VarianceReport:
    """Everything the HTML page and the exports show, for one period."""

    period_from: date
    period_to: date
    generated_at: datetime
    variances: pl.DataFrame  # classified, oldest first
    by_category: pl.DataFrame
    by_processor: pl.DataFrame
    by_currency: pl.DataFrame
    by_merchant: pl.DataFrame
    ageing: pl.DataFrame  # category x ageing bucket counts
    trend: pl.DataFrame  # bucket x category counts: `since` is the bucket's first day, `len` the count
    trend_bucket: str  # "day" or "week" (weeks from Monday), see `trend_bucket`
    buckets: tuple[str, ...]
    tiers: tuple[str, ...]
    quarantined: pl.DataFrame  # files intake refused (`intake.registry.QUARANTINED_SCHEMA`), oldest first


def trend_bucket(period_from: date, period_to: date) -> str:
    """How the trend counts a period: per day, or per week past WEEKLY_TREND_AFTER_DAYS."""
    return "week" if (period_to - period_from).days + 1 > WEEKLY_TREND_AFTER_DAYS else "day"


def trend_counts(frame: pl.DataFrame, bucket: str) -> pl.DataFrame:
    """Variances per bucket and category; a week is counted from its Monday (ISO week)."""
    since = pl.col("since").dt.truncate("1w") if bucket == "week" else pl.col("since")
    return frame.group_by(since, "category").len().sort("since", "category")


def build(
    variances: pl.DataFrame,
    rules: ReportRules,
    period_from: date,
    period_to: date,
    generated_at: datetime,
    quarantined: pl.DataFrame | None = None,
) -> VarianceReport:
    """The report over variances counted from a day in [period_from, period_to], with
    every file intake refused (`quarantined`; None where there is no intake registry)."""
    frame = classify(variances.filter(pl.col("since").is_between(period_from, period_to)), rules)
    frame = frame.sort("since", "variance_id")
    buckets = tuple(label for label, _ in rules.ageing)
    ageing = (
        (
            frame.group_by("category", "ageing_bucket")
            .len()
            .pivot(on="ageing_bucket", index="category", values="len")
            .fill_null(0)
        )
        if frame.height
        else pl.DataFrame({"category": []}, schema={"category": pl.String})
    )
    ageing = ageing.with_columns(*(pl.lit(0, pl.UInt32).alias(b) for b in buckets if b not in ageing.columns))
    ageing = ageing.select("category", *buckets).sort("category")
    bucket = trend_bucket(period_from, period_to)
    return VarianceReport(
        period_from,
        period_to,
        generated_at,
        frame,
        totals(frame, "category"),
        totals(frame, "processor"),
        totals(frame, "currency"),
        totals(frame, "merchant_id"),
        ageing,
        trend_counts(frame, bucket),
        bucket,
        buckets,
        tuple(t.tier for t in rules.sla),
        quarantined if quarantined is not None else pl.DataFrame(schema=QUARANTINED_SCHEMA),
    )
