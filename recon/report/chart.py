"""The trend chart: variances found per day or per week, stacked by category, as inline SVG.

Inline SVG rather than a charting library from a CDN: the report is opened on machines
without internet access and attached to emails, so it must carry everything it shows.
"""

from __future__ import annotations

from datetime import timedelta
from html import escape

import polars as pl

# One colour per category, distinguishable side by side (Okabe–Ito plus two greys).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#555555", "#999999")


def colours(categories: tuple[str, ...]) -> dict[str, str]:
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(categories)}


STEP_DAYS = {"day": 1, "week": 7}


def stacked_bars(
    trend: pl.DataFrame, categories: tuple[str, ...], bucket: str = "day", width: int = 960, height: int = 260
) -> str:
    """Bars per bucket (`since`, the bucket's first day: a day, or a week's Monday) of the
    count of variances per category; empty buckets show. The bucket is named in the
    chart's label, each bar's tooltip and under the axis, so a weekly bar is not read as a day."""
    pad_left, pad_bottom, pad_top = 40, 24, 10
    if trend.is_empty():
        return (
            f'<svg class="trend" width="{width}" height="{height}" role="img" '
            'aria-label="no variances in the period"></svg>'
        )
    step = STEP_DAYS[bucket]
    first, last = trend["since"].min(), trend["since"].max()
    bars = (last - first).days // step + 1
    per_bucket = {(row["since"], row["category"]): row["len"] for row in trend.iter_rows(named=True)}
    totals = trend.group_by("since").agg(pl.col("len").sum())
    top = max(int(totals["len"].max()), 1)
    plot_w, plot_h = width - pad_left - 10, height - pad_bottom - pad_top
    bar_w = plot_w / bars
    colour = colours(categories)

    def name(start) -> str:
        return escape(str(start) if bucket == "day" else f"week of {start}")

    parts = [
        f'<svg class="trend" width="{width}" height="{height}" role="img" data-bucket="{bucket}" '
        f'aria-label="variances per {bucket} by category, {name(first)} to {name(last)}">'
    ]
    for tick in (0, top // 2, top):
        y = pad_top + plot_h - plot_h * tick / top
        parts.append(
            f'<line x1="{pad_left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{pad_left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    for i in range(bars):
        start = first + timedelta(days=i * step)
        y = pad_top + plot_h
        for category in categories:
            n = per_bucket.get((start, category), 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(
                f'<rect x="{pad_left + i * bar_w:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{colour[category]}"><title>{name(start)} {escape(category)}: {n}</title></rect>'
            )
    parts.append(f'<text x="{pad_left}" y="{height - 6}">{name(first)}</text>')
    if last != first:
        parts.append(f'<text x="{width - 10}" y="{height - 6}" text-anchor="end">{name(last)}</text>')
    parts.append("</svg>")
    return "".join(parts)
