"""A model ready to score one request: the fitted scikit-learn pipeline with the names and
order of its features, the training medians reason codes compare against, and which
registered version it is (recorded in every decision).

Loading (from MLflow) is the registry's job; this is what the stream and the API hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from clearline.models.reasons import ReasonCode, explain_many


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: str


@dataclass(frozen=True)
class Scorer:
    ref: ModelRef
    pipeline: Any  # fitted sklearn Pipeline with predict_proba
    features: tuple[str, ...]
    reference: Mapping[str, float]  # training median per feature

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Probability of default for each row of a feature matrix (columns = features)."""
        return self.pipeline.predict_proba(pd.DataFrame(rows, columns=list(self.features)))[:, 1]

    def vector(self, values: Mapping[str, float | None]) -> np.ndarray:
        """The request's features in model order; None becomes NaN (the pipeline imputes)."""
        return np.array([np.nan if values[f] is None else float(values[f]) for f in self.features], dtype=float)

    def score(self, values: Mapping[str, float | None]) -> float:
        return self.score_many([values])[0]

    def score_many(self, many: Sequence[Mapping[str, float | None]]) -> list[float]:
        """Scores of many requests in one model call."""
        if not many:
            return []
        return [float(p) for p in self.predict(np.stack([self.vector(values) for values in many]))]

    def explain(self, values: Mapping[str, float | None], k: int) -> tuple[float, tuple[ReasonCode, ...]]:
        """Score and reason codes in one model call (see `clearline.models.reasons`)."""
        return self.explain_many([values], k)[0]

    def explain_many(
        self, many: Sequence[Mapping[str, float | None]], k: int
    ) -> list[tuple[float, tuple[ReasonCode, ...]]]:
        """Scores and reason codes of many requests, all in one model call."""
        ref = np.array([self.reference[f] for f in self.features], dtype=float)
        return explain_many(self.predict, self.features, [self.vector(values) for values in many], ref, k)


def medians(frame: Any, features: Sequence[str]) -> dict[str, float]:
    """Training medians (ignoring missing values) — the 'typical buyer' of reason codes.
    A feature never observed gets 0.0."""
    out = {}
    for f in features:
        col = np.asarray(frame[f], dtype=float)
        col = col[~np.isnan(col)]
        out[f] = float(np.median(col)) if col.size else 0.0
    return out
