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
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.special import expit

from clearline.models.reasons import ReasonCode, from_probe_scores, probe_rows
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
    a probability (`positive_class`). It reads the estimator's private fitted attributes (`_predictors`,
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
    positive: Callable[[np.ndarray], np.ndarray]  # summed raw scores -> P(positive class), `positive_class`
    complete: CompleteTrees | None = None  # the same trees for `probes` (None: too deep to lay out)

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

        depth = int(max(t["depth"].max() for t in trees))
        width = pre[0].n_features_in_ if pre else model.n_features_in_
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
            depth,
            float(np.ravel(model._baseline_prediction)[0]),
            positive_class(model._loss),
            CompleteTrees.of(trees, keep, width, depth) if depth <= CompleteTrees.MAX_DEPTH else None,
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
        return self._probability(self.value[at.T])

    def _probability(self, values: np.ndarray) -> np.ndarray:
        """Each row's leaf values (trees, rows) summed in tree order from the baseline, as
        scikit-learn's `_raw_predict` does, through the model's loss. A reduction over
        the outer axis of a C-ordered array adds row after row (numpy sums pairwise only
        along a contiguous axis), so each sum is the same sequence of additions; a spare
        column keeps that axis from being contiguous when there is a single row."""
        rows = values.shape[1]
        leaves = np.zeros((len(values) + 1, rows + 1))
        leaves[0, :rows], leaves[1:, :rows] = self.baseline, values
        return self.positive(np.add.reduce(leaves, axis=0)[:rows])

    def probes(self, x: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
        """`predict(reasons.probe_rows(x, reference))` — the request and, for each feature
        j, the request with j at its reference — with the same numbers, for a fraction of
        the work (None: no complete layout, use `predict`).

        Why it can: a split's direction depends on one feature only. The request's
        directions are worked out once for every split of every tree, the reference's
        too; probe j takes the reference's direction at the splits on feature j and the
        request's everywhere else. Then each (row, tree) walks its tree by those
        directions alone, and the leaves are summed as `predict` sums them."""
        if self.complete is None:
            return None
        c = self.complete
        own = c.goes_left(np.asarray(x, dtype=float)[self.keep])
        ref = c.goes_left(np.asarray(reference, dtype=float)[self.keep])
        left = ((c.on_feature & (own ^ ref)) ^ own).ravel()  # (1 + features, trees, splits), flat
        # each (tree, row)'s split as its flat index into `left`: start + heap slot s; the
        # step to slot 2s + 2 - went_left is, flat, 2 * index + (2 - start) - went_left, in place
        at = c.start.copy()
        for _ in range(self.depth):
            went_left = left[at]
            at *= 2
            at += c.step
            at -= went_left
        return self._probability(c.value[c.leaf_from + at])


def positive_class(loss: Any) -> Callable[[np.ndarray], np.ndarray]:
    """How a fitted model's loss turns summed raw scores into the positive class's
    probability, as its `predict_proba` does in column 1. The binomial loss with its logit
    link fills that column with `LogitLink.inverse`, scikit-learn's `_expit`, which for numpy
    arrays is scipy's `expit`: called directly, the same numbers without the array-namespace
    dispatch and the two-column array (about 5 us a decision). Any other loss keeps
    `predict_proba`."""
    from sklearn._loss.link import LogitLink
    from sklearn._loss.loss import HalfBinomialLoss

    if type(loss) is HalfBinomialLoss and type(loss.link) is LogitLink:
        return expit
    return lambda raw: loss.predict_proba(raw)[:, 1]


@dataclass(frozen=True)
class CompleteTrees:
    """Every tree of a `TreeTable` laid out as a complete binary tree of the forest's
    depth, in heap order (split s has children 2s+1 and 2s+2; below the last level of
    splits come the leaves). A leaf shallower than the depth is repeated in every leaf
    slot under it, the padding splits below it test feature 0 and lead to that same
    value whichever way they go. So a walk is `depth` steps of `2s + 1 + went_right` with
    no test for having reached a leaf, and a split's direction can be computed for all
    splits at once (`goes_left`)."""

    MAX_DEPTH = 8  # 255 splits and 256 leaf slots a tree; deeper forests keep `predict`

    feature: np.ndarray  # (trees, splits) input column (after `keep`) each split tests
    threshold: np.ndarray
    missing_left: np.ndarray
    # (1 + original features, trees, splits): row 1+j marks the splits on original feature j
    # (row 0, the request itself, none)
    on_feature: np.ndarray
    start: np.ndarray  # (trees, 1 + features): flat index of each (row, tree)'s first split
    value: np.ndarray  # flat (trees, leaf slots)
    step: np.ndarray  # 2 - start: a walk's step from flat split index i to a child is 2 * i + step - went_left
    leaf_from: np.ndarray  # (trees, 1 + features): a walk's last flat index plus this is its leaf in `value`

    @classmethod
    def of(cls, trees: list[np.ndarray], keep: np.ndarray, width: int, depth: int) -> CompleteTrees:
        splits = 2**depth - 1
        feature = np.zeros((len(trees), splits), dtype=np.intp)
        threshold = np.zeros((len(trees), splits))
        missing_left = np.zeros((len(trees), splits), dtype=bool)
        value = np.zeros((len(trees), splits + 1))
        real = np.zeros((len(trees), splits), dtype=bool)  # not padding
        for t, nodes in enumerate(trees):
            todo = [(0, 0, 0)]  # (node in the tree, heap slot, level)
            while todo:
                node, slot, level = todo.pop()
                if nodes["is_leaf"][node]:
                    first = (slot + 1) * 2 ** (depth - level) - 1 - splits  # leftmost leaf slot under it
                    value[t, first : first + 2 ** (depth - level)] = nodes["value"][node]
                    continue
                real[t, slot] = True
                feature[t, slot] = nodes["feature_idx"][node]
                threshold[t, slot] = nodes["num_threshold"][node]
                missing_left[t, slot] = nodes["missing_go_to_left"][node]
                todo += [(nodes[side][node], 2 * slot + step, level + 1) for side, step in (("left", 1), ("right", 2))]
        on_feature = real[None] & (keep[feature][None] == np.arange(-1, width)[:, None, None])
        trees_n = len(trees)
        start = np.arange((width + 1) * trees_n, dtype=np.intp).reshape(width + 1, trees_n).T.copy() * splits
        leaf_start = (np.arange(trees_n, dtype=np.intp) * (splits + 1) - splits)[
            :, None
        ]  # each tree's slot 0, less `splits`
        return cls(feature, threshold, missing_left, on_feature, start, value.ravel(), 2 - start, leaf_start - start)

    def goes_left(self, x: np.ndarray) -> np.ndarray:
        """For one row (input columns after `keep`), whether each split sends it left:
        scikit-learn's rule, NaN where `missing_go_to_left` says, else `x <= threshold`."""
        v = x[self.feature]
        return (v <= self.threshold) | (self.missing_left & np.isnan(v))


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
        x = np.asarray(rows, dtype=float)
        missing = np.isnan(x)
        x = np.where(missing, self.fill, x)  # a new array: the caller's rows stay as they are
        if self.flagged is not None:
            x = np.concatenate((x, missing[:, self.flagged]), axis=1)
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
    reference_row: np.ndarray | None = None  # `reference` in model order, made once

    @classmethod
    def of(cls, scorer: Scorer | None) -> ArrayScorer | None:
        if scorer is None:
            return None
        pipeline = copy.deepcopy(scorer.pipeline)
        for step in getattr(pipeline, "named_steps", {"model": pipeline}).values():
            if "feature_names_in_" in vars(step):
                del step.feature_names_in_
        return cls(
            scorer.ref,
            pipeline,
            scorer.features,
            scorer.reference,
            TreeTable.of(pipeline) or LinearTable.of(pipeline),
            np.array([scorer.reference[f] for f in scorer.features], dtype=float),
        )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        if self.table is not None:
            return self.table.predict(rows)
        return self.pipeline.predict_proba(np.asarray(rows, dtype=float))[:, 1]

    def explain_many(
        self, many: Sequence[Mapping[str, float | None]], k: int
    ) -> list[tuple[float, tuple[ReasonCode, ...]]]:
        """As `Scorer.explain_many`, one request's probe rows at a time: trees by
        `TreeTable.probes`, the scorecard by `LinearTable.predict`. A matrix product's last
        bits depend on the rows around a row (BLAS works in blocks of rows), so scored in
        one product, a request's numbers depended on the batch it came in: a resumed risk
        cluster's reason-code delta differed from one process's in its 17th digit
        (2026-12-07). Alone, each request gets the numbers it gets anywhere."""
        probes = self._probes()
        if probes is None or not many:
            return super().explain_many(many, k)
        xs = [self.vector(values) for values in many]
        scores = np.concatenate([probes(x) for x in xs])
        return from_probe_scores(self.features, xs, self.reference_row, k, scores)

    def _probes(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The scores of one request's probe rows (`reasons.probe_rows`), by a table."""
        table, reference = self.table, self.reference_row
        if isinstance(table, TreeTable) and table.complete is not None:
            return lambda x: table.probes(x, reference)
        if isinstance(table, LinearTable):
            return lambda x: table.predict(probe_rows(x, reference))
        return None
