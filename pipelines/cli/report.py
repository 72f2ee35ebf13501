"""`clearline report variances`: the variance report finance teams work from.

    clearline report variances [--from D1] [--to D2] --out DIR [--state-dir DIR]

Reads the variance store the reconciliation run writes and leaves `variances.html`
(totals, ageing, SLA tiers, trend, every variance with its evidence, and every file
intake quarantined with its reason) beside CSV and XLSX exports of every open variance.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import click

from clearline.pipelines.cli.options import (
    emit,
    friendly,
    json_option,
    kv_table,
    out,
    recon_state_dir,
    recon_state_option,
    user_errors,
)

user_errors("clearline.recon.report.summary:ReportConfigError", "clearline.pipelines.cli.report:NoVariances")


class NoVariances(LookupError):
    """There is no variance store to report on."""


def show_quarantined(refused) -> None:
    """The files intake refused, one whole line each with its reason and where it is kept
    (a table would fold a long reason or path into pieces); nothing when none."""
    if refused.height:
        out.print(f"\n{refused.height} file(s) quarantined, not taken in:", highlight=False)
        for f in refused.iter_rows(named=True):
            out.print(
                f"  {f['name']} ({f['format'] or 'unknown format'}, received {f['recorded_at']}): {f['reason']}"
                f"; kept as {f['kept_as']}",
                highlight=False,
                soft_wrap=True,
            )


@click.group()
def report() -> None:
    """Reports for people: the variance report."""


@report.command()
@click.option(
    "--from",
    "start",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="First day a variance is counted from [default: the earliest stored].",
)
@click.option(
    "--to", "end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day [default: the latest stored]."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for variances.html and the CSV/XLSX exports.",
)
@recon_state_option
@json_option
@friendly
def variances(start, end, out_dir, state_dir, as_json):
    """Write the variance report (HTML) and exports of open variances (CSV, XLSX)."""
    from clearline import config
    from clearline.recon import ReportRules, quarantined_files, read_variances
    from clearline.recon import build_report as build
    from clearline.recon import write_report as write

    state_dir = recon_state_dir(state_dir)
    stored = read_variances(state_dir)  # the running flow's published snapshot while it holds the store
    if stored is None:
        raise NoVariances(f"no variance store at {state_dir / 'variances.duckdb'}: run `clearline recon` first")
    first = start.date() if start else (stored["since"].min() or date.today())
    last = end.date() if end else (stored["since"].max() or date.today())
    refused = quarantined_files(state_dir)
    rules = ReportRules.from_config(config.load("reports"))
    result = build(stored, rules, first, last, datetime.now(timezone.utc), refused)
    paths = write(result, out_dir)
    summary = {
        "from": first,
        "to": last,
        "variances": result.variances.height,
        "open": int((result.variances["status"] != "resolved").sum()),
        "by_category": {
            r["category"]: r["len"]
            for r in result.variances.group_by("category").len().sort("category").iter_rows(named=True)
        },
        "quarantined_files": refused.height,
        **{k: str(v) for k, v in paths.items()},
    }
    if as_json:
        emit(True, {**summary, "quarantined": refused.to_dicts()}, None)
        return
    emit(False, summary, kv_table("variance report", summary))
    show_quarantined(refused)
