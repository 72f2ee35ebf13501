"""The MLflow adapter: log and register trained models, manage the champion/challenger
aliases, and load a model by alias for scoring.

Tracking: `MLFLOW_TRACKING_URI` when set (a server, Postgres-backed beyond one machine),
else `mlflow.tracking_uri` in configs/models.yaml — local SQLite, `sqlite:///var/mlflow/mlflow.db`,
with artifacts under `var/mlflow/artifacts`; relative paths are under the repository root.

Aliases: MLflow keeps aliases per registered model, but serving needs one champion and
one challenger overall, whichever model family (scorecard, gbm) holds them. `promote`
therefore takes the alias off every other registered model, and off the other alias's
holder when it is the same version (a model cannot shadow itself).

Models are stored with skops (safe loading, not pickle). Two types must be trusted
explicitly: numpy dtypes and the tree predictor of HistGradientBoosting — both written
by our own training, never by a third party.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no calls home from the pipeline

import mlflow  # noqa: E402
import mlflow.sklearn  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from clearline import config
from clearline.models.scorer import ModelRef, Scorer  # noqa: E402
from clearline.models.train import TrainedModel, frame  # noqa: E402
from clearline.models.training_set import TrainingSet  # noqa: E402

ALIASES = ("champion", "challenger")
TRUSTED_TYPES = ["numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


class RegistryError(Exception):
    """A registry request that cannot be met: unknown model or version, no champion, bad alias."""


@dataclass(frozen=True)
class RegistrySettings:
    tracking_uri: str
    artifact_location: str | None  # None: the tracking server decides
    experiment: str

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], root: Path) -> RegistrySettings:
        """From the loaded configs/models.yaml. MLFLOW_TRACKING_URI wins over it; with a
        SQLite URI from there, artifacts go beside the database file; with a server,
        the server decides where artifacts go."""
        section = cfg.get("mlflow") or {}
        experiment = str(section.get("experiment", "clearline-underwriting"))
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            db = _sqlite_file(env)
            return cls(env, None if db is None else (db.parent / "artifacts").resolve().as_uri(), experiment)
        try:
            uri, local = config.typed(section, "tracking_uri", str), Path(section["artifact_root"])
        except KeyError as exc:
            raise RegistryError(f"configs/models.yaml: mlflow.{exc.args[0]} is missing") from None
        db = _sqlite_file(uri)
        if db is not None and not db.is_absolute():
            uri = f"sqlite:///{root / db}"
        return cls(uri, (local if local.is_absolute() else root / local).resolve().as_uri(), experiment)


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (relative, or absolute with four slashes)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    created: int  # ms since the epoch
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": list(self.aliases),
            "run_id": self.run_id,
            "created": self.created,
            **{k: round(v, 4) for k, v in sorted(self.metrics.items())},
        }


class Registry:
    def __init__(self, settings: RegistrySettings):
        self.settings = settings
        db = _sqlite_file(settings.tracking_uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        # log_model only exists in MLflow's fluent API, which reads the process-wide URI.
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
        self.client = MlflowClient(settings.tracking_uri, settings.tracking_uri)

    def experiment_id(self) -> str:
        """The id of the configured experiment, created on first use. Public because
        every run about these models belongs in it: training runs here, backtest runs
        from the CLI, so MLflow shows a model's evaluations beside its training."""
        found = self.client.get_experiment_by_name(self.settings.experiment)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(
            self.settings.experiment, artifact_location=self.settings.artifact_location
        )

    # ------------------------------------------------------------------ logging

    def log(self, model: TrainedModel, ts: TrainingSet, params: Mapping[str, Any]) -> VersionInfo:
        """One run per model: parameters, metrics, the model with signature and input
        example, registered under the model's name. Returns the new version."""
        example = frame(ts.train.head(5), model.features)
        signature = infer_signature(example, model.pipeline.predict_proba(example))  # as pyfunc serves it
        summary = ts.summary()
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=model.key) as run:
            mlflow.log_params(
                {
                    **{f"model.{k}": v for k, v in model.params.items()},
                    **params,
                    **{k: v for k, v in summary.items() if isinstance(v, str)},
                }
            )
            mlflow.log_metrics({**model.metrics, **{k: float(v) for k, v in summary.items() if isinstance(v, int)}})
            mlflow.set_tags({"clearline.model": model.key})
            mlflow.log_dict(
                {
                    "training_set": summary,
                    "params": dict(params),
                    "metrics": model.metrics,
                    "features": list(model.features),
                    "reference_medians": model.reference,
                },
                "training_report.json",
            )
            info = mlflow.sklearn.log_model(
                model.pipeline,
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=model.registered_name,
                pyfunc_predict_fn="predict_proba",
                metadata={"features": list(model.features), "reference": model.reference, "kind": model.key},
                skops_trusted_types=TRUSTED_TYPES,
                pip_requirements=_requirements(),
            )
        version = str(info.registered_model_version)
        return VersionInfo(
            model.registered_name,
            version,
            (),
            run.info.run_id,
            self.client.get_model_version(model.registered_name, version).creation_timestamp,
            dict(model.metrics),
        )

    # ------------------------------------------------------------------ aliases

    def versions(self) -> list[VersionInfo]:
        """Every version of every registered model, newest first within a model."""
        out = []
        for rm in sorted(self.client.search_registered_models(), key=lambda m: m.name):
            by_version: dict[str, list[str]] = {}
            for alias, version in (rm.aliases or {}).items():
                by_version.setdefault(str(version), []).append(alias)
            for mv in sorted(self.client.search_model_versions(f"name='{rm.name}'"), key=lambda v: -int(v.version)):
                metrics = self.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
                out.append(
                    VersionInfo(
                        rm.name,
                        str(mv.version),
                        tuple(sorted(by_version.get(str(mv.version), []))),
                        mv.run_id or "",
                        mv.creation_timestamp,
                        {k: v for k, v in metrics.items() if k in ("auc", "oracle_auc", "auc_ratio", "brier")},
                    )
                )
        return out

    def holder(self, alias: str) -> ModelRef | None:
        """Which registered model and version hold `alias`, if any."""
        _check_alias(alias)
        for rm in self.client.search_registered_models():
            if alias in (rm.aliases or {}):
                return ModelRef(rm.name, str(rm.aliases[alias]))
        return None

    def promote(self, name: str, version: str, alias: str) -> ModelRef:
        """Give `alias` to NAME VERSION, taking it from whichever model held it."""
        _check_alias(alias)
        try:
            self.client.get_model_version(name, str(version))
        except MlflowException:
            known = [v.version for v in self.versions() if v.name == name]
            raise RegistryError(
                f"no version {version} of model {name!r} in {self.settings.tracking_uri}"
                + (f"; its versions: {', '.join(known)}" if known else "; no such registered model")
            ) from None
        other = ALIASES[1 - ALIASES.index(alias)]
        if self.holder(other) == ModelRef(name, str(version)):
            self.client.delete_registered_model_alias(name, other)
        for rm in self.client.search_registered_models():
            if alias in (rm.aliases or {}) and rm.name != name:
                self.client.delete_registered_model_alias(rm.name, alias)
        self.client.set_registered_model_alias(name, alias, str(version))
        return ModelRef(name, str(version))

    # ------------------------------------------------------------------ serving

    def load(self, alias: str, threads: int = 1) -> Scorer | None:
        """The model holding `alias`, ready to score; None if no model holds it.

        Caps scikit-learn's OpenMP pool for the whole process at `threads`: a serving
        process scores one row at a time, where extra threads only fight (REFERENCE.md)."""
        ref = self.holder(alias)
        if ref is None:
            return None
        uri = f"models:/{ref.name}/{ref.version}"
        meta = mlflow.models.get_model_info(uri).metadata or {}
        if "features" not in meta or "reference" not in meta:
            raise RegistryError(f"{uri} was not logged by clearline train (no features/reference metadata)")
        pipeline = mlflow.sklearn.load_model(uri)
        threadpool_limits(limits=threads, user_api="openmp")
        return Scorer(ref, pipeline, tuple(meta["features"]), {k: float(v) for k, v in meta["reference"].items()})


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise RegistryError(f"alias must be one of {', '.join(ALIASES)}, got {alias!r}")


def _requirements() -> list[str]:
    """Pinned instead of inferred: inference loads the model in a subprocess (seconds)."""
    import sklearn
    import skops

    return [f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"]
