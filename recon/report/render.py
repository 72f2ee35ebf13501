"""A variance report as files a finance team opens: one HTML page, plus CSV and XLSX of
every open variance for bulk work (assigning, resolving, sharing with a processor).

The page is self-contained (inline CSS, SVG and a few lines of script) so it can be
mailed or archived as it is. Amounts are shown as decimals of their own currency and
carried as integer minor units in the page's data attributes and the exports' columns.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape

from clearline.recon.matching.variance import CATEGORIES, money_text
from clearline.recon.report.chart import colours, stacked_bars
from clearline.recon.report.summary import VarianceReport

_ENV = Environment(loader=PackageLoader("clearline.recon.report", "templates"), autoescape=select_autoescape(["j2"]))
_GROUPS = (("category", "category"), ("processor", "processor"), ("currency", "currency"), ("merchant", "merchant_id"))
EXPORT_COLUMNS = (
    "variance_id",
    "sla_tier",
    "due_at",
    "category",
    "processor",
    "merchant_id",
    "reference",
    "payout_id",
    "amount",
    "amount_minor",
    "currency",
    "field",
    "expected",
    "actual",
    "since",
    "age_days",
    "ageing_bucket",
    "status",
    "assignee",
    "note",
    "evidence",
    "ledger_event_ids",
)


def _with_amount_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(amount_text=money_text(pl.col("amount_minor").abs(), pl.col("currency")))


def open_variances(report: VarianceReport) -> pl.DataFrame:
    """Every variance not yet resolved, flat (lists joined) for a spreadsheet."""
    return (
        report.variances.filter(pl.col("status") != "resolved")
        .with_columns(
            amount=money_text(pl.col("amount_minor"), pl.col("currency")).str.strip_suffix(
                pl.concat_str(pl.lit(" "), pl.col("currency"))
            ),
            evidence=pl.col("evidence").list.join("; "),
            ledger_event_ids=pl.col("ledger_event_ids").list.join("; "),
        )
        .select(EXPORT_COLUMNS)
    )


def write(report: VarianceReport, out_dir: Path, stem: str = "variances") -> dict[str, Path]:
    """Write `<stem>.html`, `<stem>_open.csv` and `<stem>_open.xlsx` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "html": out_dir / f"{stem}.html",
        "csv": out_dir / f"{stem}_open.csv",
        "xlsx": out_dir / f"{stem}_open.xlsx",
    }
    flat = open_variances(report)
    flat.write_csv(paths["csv"])
    # Excel has no time zones: the due time goes in as UTC wall-clock time, named so.
    flat.with_columns(pl.col("due_at").dt.replace_time_zone(None)).rename({"due_at": "due_at_utc"}).write_excel(
        paths["xlsx"], worksheet="open variances", autofit=True, freeze_panes=(1, 0), table_style="Table Style Medium 2"
    )
    categories = tuple(c for c in CATEGORIES if c in set(report.variances["category"])) or CATEGORIES
    tiers = report.variances.group_by("sla_tier").len()
    tier_counts = [(t, int(tiers.filter(pl.col("sla_tier") == t)["len"].sum())) for t in report.tiers]
    html = _ENV.get_template("variances.html.j2").render(
        r=report,
        csv_name=paths["csv"].name,
        xlsx_name=paths["xlsx"].name,
        open_count=int((report.variances["status"] != "resolved").sum()),
        tier_counts=tier_counts,
        chart=stacked_bars(report.trend, categories, report.trend_bucket),
        categories=categories,
        colour=colours(categories),
        groups=[
            (title, col, _with_amount_text(getattr(report, f"by_{title}")).iter_rows(named=True))
            for title, col in _GROUPS
        ],
        rows=_with_amount_text(report.variances).iter_rows(named=True),
    )
    paths["html"].write_text(html, encoding="utf-8")
    return paths
