"""`clearline features`: set up the Feast feature store, fill it from events, and look a
buyer's or merchant's online features up.

    clearline features apply                     write feature_store.yaml, apply the repo
    clearline features push --events WORLD|ARCHIVE   batch features -> online + offline
    clearline features get --buyer B [--merchant M]
"""

from __future__ import annotations

from pathlib import Path

import click

from clearline.pipelines.cli.options import console, emit, friendly, json_option, kv_table, progress_bar, user_errors

user_errors(
    "clearline.features.store:FeatureStoreError",
    "clearline.features.batch:EventsReadError",
    "clearline.features.definitions:FeatureConfigError",
)

# money features shown as decimals of the row's currency in tables (JSON keeps minor units)
_MONEY_PREFIXES = ("buyer_amount_", "buyer_exposure_minor", "merchant_volume_", "merchant_avg_ticket_")


def _settings(feast_dir: Path | None, online_store: str | None):
    from clearline import config
    from clearline.features.store import settings_from_config

    return settings_from_config(config.load("features"), config.home(), feast_dir, online_store)


def _spec():
    from clearline import config
    from clearline.features import spec_from_config

    return spec_from_config(config.load("features"))


feast_dir_option = click.option(
    "--feast-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Feature store data folder [default: feast.path in configs/features.yaml].",
)
_online = click.option(
    "--online-store",
    type=click.Choice(["sqlite", "redis"]),
    default=None,
    help="Online store [default: feast.online_store in configs/features.yaml].",
)


@click.group()
def features() -> None:
    """Risk features: the Feast feature store (apply, push, get)."""


@features.command()
@feast_dir_option
@_online
@json_option
@friendly
def apply(feast_dir, online_store, as_json):
    """Write feature_store.yaml into the data folder and apply the buyer and merchant
    entities and feature views (safe to repeat)."""
    from clearline.features import store

    with console.status("applying the Feast repo"):
        report = store.apply(_settings(feast_dir, online_store), _spec())
    emit(as_json, report, kv_table("feature store applied", report))


@features.command()
@click.option(
    "--events",
    "events_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A generated world folder or an event archive folder.",
)
@feast_dir_option
@_online
@click.option("--online-only", is_flag=True, help="Push to the online store only (no offline history).")
@json_option
@friendly
def push(events_path, feast_dir, online_store, online_only, as_json):
    """Compute every underwriting request's features from the events (batch runtime) and
    push them: each buyer's and merchant's latest row online, every row to the offline
    history."""
    import warnings

    from clearline.features import batch, store

    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ibis")  # Feast's offline writer
    spec = _spec()
    with progress_bar(as_json) as bar:
        task = bar.add_task("reading events", total=4)
        events = batch.read_events(events_path)
        bar.update(task, advance=1, description="computing features")
        rows = batch.order_features(events, spec)
        fs = store.open_store(_settings(feast_dir, online_store))
        pushed = {}
        for entity in ("buyer", "merchant"):
            bar.update(task, advance=1, description=f"pushing {entity} features")
            history = batch.feature_history(rows, entity, spec)
            pushed[f"{entity}s_online"] = store.push(fs, store.latest_rows(history, entity), entity, offline=False)
            pushed[f"{entity}_rows_offline"] = 0 if online_only else store.push(fs, history, entity, online=False)
        bar.update(task, advance=1)
    report = {"events_read": events.height, "requests": rows.height, **pushed}
    emit(as_json, report, kv_table("features pushed", report))


def _for_people(values: dict) -> dict:
    from clearline.currency import minor_to_decimal

    cur = values.get("currency")
    return {
        k: (
            f"{minor_to_decimal(int(v), cur)} {cur}"
            if cur and v is not None and k.startswith(_MONEY_PREFIXES)
            else "—"
            if v is None
            else round(v, 4)
            if isinstance(v, float)
            else v
        )
        for k, v in values.items()
    }


@features.command()
@click.option("--buyer", "buyer_id", default=None, help="Buyer id, e.g. b_0000043.")
@click.option("--merchant", "merchant_id", default=None, help="Merchant id, e.g. m_00001.")
@feast_dir_option
@_online
@json_option
@friendly
def get(buyer_id, merchant_id, feast_dir, online_store, as_json):
    """Show a buyer's and/or a merchant's latest online features."""
    from clearline.features import store

    if not (buyer_id or merchant_id):
        raise click.UsageError("name a --buyer, a --merchant, or both")
    fs = store.open_store(_settings(feast_dir, online_store))
    spec = _spec()
    found = {
        entity: store.online_features(fs, entity, key, spec)
        for entity, key in (("buyer", buyer_id), ("merchant", merchant_id))
        if key
    }
    if as_json:
        emit(True, found, None)
        return
    for entity, values in found.items():
        if values["currency"] is None:
            console.print(f"no online features for {entity} {values[f'{entity}_id']} (nothing pushed for it yet)")
        else:
            emit(False, values, kv_table(f"{entity} {values[f'{entity}_id']}", _for_people(values)))
