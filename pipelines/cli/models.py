"""`clearline train` and `clearline models …`: train the underwriting models on matured
outcomes, log and register them in MLflow, and manage the champion/challenger aliases.

The commands are wiring: events and features come from `clearline.features.batch`, labels, the
training set, fitting and the registry from `models/`; configuration from configs/.
"""

from __future__ import annotations

from datetime import datetime, timezone

import click
from rich.table import Table

from clearline import config
from clearline.pipelines.cli.model_sources import events_source, instant, open_registry, source_options, world_truth
from clearline.pipelines.cli.options import (
    console,
    emit,
    friendly,
    json_option,
    kv_table,
    out,
    progress_bar,
    user_errors,
)

user_errors(
    "clearline.models.registry:RegistryError",
    "clearline.models.training_set:TrainingSetError",
    "clearline.models.labels:LabelError",
    "clearline.models.train:ModelConfigError",
    "clearline.models.policy:PolicyError",
    "clearline.features.batch:EventsReadError",
    "clearline.pipelines.cli.models:OrderNotFound",
    "mlflow.exceptions:MlflowException",
)  # e.g. a tracking server that does not answer


class OrderNotFound(Exception):
    """The order asked for is not an order on terms in the events read."""


@click.command()
@source_options
@click.option("--cutoff", default=None, help="Training cut-off, ISO 8601 UTC [default: the latest event].")
@json_option
@friendly
def train(world, state_dir, cutoff, as_json):
    """Build the point-in-time training set (orders on terms whose outcome window has
    closed), fit the scorecard and the gradient-boosted model, report each one's AUC
    beside the oracle AUC, log and register both in MLflow. With no champion yet, the
    better model becomes champion and the other challenger."""
    from clearline.features import MODEL_FEATURES, order_features, read_events
    from clearline.models import fit_all, labels, training_set

    cfg = config.load("models")
    source = events_source(world, state_dir)
    at = None if cutoff is None else instant(cutoff, "--cutoff")
    steps = [
        "reading events",
        "features as of each order",
        "labels and training set",
        *(f"fitting {k}" for k in cfg.get("models", {})),
        *(f"logging {k} to MLflow" for k in cfg.get("models", {})),
    ]
    with progress_bar(as_json) as bar:
        task = bar.add_task("training", total=len(steps))

        def step(name: str) -> None:
            bar.update(task, completed=steps.index(name), description=name)

        step("reading events")
        facts = read_events(source)
        step("features as of each order")
        rows = order_features(facts)
        step("labels and training set")
        window = labels.outcome_window_days(cfg)
        ts = training_set.build(
            rows,
            labels.outcomes(facts, window),
            tuple(MODEL_FEATURES),
            at or facts["occurred_at"].max(),
            cfg.get("training_set", {}),
        )
        trained = fit_all(
            ts,
            cfg.get("models", {}),
            world_truth(world),
            int(cfg.get("threads", 1)),
            on_model=lambda k: step(f"fitting {k}"),
        )
        registry = open_registry()
        params = {"source": str(source), "outcome_window_days": window}
        logged = []
        for model in trained:
            step(f"logging {model.key} to MLflow")
            logged.append(registry.log(model, ts, params))
        aliases = {}
        if registry.holder("champion") is None:
            ranked = sorted(logged, key=lambda v: -v.metrics["auc"])
            for alias, version in zip(("champion", "challenger"), ranked):
                registry.promote(version.name, version.version, alias)
                aliases[alias] = {"name": version.name, "version": version.version}
        bar.update(task, completed=len(steps))
    report = {
        "source": str(source),
        "tracking_uri": registry.settings.tracking_uri,
        "training_set": {**ts.summary(), "outcome_window_days": window},
        "models": [
            {"model": m.key, "name": v.name, "version": v.version, **{k: round(x, 4) for k, x in m.metrics.items()}}
            for m, v in zip(trained, logged)
        ],
        "aliases_set": aliases,
        "note": ""
        if aliases
        else "a champion already exists; promote with `clearline models promote NAME VERSION --alias …`",
    }
    if not as_json:
        out.print(kv_table("training set", report["training_set"]))
    emit(as_json, report, _models_table(report["models"], aliases))


def _models_table(models: list[dict], aliases: dict) -> Table:
    table = Table(title="models (AUC on the later, held-out orders)", title_justify="left")
    for col in ("model", "registered as", "AUC", "oracle AUC", "AUC / oracle", "Brier", "alias"):
        table.add_column(col, justify="left" if col in ("model", "registered as", "alias") else "right")
    for m in models:
        alias = ", ".join(a for a, ref in aliases.items() if ref == {"name": m["name"], "version": m["version"]})
        table.add_row(
            m["model"],
            f"{m['name']} v{m['version']}",
            f"{m['auc']:.4f}",
            f"{m['oracle_auc']:.4f}" if "oracle_auc" in m else "n/a (no truth)",
            f"{m['auc_ratio']:.3f}" if "auc_ratio" in m else "n/a",
            f"{m['brier']:.4f}",
            alias,
        )
    return table


@click.group()
def models() -> None:
    """The registered underwriting models and their champion/challenger aliases."""


@models.command("list")
@json_option
@friendly
def list_models(as_json):
    """Every registered version with its aliases and evaluation metrics."""
    registry = open_registry()
    versions = [v.as_dict() for v in registry.versions()]
    table = Table(title=f"registered models ({registry.settings.tracking_uri})", title_justify="left")
    for col in ("name", "version", "aliases", "AUC", "oracle AUC", "AUC / oracle", "Brier", "created (UTC)"):
        table.add_column(col, justify="right" if col not in ("name", "aliases") else "left")
    for v in versions:
        created = datetime.fromtimestamp(v["created"] / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            v["name"],
            v["version"],
            ", ".join(v["aliases"]),
            *(f"{v[k]:.4f}" if k in v else "n/a" for k in ("auc", "oracle_auc", "auc_ratio", "brier")),
            created,
        )
    if not versions:
        console.print("no registered models yet: run `clearline train`")
    emit(as_json, {"tracking_uri": registry.settings.tracking_uri, "versions": versions}, table if versions else None)


@models.command()
@click.argument("name")
@click.argument("version")
@click.option(
    "--alias",
    type=click.Choice(["champion", "challenger"]),
    required=True,
    help="The alias to give; it moves from whichever version held it.",
)
@json_option
@friendly
def promote(name, version, alias, as_json):
    """Give NAME VERSION the champion or challenger alias."""
    registry = open_registry()
    before = registry.holder(alias)
    ref = registry.promote(name, version, alias)
    report = {
        "alias": alias,
        "name": ref.name,
        "version": ref.version,
        "previous": None if before is None else {"name": before.name, "version": before.version},
    }
    emit(as_json, report, kv_table(f"{alias} is now {ref.name} v{ref.version}", report))


@models.command("decide")
@click.argument("order_id")
@source_options
@json_option
@friendly
def decide_order(order_id, world, state_dir, as_json):
    """Decide ORDER_ID (an order on terms) as the risk flow would: its features as of its
    own time, the champion's score with the challenger in the shadow, the policy in
    configs/policy.yaml, and the reason codes. Prints the decision record."""
    import polars as pl

    from clearline.features import MODEL_FEATURES, order_features, read_events
    from clearline.models import Policy, RegistryError, UnderwritingRequest, decide

    source = events_source(world, state_dir)
    policy = Policy.from_config(config.load("policy"))
    with console.status("features as of the order…"):
        rows = order_features(read_events(source)).filter(pl.col("order_id") == order_id)
    if rows.is_empty():
        raise OrderNotFound(f"{order_id}: no order on terms with this id in {source}")
    registry = open_registry()
    champion = registry.load("champion", int(config.load("models").get("threads", 1)))
    if champion is None:
        raise RegistryError(
            f"no champion in {registry.settings.tracking_uri}: run `clearline train`, or "
            "`clearline models promote NAME VERSION --alias champion`"
        )
    row = rows.row(0, named=True)
    decision = decide(
        UnderwritingRequest.from_row(row),
        {f: row[f] for f in MODEL_FEATURES},
        champion,
        registry.load("challenger"),
        policy,
    )
    record = decision.to_dict()
    table = decision_table(
        f"{order_id}: {record['decision']}", record, ("decision", "band", "policy_reasons", "decision_time", "buyer_id")
    )
    emit(as_json, record, table)


def money_text(money: dict) -> str:
    from clearline.currency import minor_to_decimal

    return f"{minor_to_decimal(money['minor'], money['currency'])} {money['currency']}"


def decision_table(title: str, record: dict, fields: tuple[str, ...]) -> Table:
    """A decision record (`Decision.to_dict()`) for people: the named fields, money, the
    model and its score (or the rules), reason codes and the challenger's shadow."""
    table = kv_table(title, {k: record[k] for k in fields})
    table.add_row("amount", money_text(record["amount"]))
    table.add_row("credit limit", money_text(record["credit_limit"]))
    model = record["model"]
    table.add_row("model", "rules (no model)" if model is None else f"{model['name']} v{model['version']}")
    if record["score"] is not None:
        table.add_row("score", f"{record['score']:.4f}")
    for code in record["reason_codes"]:
        value = "unknown" if code["value"] is None else f"{code['value']:g}"
        table.add_row(f"reason: {code['feature']}", f"{value} vs median {code['reference']:g} ({code['delta']:+.4f})")
    if record["challenger"]:
        shadow = record["challenger"]
        table.add_row(
            "challenger (shadow)",
            f"{shadow['model']['name']} v{shadow['model']['version']}: {shadow['score']:.4f} → {shadow['decision']}",
        )
    return table


COMMANDS = (train, models)
