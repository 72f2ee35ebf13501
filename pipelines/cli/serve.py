"""`clearline serve`: the decision API (`clearline.models.api`) under uvicorn.

Wiring only: configuration from configs/serve.yaml (and tenants, policy, features,
models), the champion and challenger loaded from MLflow once at start-up, the Feast
online store, the merchant directory and the decision store, then uvicorn (uvloop +
httptools, each response sent in one write:
`clearline.pipelines.connectors.one_write_http`). With --workers N each worker process
builds the same service from the same settings (passed in the environment), so start-up
errors are found once, here, before any worker starts; this process then commits every
worker's decision records (`clearline.models.api_store.SharedWriter`), so their group
commits are shared.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from clearline import config
from clearline.pipelines.cli.features import feast_dir_option
from clearline.pipelines.cli.options import emit, friendly, json_option, kv_table, user_errors

user_errors(
    "clearline.models.api_core:ApiSetupError",
    "clearline.models.registry:RegistryError",
    "clearline.models.policy:PolicyError",
    "clearline.features.store:FeatureStoreError",
    "mlflow.exceptions:MlflowException",
)

_SETTINGS_ENV = "CLEARLINE_SERVE_SETTINGS"
# uvicorn's httptools protocol sending each response in one write (imported by uvicorn, by name, in each worker)
ONE_WRITE_HTTP = "clearline.pipelines.connectors.one_write_http:OneWriteHttp"


def _path(value: str | Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else config.state_path(p)


def merchant_directory(source: str):
    """The merchant -> tenant directory from Parquet with merchant_id and reseller_id."""
    import polars as pl

    from clearline.models import ApiSetupError, MerchantDirectory

    try:
        pairs = pl.scan_parquet(source).select("merchant_id", "reseller_id").unique().collect()
    except (FileNotFoundError, pl.exceptions.ComputeError, pl.exceptions.ColumnNotFoundError, OSError) as exc:
        raise ApiSetupError(
            f"merchant directory {source}: {str(exc).splitlines()[0]} — give --merchants a Parquet "
            "file or glob with merchant_id and reseller_id (a world's entities/merchants.parquet, "
            "or the event archive)"
        ) from None
    return MerchantDirectory.from_pairs(pairs.iter_rows())


def build_service(settings: dict[str, Any]):
    """The decision service the settings describe (called in each worker)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before scikit-learn loads: one row at a time
    from clearline.features.store import open_store, settings_from_config
    from clearline.models import (
        ApiKeys,
        ArrayScorer,
        DecisionService,
        DecisionStore,
        OnlineFeatures,
        Policy,
        Registry,
        RegistrySettings,
    )

    models_cfg = config.load("models")
    registry = Registry(RegistrySettings.from_config(models_cfg, config.home()))
    threads = int(models_cfg.get("threads", 1))
    feast = settings_from_config(
        config.load("features"), config.home(), Path(settings["feast_dir"]) if settings.get("feast_dir") else None
    )
    features = OnlineFeatures(open_store(feast)) if feast.yaml_path.exists() else None
    if features is not None:
        features.read("warm-up", "warm-up")  # Feast loads its registry on the first read
    return DecisionService(
        policy=Policy.from_config(config.load("policy")),
        champion=ArrayScorer.of(registry.load("champion", threads)),
        challenger=ArrayScorer.of(registry.load("challenger", threads)),
        keys=ApiKeys.from_config(config.load("tenants")),
        merchants=merchant_directory(settings["merchants"]),
        features=features,
        store=DecisionStore(Path(settings["decisions"]), writer=settings.get("writer")),
    )


def app_from_env():
    """uvicorn's factory in each worker process."""
    from clearline.models import create_app

    return create_app(build_service(json.loads(os.environ[_SETTINGS_ENV])))


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: configs/serve.yaml, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: configs/serve.yaml, 8080].")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes; one per core [default: configs/serve.yaml].",
)
@click.option(
    "--merchants",
    default=None,
    help="Parquet file or glob with merchant_id, reseller_id [default: configs/serve.yaml].",
)
@click.option(
    "--decisions",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file of the decisions made [default: configs/serve.yaml].",
)
@feast_dir_option
@json_option
@friendly
def serve(host, port, workers, merchants, decisions, feast_dir, as_json):
    """Serve the decision API: POST /v1/decisions, GET /v1/decisions/{id}, /health,
    /metrics, OpenAPI docs at /docs. Loads the champion and challenger once; with no
    champion every decision follows the conservative rules (and /health says so)."""
    import uvicorn

    cfg = config.load("serve")
    settings = {
        "merchants": str(_path(merchants or cfg.get("merchants", "var/ledger/archive/event_date=*/*.parquet"))),
        "decisions": str(_path(decisions or cfg.get("decisions", "var/api/decisions.db"))),
        "feast_dir": str(_path(feast_dir)) if feast_dir else None,
    }
    host, port = host or str(cfg.get("host", "127.0.0.1")), port if port is not None else int(cfg.get("port", 8080))
    workers = workers or int(cfg.get("workers", 1))
    service = build_service(settings)
    from clearline.models import create_app

    app = create_app(service)  # here too with several workers: a bad `limits` is found before any starts
    summary = {
        "listening": f"http://{host}:{port}",
        "workers": workers,
        "decides_by": service.decides_by(),
        "champion": None
        if service.champion is None
        else f"{service.champion.ref.name} v{service.champion.ref.version}",
        "challenger": None
        if service.challenger is None
        else f"{service.challenger.ref.name} v{service.challenger.ref.version}",
        "feature_store": "connected" if service.features is not None else "none: run `clearline features apply`",
        "tenants": ", ".join(sorted(service.keys.hashes)),
        "merchants": len(service.merchants.owners),
        "decisions": settings["decisions"],
        "docs": f"http://{host}:{port}/docs",
    }
    emit(as_json, summary, kv_table("clearline serve", summary))
    run = dict(host=host, port=port, loop="uvloop", http=ONE_WRITE_HTTP, log_level="warning", access_log=False)
    if workers == 1:
        uvicorn.run(app, **run)
        return
    service.store.close()
    from clearline.models import SharedWriter

    writer = SharedWriter(Path(settings["decisions"]))  # the workers' records, one group commit for all
    os.environ[_SETTINGS_ENV] = json.dumps({**settings, "writer": writer.address})
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="clearline-metrics-"))
    try:
        uvicorn.run("clearline.pipelines.cli.serve:app_from_env", factory=True, workers=workers, **run)
    finally:
        writer.close()
