"""Outcomes of orders on terms, from the events alone (never from the generator's truth).

An order on terms is *defaulted* when a `buyer.default` for it occurs within the outcome
window after its due date (`configs/models.yaml`, labels.outcome_window_days), and *good*
otherwise — repaid on time, late, or partly, as long as it was not written off inside the
window. The label of an order is only known once the window has closed, at

    matures_at = due date (00:00 UTC) + outcome window

so a training set built at cut-off C keeps only orders with matures_at <= C. Counting
orders whose window is still open as good would teach the model that recent orders never
default (their write-offs have not happened yet).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl


class LabelError(ValueError):
    """The label settings or the events cannot give labels; the message says which."""


def outcome_window_days(cfg: dict) -> int:
    """The outcome window from the loaded `configs/models.yaml`."""
    try:
        days = cfg["labels"]["outcome_window_days"]
    except (KeyError, TypeError):
        raise LabelError("configs/models.yaml: labels.outcome_window_days is missing") from None
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        raise LabelError(
            f"configs/models.yaml: labels.outcome_window_days must be a positive integer of days, got {days!r}"
        )
    return days


def outcomes(facts: pl.DataFrame, window_days: int) -> pl.DataFrame:
    """One row per order on terms: order_id, due_date, matures_at, default_at (first
    write-off, any time), defaulted (a write-off within the window).

    `facts` is what `clearline.features.batch.read_events` returns (event_type, occurred_at,
    order_id, payment_method, terms_days, due_date). An order without a due date in its
    event gets created date + terms_days, the contract's rule."""
    orders = (
        facts.filter((pl.col("event_type") == "order.created") & (pl.col("payment_method") == "terms"))
        .select(
            "order_id",
            pl.coalesce("due_date", (pl.col("occurred_at") + pl.duration(days=pl.col("terms_days"))).dt.date()).alias(
                "due_date"
            ),
        )
        .unique("order_id", keep="first", maintain_order=True)
    )
    defaults = (
        facts.filter(pl.col("event_type") == "buyer.default")
        .group_by("order_id")
        .agg(pl.col("occurred_at").min().alias("default_at"))
    )
    return (
        orders.join(defaults, on="order_id", how="left")
        .with_columns(
            matures_at=(
                pl.col("due_date").cast(pl.Datetime("us")) + pl.duration(days=window_days)
            ).dt.replace_time_zone("UTC")
        )
        .with_columns(defaulted=pl.col("default_at").is_not_null() & (pl.col("default_at") <= pl.col("matures_at")))
        .select("order_id", "due_date", "matures_at", "default_at", "defaulted")
    )


def matured(labels: pl.DataFrame, cutoff: datetime) -> pl.DataFrame:
    """The labels whose outcome window closed at or before `cutoff`."""
    return labels.filter(pl.col("matures_at") <= cutoff)
