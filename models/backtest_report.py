"""The backtest as files people open: `backtest.html` (self-contained: inline CSS and SVG
charts, nothing fetched) and one CSV per table, all also logged to the MLflow run.

Money is shown as decimals of its own currency (from the integer minor units the
summary carries); rates as percentages.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from clearline.currency import minor_to_decimal
from clearline.models.backtest_charts import bars, lines
from clearline.models.backtest_run import Result

_ENV = Environment(loader=PackageLoader("models", "templates"), autoescape=select_autoescape(["j2"]))


def _money(minor: int, currency: str) -> str:
    return f"{Decimal(minor_to_decimal(int(minor), currency)):,} {currency}"


def charts(summary: dict[str, Any]) -> dict[str, str]:
    """The page's SVG charts, by name."""
    models = summary["models"]
    roles = list(models)
    calibration = lines(
        [(r, [(c["mean_score"], c["default_rate"]) for c in models[r]["calibration"]]) for r in roles],
        "calibration by score decile",
        "mean predicted PD",
        "observed default rate",
        diagonal=True,
    )
    cohorts: dict[str, list[tuple[float, float]]] = {}
    for v in summary["vintages"]:
        cohorts.setdefault(v["cohort"], []).append((v["months_since"], v["cumulative_default_rate"]))
    vintage = lines(
        sorted(cohorts.items()),
        "vintages: cumulative default rate by monthly cohort",
        "months since origination",
        "cumulative default rate",
    )
    cutoffs = [f"score < {c['cutoff']:g}" for c in models[roles[0]]["cutoffs"]]
    approval = bars(
        cutoffs,
        [(r, [c["approval_rate"] for c in models[r]["cutoffs"]]) for r in roles],
        "approval rate at each cut-off",
    )
    bad = bars(
        cutoffs,
        [(r, [c["bad_rate"] for c in models[r]["cutoffs"]]) for r in roles],
        "bad rate among the approved at each cut-off",
    )
    out = {"calibration": calibration, "vintages": vintage, "approval": approval, "bad_rate": bad}
    if models[roles[0]]["psi"]["score"] is not None:
        # the score once per model; each feature once (the models read the same batch features)
        features = {f: v for r in roles for f, v in models[r]["psi"]["features"].items()}
        labels = [f"score ({r})" for r in roles] + list(features)
        values = [models[r]["psi"]["score"] for r in roles] + list(features.values())
        out["psi"] = bars(labels, [("PSI", values)], "PSI, training window → backtest window", marks=(0.1, 0.25))
    return out


def render(summary: dict[str, Any]) -> str:
    return _ENV.get_template("backtest.html.j2").render(s=summary, charts=charts(summary), money=_money)


def write(result: Result, out_dir: Path) -> dict[str, Path]:
    """`backtest.html` and `<table>.csv` for each table; returns the paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "backtest.html"}
    paths["html"].write_text(render(result.summary), encoding="utf-8")
    for name, table in result.tables.items():
        paths[name] = out_dir / f"{name}.csv"
        table.write_csv(paths[name])
    return paths
