"""`clearline backtest`: replay the event archive (or a generated world) through the batch
feature runtime and judge registered models on the orders of a past window — metrics,
cut-offs, expected loss, vintages, PSI and leakage checks — logged to an MLflow run and
written as `backtest.html` plus CSV tables.

Wiring only: events from `clearline.features.batch`, the run from `clearline.models.backtest_run`, the page
from `clearline.models.backtest_report`, models and the run's logging through the registry.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from rich.table import Table

from clearline import config
from clearline.pipelines.cli.model_sources import events_source, instant, open_registry, source_options, world_truth
from clearline.pipelines.cli.options import console, emit, friendly, json_option, kv_table, out, user_errors

user_errors(
    "clearline.models.backtest:BacktestError",
    "clearline.pipelines.cli.backtest:ModelNotHeld",
    "clearline.models.registry:RegistryError",
    "clearline.models.labels:LabelError",
    "clearline.features.batch:EventsReadError",
    "mlflow.exceptions:MlflowException",
)


class ModelNotHeld(Exception):
    """NAME@ALIAS names a model that does not hold the alias."""


def _model_spec(value: str | None, option: str) -> tuple[str, str] | None:
    if value is None:
        return None
    name, sep, alias = value.rpartition("@")
    if not sep or not name or alias not in ("champion", "challenger"):
        raise click.BadParameter(
            f"{value!r}: expected NAME@ALIAS, alias champion or challenger (e.g. clearline-scorecard@champion)",
            param_hint=option,
        )
    return name, alias


def _load(registry, name: str, alias: str, threads: int):
    """The scorer of NAME@ALIAS and the training window its MLflow run recorded."""
    ref = registry.holder(alias)
    if ref is None or ref.name != name:
        held = "no model" if ref is None else f"{ref.name} v{ref.version}"
        raise ModelNotHeld(
            f"{name}@{alias}: {held} holds the alias {alias} in {registry.settings.tracking_uri} "
            "(see `clearline models list`)"
        )
    scorer = registry.load(alias, threads)
    run_id = registry.client.get_model_version(ref.name, ref.version).run_id
    params = registry.client.get_run(run_id).data.params if run_id else {}
    window = None
    if "train_from" in params and "split_time" in params:
        window = (datetime.fromisoformat(params["train_from"]), datetime.fromisoformat(params["split_time"]))
    return scorer, window


@click.command()
@click.option(
    "--model",
    "model_spec",
    required=True,
    metavar="NAME@ALIAS",
    help="The model to judge, e.g. clearline-scorecard@champion.",
)
@click.option(
    "--challenger",
    "challenger_spec",
    default=None,
    metavar="NAME@ALIAS",
    help="A second model to judge beside it, with a recommendation.",
)
@click.option("--from", "start", required=True, help="First decision time of the window (ISO 8601, UTC).")
@click.option("--to", "end", required=True, help="End of the window, exclusive (ISO 8601, UTC).")
@source_options
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for backtest.html and the CSV tables.",
)
@json_option
@friendly
def backtest(model_spec, challenger_spec, start, end, world, state_dir, out_dir, as_json):
    """Backtest NAME@ALIAS (and a challenger) on the orders on terms decided from --from
    to --to: features replayed from the events as they stood at each decision, outcomes
    once matured; AUC, Gini, KS, Brier, calibration, PSI against the model's training
    window, approval and bad rate per cut-off, expected loss, vintage curves and leakage
    checks. Logs an MLflow run and writes backtest.html into --out."""
    from clearline.features import read_events
    from clearline.models import BacktestSettings as Settings
    from clearline.models import labels
    from clearline.models import run_backtest as run
    from clearline.models import write_backtest_report as write

    specs = {"champion": _model_spec(model_spec, "--model"), "challenger": _model_spec(challenger_spec, "--challenger")}
    t_from, t_to = instant(start, "--from"), instant(end, "--to")
    source = events_source(world, state_dir)
    models_cfg = config.load("models")
    window_days = labels.outcome_window_days(models_cfg)
    settings = Settings.from_config(config.load("backtest"), config.load("policy"), window_days)
    registry = open_registry()
    with console.status("loading models…") as status:
        loaded = {
            role: _load(registry, *spec, int(models_cfg.get("threads", 1)))
            for role, spec in specs.items()
            if spec is not None
        }
        status.update("reading events…")
        facts = read_events(source)
        status.update("replaying features, scoring, measuring…")
        result = run(
            facts,
            {role: s for role, (s, _) in loaded.items()},
            t_from,
            t_to,
            settings,
            train_window=loaded["champion"][1],
            truth=world_truth(world),
        )
        status.update("writing the report…")
        paths = write(result, out_dir)
        status.update("logging to MLflow…")
        run_id = _log(registry, result.summary, out_dir, source)
    report = {**result.summary, "source": str(source), "report": str(paths["html"]), "mlflow_run_id": run_id}
    if not as_json:
        out.print(
            kv_table(
                "backtest",
                {"window": f"{start} to {end}", **report["orders"], "report": report["report"], "mlflow run": run_id},
            )
        )
        leak = report["leakage_checks"]
        console.print(
            (
                "[green]leakage checks passed[/]"
                if leak["passed"]
                else "[bold red]leakage checks FIRED:[/] "
                + "; ".join(c["detail"] for c in leak["checks"] if not c["passed"])
            ),
            highlight=False,
        )
        if "recommendation" in report:
            out.print(report["recommendation"]["text"], highlight=False)
    emit(as_json, report, _table(report, settings.approve_below))


def _log(registry, summary: dict, out_dir: Path, source: Path) -> str:
    import mlflow

    metrics = {
        "leakage_checks_passed": float(summary["leakage_checks"]["passed"]),
        "orders_matured": float(summary["orders"]["matured"]),
        "defaults": float(summary["orders"]["defaults"]),
    }
    for role, m in summary["models"].items():
        metrics |= {f"{role}_{k}": m[k] for k in ("auc", "gini", "ks", "brier")}
        if m["psi"]["score"] is not None:
            metrics[f"{role}_psi_score"] = m["psi"]["score"]
    with mlflow.start_run(experiment_id=registry.experiment_id(), run_name="backtest") as active:
        mlflow.set_tags({"clearline.kind": "backtest"})
        mlflow.log_params(
            {
                "from": summary["window"]["from"],
                "to": summary["window"]["to"],
                "source": str(source),
                **{f"{role}": f"{m['name']} v{m['version']}" for role, m in summary["models"].items()},
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_dict(summary, "backtest.json")
        mlflow.log_artifacts(str(out_dir), artifact_path="report")
    return active.info.run_id


def _table(report: dict, approve_below: float) -> Table:
    table = Table(title=f"models on {report['orders']['matured']:,} matured orders", title_justify="left")
    for col in (
        "role",
        "model",
        "AUC",
        "Gini",
        "KS",
        "Brier",
        "PSI score",
        f"approved < {approve_below:g}",
        "bad rate",
    ):
        table.add_column(col, justify="left" if col in ("role", "model") else "right")
    for role, m in report["models"].items():
        at = next(c for c in m["cutoffs"] if abs(c["cutoff"] - approve_below) < 1e-12)
        table.add_row(
            role,
            f"{m['name']} v{m['version']}",
            *(f"{m[k]:.4f}" for k in ("auc", "gini", "ks", "brier")),
            "n/a" if m["psi"]["score"] is None else f"{m['psi']['score']:.3f}",
            f"{at['approval_rate']:.1%}",
            "n/a" if at["bad_rate"] is None else f"{at['bad_rate']:.2%}",
        )
    return table
