"""The decision's fast paths give exactly the numbers of the plain ones: the trees' probe
scores (`TreeTable.probes`, the request and each feature at its reference) equal the
fitted scikit-learn pipeline's `predict_proba` on the same probe rows, for balanced and
unbalanced forests, with a constant column the pipeline drops, missing values and values
exactly on a split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.models.fast_scoring import ArrayScorer, TreeTable
from clearline.models.reasons import probe_rows
from clearline.models.scorer import ModelRef, Scorer
from clearline.models.train import gbm

NAMES = ("a", "b_rate", "c_minor", "constant", "d")


def _forest(params: dict) -> Scorer:
    rng = np.random.default_rng(9)
    x = pd.DataFrame(rng.normal(size=(500, 5)) * [1, 0.2, 5000, 0, 3], columns=list(NAMES))
    x["constant"] = 7.0  # VarianceThreshold drops it: the trees' columns are shifted past it
    x.loc[rng.random(500) < 0.2, "b_rate"] = np.nan
    y = ((x["a"] + x["d"] / 3 + rng.normal(size=500)) > 0.8).astype(int)
    pipeline = gbm({"random_state": 1, **params}).fit(x, y)
    return Scorer(ModelRef("gbm", "1"), pipeline, NAMES, {n: float(x[n].median()) for n in NAMES})


FORESTS = {
    "depth 3": _forest({"max_iter": 40, "max_depth": 3}),
    "unbalanced, depth up to 6": _forest({"max_iter": 25, "max_depth": 6, "max_leaf_nodes": 9, "min_samples_leaf": 5}),
}
FAST = {k: ArrayScorer.of(s) for k, s in FORESTS.items()}
value = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, -0.0, 1e300, -1e300]))


def test_both_forests_take_the_complete_layout_and_the_unbalanced_one_is_padded():
    assert all(isinstance(f.table, TreeTable) and f.table.complete is not None for f in FAST.values())
    unbalanced = FAST["unbalanced, depth up to 6"].table
    depths = [int(i[0].nodes["depth"].max()) for i in FORESTS["unbalanced, depth up to 6"].pipeline[-1]._predictors]
    assert unbalanced.depth == max(depths) > min(depths)  # trees of several depths share the layout
    assert not unbalanced.complete.on_feature[1 + NAMES.index("constant")].any()  # dropped: no split tests it


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(FORESTS)), values=st.lists(value, min_size=5, max_size=5), on_split=st.booleans())
def test_probe_scores_are_the_pipelines_predict_proba_of_the_probe_rows(kind, values, on_split):
    fast, plain = FAST[kind], FORESTS[kind]
    x = np.array([np.nan if v is None else v for v in values], dtype=float)
    if on_split:  # exactly on a threshold of the first tree's root: `<=` goes left
        root = plain.pipeline[-1]._predictors[0][0].nodes[0]
        x[fast.table.keep[root["feature_idx"]]] = root["num_threshold"]
    rows = probe_rows(x, fast.reference_row)
    expected = plain.pipeline.predict_proba(pd.DataFrame(rows, columns=list(NAMES)))[:, 1]
    assert np.array_equal(fast.table.probes(x, fast.reference_row), expected)
    row = dict(zip(NAMES, values))
    assert fast.explain(row, 3) == plain.explain(row, 3)  # score and reason codes alike
    assert fast.explain_many([row, row], 2) == plain.explain_many([row, row], 2)
