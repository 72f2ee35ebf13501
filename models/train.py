"""The two underwriting models, as scikit-learn pipelines, fitted on the earlier orders of
a training set and judged on the later ones.

* **scorecard** — median imputation (with a missing-indicator per feature), arcsinh
  (a signed log: counts and amounts in minor units are heavy-tailed; the generator's true
  risk is linear in log amount), standardisation, logistic regression. Quantile binning
  was tried first (the classic scorecard); on generated worlds it lost 5-10 % of AUC to
  the scaled version, so binning was dropped.
* **gbm** — HistGradientBoostingClassifier, which takes missing values natively, after
  dropping features without spread in the training orders.

Metrics on the evaluation orders: ROC AUC, Brier score, and — when the generator's true
default probabilities are known — the oracle AUC (those probabilities ranked against the
same event-derived labels: the ceiling any model can reach) and the ratio of the two.

Threads: scikit-learn's OpenMP pool defaults to every core; on a small shared machine,
and for one row at a time, threads fight. `threads` in configs/models.yaml caps the pool
while fitting and (see `clearline.models.registry`) while serving.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from clearline.models.scorer import medians
from clearline.models.training_set import TrainingSet


class ModelConfigError(ValueError):
    """configs/models.yaml does not describe the models; the message names the entry."""


def scorecard(params: Mapping[str, Any]) -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("signed_log", FunctionTransformer(np.arcsinh, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"]))),
        ]
    )


def gbm(params: Mapping[str, Any]) -> Pipeline:
    hyper = {k: v for k, v in params.items() if k != "registered_name"}
    # A feature with no spread in a short history (all missing, or one value: no buyer
    # has repaid yet, every matured order is net-30) breaks HGB's binning; drop it.
    return Pipeline([("drop_constant", VarianceThreshold(0.0)), ("model", HistGradientBoostingClassifier(**hyper))])


BUILDERS: dict[str, Callable[[Mapping[str, Any]], Pipeline]] = {"scorecard": scorecard, "gbm": gbm}


@dataclass(frozen=True)
class TrainedModel:
    key: str  # "scorecard" | "gbm"
    registered_name: str
    pipeline: Pipeline
    params: dict[str, Any]
    metrics: dict[str, float]  # auc, brier, (oracle_auc, auc_ratio)
    features: tuple[str, ...]
    reference: dict[str, float]  # training medians, for reason codes

    @property
    def auc(self) -> float:
        return self.metrics["auc"]


def frame(rows: pl.DataFrame, features: tuple[str, ...]) -> pd.DataFrame:
    """Feature columns as float64 with NaN for missing — what the pipelines are fitted on."""
    return rows.select(pl.col(f).cast(pl.Float64) for f in features).to_pandas()


def oracle_auc(evaluation: pl.DataFrame, truth: pl.DataFrame | None) -> float | None:
    """AUC of the generator's true default probabilities against the same labels, or None
    when the truth does not cover every evaluation order (an archive has no truth)."""
    if truth is None:
        return None
    joined = evaluation.select("order_id", "defaulted").join(truth.select("order_id", "p_default"), on="order_id")
    if joined.height != evaluation.height:
        return None
    return float(roc_auc_score(joined["defaulted"].to_numpy(), joined["p_default"].to_numpy()))


def fit_all(
    ts: TrainingSet,
    models_cfg: Mapping[str, Any],
    truth: pl.DataFrame | None,
    threads: int,
    on_model: Callable[[str], None] = lambda key: None,
) -> list[TrainedModel]:
    """Fit every configured model on the training orders and evaluate on the later ones."""
    unknown = set(models_cfg) - set(BUILDERS)
    if unknown or not models_cfg:
        raise ModelConfigError(
            f"configs/models.yaml: models must be among {sorted(BUILDERS)}, got {sorted(models_cfg)}"
        )
    x_train, y_train = frame(ts.train, ts.features), ts.train["defaulted"].to_numpy()
    x_eval, y_eval = frame(ts.evaluation, ts.features), ts.evaluation["defaulted"].to_numpy()
    oracle = oracle_auc(ts.evaluation, truth)
    reference = medians(x_train, ts.features)
    trained = []
    for key, params in models_cfg.items():
        on_model(key)
        try:
            pipeline = BUILDERS[key](params)
        except (KeyError, TypeError) as exc:
            raise ModelConfigError(f"configs/models.yaml: models.{key}: missing or unknown parameter {exc}") from None
        with threadpool_limits(limits=threads, user_api="openmp"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # an empty feature, dropped above
            pipeline.fit(x_train, y_train)
            scores = pipeline.predict_proba(x_eval)[:, 1]
        metrics = {"auc": float(roc_auc_score(y_eval, scores)), "brier": float(brier_score_loss(y_eval, scores))}
        if oracle is not None:
            metrics.update(oracle_auc=oracle, auc_ratio=metrics["auc"] / oracle)
        trained.append(
            TrainedModel(key, str(params["registered_name"]), pipeline, dict(params), metrics, ts.features, reference)
        )
    return trained
