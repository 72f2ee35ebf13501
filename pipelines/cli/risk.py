"""`clearline risk …`: run the streaming risk flow, and read its decision log.

Wiring only: the flow is `clearline.pipelines.flows.risk`, the log `clearline.models.decision_journal`.
"""

from __future__ import annotations

import json

import click
from rich.table import Table

from clearline.pipelines.cli.features import feast_dir_option
from clearline.pipelines.cli.models import decision_table, money_text
from clearline.pipelines.cli.options import (
    cluster_options,
    console,
    emit,
    friendly,
    json_option,
    kv_table,
    risk_state_dir,
    risk_state_option,
    user_errors,
)

user_errors(
    "clearline.pipelines.flows.runner:FlowStateError",
    "clearline.features.store:FeatureStoreError",
    "clearline.models.registry:RegistryError",
    "clearline.models.policy:PolicyError",
    "clearline.features.definitions:FeatureConfigError",
    "mlflow.exceptions:MlflowException",
    "clearline.pipelines.cli.risk:NoDecisionLog",
)


class NoDecisionLog(Exception):
    """The state folder has no decision log (yet), or not the order asked for."""


@click.group()
def risk() -> None:
    """The streaming risk flow: features, Feast pushes and underwriting decisions."""


@risk.command("run")
@click.option("--once", is_flag=True, help="Stop when every partition is caught up.")
@click.option("--topic", default=None, help="Topic to consume [default: configs/risk.yaml].")
@risk_state_option
@feast_dir_option
@cluster_options
@json_option
@friendly
def risk_run(once, topic, state_dir, feast_dir, process_id, addresses, as_json):
    """Consume payments.events (Bytewax, recovery on): features to Feast, one decision per
    order on terms to payments.decisions and the decision log. SIGTERM stops it after its
    last batch; run it again to resume."""
    from clearline.pipelines.flows.risk import RiskSettings, run

    settings = RiskSettings.from_config(state_dir, topic, once, feast_dir)
    with console.status("risk flow running…" if not once else "risk flow catching up…"):
        stopped, counts = run(settings, process_id, list(addresses) or None)
    summary = {
        "consumed": counts.consumed,
        "passed_over": counts.passed_over,
        "refused_skipped": counts.refused,
        "requests": counts.requests,
        "decisions": counts.decided,
        "replayed_already_decided": counts.replayed,
        "by_outcome": dict(sorted(counts.by_outcome.items())),
        "by_model": dict(sorted(counts.by_model.items())),
        "features_unavailable": counts.features_unavailable,
        "late_events": counts.late_events,
        "feature_rows_pushed": counts.feature_rows,
        "stopped_by_signal": stopped,
        "flow_seconds": round(counts.seconds, 2),
        "startup_seconds": None if counts.startup_seconds is None else round(counts.startup_seconds, 2),
        "steady_seconds": round(counts.steady_seconds, 2),
        "steady_cpu_seconds": round(counts.cpu_seconds, 2),
        "state_dir": str(settings.state_dir),
    }
    emit(
        as_json,
        summary,
        kv_table("risk flow" + (" (stopped by signal; run again to resume)" if stopped else ""), summary),
    )


@risk.command("decisions")
@click.option("--order", "order_id", default=None, help="Only this order's decision, in full.")
@click.option("--limit", type=int, default=20, show_default=True, help="How many of the latest decisions to list.")
@risk_state_option
@json_option
@friendly
def risk_decisions(order_id, limit, state_dir, as_json):
    """Read the decision log: the latest decisions, or one order's full record."""
    import polars as pl

    from clearline.models import read_log

    root = risk_state_dir(state_dir)
    log = read_log(root, "decisions")
    if log.is_empty():
        raise NoDecisionLog(f"no decision log in {root / 'decisions'}: run `clearline risk run` first")
    if order_id is not None:
        found = log.filter(pl.col("order_id") == order_id)
        if found.is_empty():
            raise NoDecisionLog(f"{order_id}: no decision for this order in {root / 'decisions'}")
        record = json.loads(found["record"][0])
        emit(
            as_json,
            record,
            decision_table(
                f"{order_id}: {record['decision']}",
                record,
                (
                    "decision_id",
                    "decision",
                    "band",
                    "policy_reasons",
                    "decision_time",
                    "buyer_id",
                    "merchant_id",
                    "kill_switch",
                    "missing_features",
                    "decided_at",
                ),
            ),
        )
        return
    latest = log.tail(limit)
    records = [json.loads(r) for r in latest["record"]]
    counts = log.group_by("decision").len().sort("decision")
    emit(
        as_json,
        {"decisions": log.height, "by_outcome": dict(counts.iter_rows()), "latest": records},
        _list_table(latest, log.height),
    )


def _list_table(frame, total: int) -> Table:
    table = Table(title=f"latest {frame.height} of {total:,} decisions", title_justify="left")
    for col in ("order", "buyer", "decision", "amount", "limit", "model", "score", "policy reasons"):
        table.add_column(col, justify="right" if col in ("amount", "limit", "score") else "left")
    for r in frame.iter_rows(named=True):
        table.add_row(
            r["order_id"],
            r["buyer_id"],
            r["decision"],
            money_text({"minor": r["amount_minor"], "currency": r["currency"]}),
            money_text({"minor": r["credit_limit_minor"], "currency": r["currency"]}),
            "rules" if r["model_name"] is None else f"{r['model_name']} v{r['model_version']}",
            "" if r["score"] is None else f"{r['score']:.4f}",
            r["policy_reasons"],
        )
    return table
