"""Reason codes: which features moved this request's score the most.

Method (the same for every model, so the scorecard and the boosted trees explain alike):
for each feature j, score the request once more with feature j set to its reference value
— the training set's median, a typical buyer — and keep the difference

    delta_j = score(x) - score(x with x_j := reference_j)

A positive delta means the buyer's value of j raised the probability of default compared
with a typical buyer; negative, lowered it. The reasons are the features with the largest
|delta|, largest first; features whose value equals the reference (delta 0) are not
reasons. All d+1 rows go to the model in one call, so explaining costs one predict.

For the logistic scorecard this is the feature's contribution against the training
median, mapped through the sigmoid; for trees it also captures that a value can matter
only beyond a split. Interactions are not split between features (each delta moves one
feature alone), which is what an adverse-action notice asks: "what about you, alone,
made the difference".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class ReasonCode:
    feature: str
    value: float | None  # the request's value (None: unknown to the model, imputed)
    reference: float  # the training median it was compared against
    delta: float  # score(x) - score(x with this feature at its reference)


def probe_rows(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row 0 is the request; row 1+j is the request with feature j at its reference."""
    grid = np.tile(x, (len(x) + 1, 1))
    idx = np.arange(len(x))
    grid[idx + 1, idx] = reference
    return grid


def explain(
    predict: Callable[[np.ndarray], np.ndarray], names: Sequence[str], x: np.ndarray, reference: np.ndarray, k: int
) -> tuple[float, tuple[ReasonCode, ...]]:
    """The score of `x` and its k reason codes, from one call to `predict` (which maps a
    matrix of feature rows to probabilities of default)."""
    return explain_many(predict, names, [x], reference, k)[0]


def explain_many(
    predict: Callable[[np.ndarray], np.ndarray],
    names: Sequence[str],
    xs: Sequence[np.ndarray],
    reference: np.ndarray,
    k: int,
) -> list[tuple[float, tuple[ReasonCode, ...]]]:
    """`explain` for many requests with one call to `predict`: a model call costs far
    more than the rows it scores, so a batch of requests shares one."""
    if not xs:
        return []
    return from_probe_scores(names, xs, reference, k, predict(np.concatenate([probe_rows(x, reference) for x in xs])))


def from_probe_scores(
    names: Sequence[str], xs: Sequence[np.ndarray], reference: np.ndarray, k: int, scores: np.ndarray
) -> list[tuple[float, tuple[ReasonCode, ...]]]:
    """The scores and reason codes of `xs` from the scores of their probe rows (each
    request's `probe_rows`, one request after another), however they were computed."""
    scores = np.asarray(scores, dtype=float)
    width = len(reference) + 1
    return [_reasons(names, x, reference, k, scores[i * width : (i + 1) * width]) for i, x in enumerate(xs)]


def _reasons(
    names: Sequence[str], x: np.ndarray, reference: np.ndarray, k: int, scores: np.ndarray
) -> tuple[float, tuple[ReasonCode, ...]]:
    score, deltas = float(scores[0]), scores[0] - scores[1:]
    order = np.argsort(-np.abs(deltas), kind="stable")
    reasons = tuple(
        ReasonCode(names[j], None if np.isnan(x[j]) else float(x[j]), float(reference[j]), float(deltas[j]))
        for j in order[:k]
        if deltas[j] != 0.0
    )
    return score, reasons
