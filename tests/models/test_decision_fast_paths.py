"""The decision's fast paths give exactly the numbers of the plain ones: the trees' probe
scores (`TreeTable.probes`, the request and each feature at its reference) equal the
fitted scikit-learn pipeline's `predict_proba` on the same probe rows, for balanced and
unbalanced forests, with a constant column the pipeline drops, missing values and values
exactly on a split; a request's feature values are read and recorded as their
definitions say; a stored value remembered by its bytes is what Feast reads from them."""

from __future__ import annotations

import math
import numbers
from decimal import Decimal

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.models.decision import _plain, usable_features
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


# --------------------------------------------------------------------------- a request's feature values

_ABSENT = object()


def _usable_as_defined(features, wanted):
    """`usable_features` before its fast paths for plain floats and ints: the definition."""
    values, missing = {}, []
    for name in wanted:
        raw = (features or {}).get(name, _ABSENT)
        if raw is _ABSENT or isinstance(raw, (bool, str, bytes)):
            missing.append(name)
            continue
        try:
            number = None if raw is None else float(raw)
        except (TypeError, ValueError):
            missing.append(name)
            continue
        if number is not None and math.isinf(number):
            missing.append(name)
            continue
        values[name] = None if number is None or math.isnan(number) else number
    return values, tuple(missing)


def _plain_as_defined(value):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        return None if math.isnan(value) else float(value)
    return str(value)


raw_value = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),  # NaN and both infinities too
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False).map(np.float64),
    st.integers(-1000, 1000).map(np.int64),
    st.text(max_size=3),
    st.sampled_from([Decimal("1.5"), Decimal("NaN"), b"1"]),
)


@settings(max_examples=300, deadline=None)
@given(features=st.dictionaries(st.sampled_from("abcdef"), raw_value), wanted=st.permutations("abcdefg"))
def test_a_requests_values_are_read_and_recorded_as_defined(features, wanted):
    values, missing = usable_features(features, tuple(wanted))
    expected_values, expected_missing = _usable_as_defined(features, tuple(wanted))
    assert missing == expected_missing and values == expected_values
    assert all(type(v) is float for v in values.values() if v is not None)
    for v in features.values():
        got, expected = _plain(v), _plain_as_defined(v)
        assert got == expected or got is expected is None or math.isnan(got) and math.isnan(expected)
        assert type(got) is type(expected)


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.floats(allow_nan=False).map(lambda v: ("double_val", v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: ("int64_val", v)),
        st.text(max_size=8).map(lambda v: ("string_val", v)),
        st.booleans().map(lambda v: ("bool_val", v)),
    )
)
def test_a_stored_value_remembered_by_its_bytes_is_what_feast_reads_from_them(value):
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    from clearline.features.online_read import python_value

    kind, v = value
    blob = Value(**{kind: v}).SerializeToString()
    expected = feast_value_type_to_python_type(Value.FromString(blob))
    for _ in range(2):  # parsed, then remembered
        got = python_value(blob)
        assert got == expected and type(got) is type(expected)
