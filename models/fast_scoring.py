"""Scoring one request fast, with the same numbers as the fitted scikit-learn pipeline.

A decision scores one row (and a few more for its reason codes); at that size
scikit-learn's per-call overhead, not the arithmetic, is the cost: a pandas DataFrame per
call, input validation in every step, and a Python call per tree. The stream and the
decision API both wrap the models the registry loads in `ArrayScorer.of(...)`: a
gradient-boosted pipeline is scored from its stacked trees (`TreeTable`), the logistic
scorecard from its fitted parameters (`LinearTable`), anything else by the pipeline on
numpy. tests/models/test_api_core.py holds every path to exact equality with the pipeline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from clearline.models.scorer import Scorer


@dataclass(frozen=True)
class TreeTable:
    """A fitted binary HistGradientBoostingClassifier (after VarianceThreshold steps) as
    flat node arrays, evaluated for all trees and rows at once.

    Why: scikit-learn's predict validates its input on every call and walks its 150 trees
    one Python call each — most of a decision's CPU. Here all trees' nodes are one flat
    array (a tree's children are indices into it), every (row, tree) pair holds the index
    of its current node, and each tree level is a few one-dimensional gathers over all
    pairs at once; a leaf is its own left and right child, so pairs that reached a leaf
    stay put without a test. The same numbers: the same split rule as scikit-learn's
    predictor (NaN goes where `missing_go_to_left` says, else `x <= num_threshold` goes
    left), the leaves summed strictly left to right from the baseline as `_raw_predict`
    does (cumsum, not numpy's pairwise sum), and the model's own loss turns the sum into
    a probability. It reads the estimator's private fitted attributes (`_predictors`,
    `_baseline_prediction`, `_loss`), so tests/models/test_api_core.py holds it to exact equality
    with the pipeline; a model it does not cover (categorical features, several classes,
    other steps) keeps the plain path."""

    keep: np.ndarray  # input columns the VarianceThreshold steps pass on
    roots: np.ndarray  # (trees,) flat index of each tree's root
    feature: np.ndarray  # (nodes,) flat over all trees; a leaf's is 0, never used
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray  # flat index of the left child; a leaf's is itself
    right: np.ndarray
    leaf: np.ndarray
    value: np.ndarray
    depth: int
    baseline: float
    loss: Any

    @classmethod
    def of(cls, pipeline: Any) -> TreeTable | None:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.feature_selection import VarianceThreshold

        *pre, model = list(getattr(pipeline, "named_steps", {"model": pipeline}).values())
        if (
            not isinstance(model, HistGradientBoostingClassifier)
            or model.n_trees_per_iteration_ != 1
            or getattr(model, "is_categorical_", None) is not None
            and model.is_categorical_.any()
            or not all(isinstance(step, VarianceThreshold) for step in pre)
        ):
            return None
        keep = np.arange(pre[0].n_features_in_ if pre else model.n_features_in_)
        for step in pre:
            keep = keep[step.get_support()]
        trees = [iteration[0].nodes for iteration in model._predictors]
        roots = np.cumsum([0] + [len(t) for t in trees[:-1]]).astype(np.intp)
        nodes = np.concatenate(trees)
        leaf = nodes["is_leaf"].astype(bool)
        own = np.arange(len(nodes), dtype=np.intp)
        offset = np.repeat(roots, [len(t) for t in trees])

        def child(field: str) -> np.ndarray:
            return np.where(leaf, own, nodes[field].astype(np.intp) + offset)

        return cls(
            keep,
            roots,
            np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp),
            nodes["num_threshold"].astype(float),
            nodes["missing_go_to_left"].astype(bool),
            child("left"),
            child("right"),
            leaf,
            nodes["value"].astype(float),
            int(max(t["depth"].max() for t in trees)),
            float(np.ravel(model._baseline_prediction)[0]),
            model._loss,
        )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        x = np.asarray(rows, dtype=float)[:, self.keep]
        n, width = x.shape
        flat = x.ravel()
        base = (np.arange(n, dtype=np.intp) * width)[:, None]  # each row's start in `flat`
        at = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        for _ in range(self.depth):
            v = flat[base + self.feature[at]]
            go_left = (v <= self.threshold[at]) | (self.missing_left[at] & np.isnan(v))
            at = np.where(go_left, self.left[at], self.right[at])
        leaves = np.concatenate([np.full((n, 1), self.baseline), self.value[at]], axis=1)
        return self.loss.predict_proba(np.cumsum(leaves, axis=1)[:, -1])[:, 1]


@dataclass(frozen=True)
class LinearTable:
    """The fitted scorecard pipeline — SimpleImputer (median, with missing indicators),
    an elementwise numpy function (arcsinh), StandardScaler, binary LogisticRegression —
    as its fitted parameters, applied with the same numpy operations in the same order.

    Why: through scikit-learn the four steps validate their input four times per call
    (about 0.6 ms for one row; the arithmetic is microseconds). Here: missing values get
    the imputer's statistics, the indicator columns (the features that had missing values
    in training) are appended, the function applied, `(x - mean) / scale`, then
    `x @ coef.T + intercept` and scipy's `expit` — exactly `_predict_proba_lr`'s numbers,
    held to equality by tests/models/test_api_core.py. Any other pipeline gets None (plain path)."""

    fill: np.ndarray  # imputer statistics, one per input column
    flagged: np.ndarray | None  # input columns with a missing indicator (None: no indicators)
    func: Any  # the numpy ufunc between imputer and scaler (None: none)
    mean: np.ndarray | None
    scale: np.ndarray | None
    coef: np.ndarray  # (1, columns)
    intercept: np.ndarray

    @classmethod
    def of(cls, pipeline: Any) -> LinearTable | None:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        steps = list(getattr(pipeline, "named_steps", {}).values())
        if len(steps) < 2:
            return None
        imputer, *middle, model = steps
        func = next((s for s in middle if isinstance(s, FunctionTransformer)), None)
        scaler = next((s for s in middle if isinstance(s, StandardScaler)), None)
        if (
            not isinstance(imputer, SimpleImputer)
            or not isinstance(model, LogisticRegression)
            or middle != [s for s in (func, scaler) if s is not None]  # [function] [scaler], nothing else
            or not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values))
            or np.isnan(imputer.statistics_).any()
            or len(model.classes_) != 2
            or func is not None
            and (not isinstance(func.func, np.ufunc) or func.kw_args or func.validate)
        ):
            return None
        return cls(
            np.asarray(imputer.statistics_, dtype=float),
            imputer.indicator_.features_ if imputer.add_indicator else None,
            None if func is None else func.func,
            scaler.mean_ if scaler is not None and scaler.with_mean else None,
            scaler.scale_ if scaler is not None and scaler.with_std else None,
            model.coef_,
            model.intercept_,
        )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        x = np.array(rows, dtype=float)
        missing = np.isnan(x)
        x[missing] = np.broadcast_to(self.fill, x.shape)[missing]
        if self.flagged is not None:
            x = np.hstack((x, missing[:, self.flagged]))
        if self.func is not None:
            x = self.func(x)
        if self.mean is not None:
            x -= self.mean
        if self.scale is not None:
            x /= self.scale
        return expit((x @ self.coef.T + self.intercept).reshape(-1))


@dataclass(frozen=True)
class ArrayScorer(Scorer):
    """The same fitted pipeline, fed numpy arrays instead of a pandas DataFrame per call.

    Building a DataFrame costs more than scoring one row. The pipeline was fitted on a
    DataFrame, so each step remembers `feature_names_in_` and warns on arrays; a copy
    with those names removed accepts the array as is. `Scorer.vector` already orders the
    columns as the model was fitted, so the numbers are the same (tests/models/test_api_core.py
    proves it on random rows). Gradient-boosted trees go through `TreeTable`, the
    logistic scorecard through `LinearTable`."""

    table: TreeTable | LinearTable | None = None

    @classmethod
    def of(cls, scorer: Scorer | None) -> ArrayScorer | None:
        if scorer is None:
            return None
        pipeline = copy.deepcopy(scorer.pipeline)
        for step in getattr(pipeline, "named_steps", {"model": pipeline}).values():
            if "feature_names_in_" in vars(step):
                del step.feature_names_in_
        return cls(
            scorer.ref, pipeline, scorer.features, scorer.reference, TreeTable.of(pipeline) or LinearTable.of(pipeline)
        )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        if self.table is not None:
            return self.table.predict(rows)
        return self.pipeline.predict_proba(np.asarray(rows, dtype=float))[:, 1]
