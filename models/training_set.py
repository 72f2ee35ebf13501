"""The point-in-time training set: each order on terms with its features as of its
decision time (computed by `clearline.features.batch.order_features`, which only sees events
strictly before the order) joined to its label, kept only if the label matured before the
cut-off (`clearline.models.labels`).

The split is by time, never at random: the earliest orders train, the latest
`evaluation_share` evaluate — the model is judged on orders from after everything it
learned from, as it will be used. All orders at the split instant go to evaluation, so no
instant is on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from clearline import config
from clearline.models.labels import matured

# Request fields the models use beside the feature store's features: the order itself.
REQUEST_FEATURES = ("amount_minor", "terms_days")


class TrainingSetError(ValueError):
    """Too little matured history to train and evaluate on; the message says what is short."""


@dataclass(frozen=True)
class TrainingSet:
    train: pl.DataFrame
    evaluation: pl.DataFrame
    features: tuple[str, ...]
    cutoff: datetime
    split_time: datetime  # first decision time in the evaluation set

    def summary(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "split_time": self.split_time.isoformat(),
            "train_orders": self.train.height,
            "train_defaults": int(self.train["defaulted"].sum()),
            "evaluation_orders": self.evaluation.height,
            "evaluation_defaults": int(self.evaluation["defaulted"].sum()),
            "train_from": self.train["decision_time"].min().isoformat(),
            "evaluation_to": self.evaluation["decision_time"].max().isoformat(),
        }


def model_features(feature_names: tuple[str, ...]) -> tuple[str, ...]:
    """What a model reads: the feature store's features and the order's own fields."""
    return (*feature_names, *REQUEST_FEATURES)


def build(
    order_rows: pl.DataFrame, labels: pl.DataFrame, feature_names: tuple[str, ...], cutoff: datetime, cfg: dict
) -> TrainingSet:
    """Join features to matured labels and split by time. `cfg` is the training_set
    section of `configs/models.yaml` (evaluation_share, min_orders, min_defaults)."""
    try:
        share, min_orders, min_defaults = (
            config.typed(cfg, "evaluation_share", float),
            config.typed(cfg, "min_orders", int),
            config.typed(cfg, "min_defaults", int),
        )
    except KeyError as exc:
        raise TrainingSetError(f"configs/models.yaml: training_set.{exc.args[0]} is missing") from None
    if not 0.0 < share < 1.0:
        raise TrainingSetError(
            f"configs/models.yaml: training_set.evaluation_share must be between 0 and 1, got {share}"
        )
    rows = (
        order_rows.join(matured(labels, cutoff), on="order_id", how="inner")
        .filter(pl.col("decision_time") < cutoff)
        .sort("decision_time", "order_id")
    )
    defaults = int(rows["defaulted"].sum()) if rows.height else 0
    if rows.height < min_orders or defaults < min_defaults:
        raise TrainingSetError(
            f"only {rows.height} orders on terms with a matured outcome ({defaults} defaults) before "
            f"{cutoff.isoformat()}; training needs at least {min_orders} orders and {min_defaults} "
            "defaults — a longer world or archive (an order's outcome is known terms_days + the outcome window "
            "after it)"
        )
    split_time = rows["decision_time"][rows.height - math.ceil(rows.height * share)]
    train = rows.filter(pl.col("decision_time") < split_time)
    evaluation = rows.filter(pl.col("decision_time") >= split_time)
    for name, part in (("training", train), ("evaluation", evaluation)):
        n_bad = int(part["defaulted"].sum())
        if n_bad == 0 or n_bad == part.height:
            raise TrainingSetError(f"the {name} orders ({part.height}) hold only one outcome; AUC needs both")
    return TrainingSet(train, evaluation, model_features(feature_names), cutoff, split_time)
