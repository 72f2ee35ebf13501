"""Proof on generated worlds: every injected discrepancy is found from the files and
events alone and classified correctly (precision = recall = 1.0 per category), a clean
world gives no variance, and a batch over a date range gives exactly the variances the
whole run gives for that range."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from clearline.pipelines.cli.recon import load_inputs, run_batch
from clearline.pipelines.world.discrepancies import CATEGORIES, STATEMENT_KINDS, TRUTH_SCHEMA
from clearline.recon.matching.reconcile import input_watermark, reconcile
from clearline.recon.matching.variance import SCHEMA
from clearline.recon.score import misses, score


@pytest.fixture(scope="module")
def small_run(small_world):
    world, _ = small_world
    result, variances = run_batch(world, None, None, None, None)
    return world, result, variances


def test_every_injected_discrepancy_is_found_and_classified(small_run):
    world, _, variances = small_run
    truth = pl.read_csv(world / "truth" / "discrepancies.csv", schema=TRUTH_SCHEMA)
    scores = {s.category: s for s in score(truth, variances)}
    assert set(CATEGORIES) <= set(scores)
    missed, extra = misses(truth, variances)
    assert missed.is_empty() and extra.is_empty(), (missed.to_dicts(), extra.to_dicts())
    for category, s in scores.items():
        # a category the generator does not inject (a copy sent twice, say) must not be found either
        assert s.injected > 0 if category in CATEGORIES else s.found == 0, s
        assert (s.precision, s.recall) == (1.0, 1.0), s


def test_every_variance_carries_its_amount_text_and_evidence(small_run):
    _, result, variances = small_run
    assert variances.schema == pl.Schema(SCHEMA)
    assert variances["variance_id"].is_unique().all()
    assert (variances["amount_minor"] >= 0).all()
    assert (
        variances["age_days"] == (pl.Series([result.as_of] * variances.height) - variances["since"]).dt.total_days()
    ).all()
    bank_level = ["payout_not_in_bank", "unexplained_bank_line", *STATEMENT_KINDS]
    line_level = variances.filter(~pl.col("category").is_in(bank_level))
    assert line_level["merchant_id"].str.starts_with("m_").all()
    assert (line_level["evidence"].list.len() + line_level["ledger_event_ids"].list.len() >= 1).all()
    evidence = variances["evidence"].explode(empty_as_null=False).drop_nulls()
    # a file and line, (a balance mismatch's) an open variance that explains it, or (an
    # unclassified processor line's) the raw row, JSON as the report gives it
    assert evidence.str.contains(r"\.(csv|bai|xml|sta):\d+$|^var_[0-9a-f]{20}$|^[\[{].*[\]}]$").all()
    raw = variances.filter(pl.col("category") == "unclassified_processor_line")["evidence"].list.get(1)
    assert not raw.is_empty() and all(json.loads(r) for r in raw)
    explained = variances.filter(pl.col("category") == "bank_balance_mismatch")["evidence"].explode()
    assert set(explained.filter(explained.str.starts_with("var_"))) <= set(variances["variance_id"])
    fee = variances.filter(pl.col("category") == "fee_mismatch").row(0, named=True)
    assert fee["expected"].endswith(fee["currency"]) and fee["actual"].endswith(fee["currency"])


def test_a_clean_world_gives_no_variance(clean_world):
    world, _ = clean_world
    result, variances = run_batch(world, None, None, None, None)
    assert variances.is_empty(), variances.to_dicts()[:5]
    # what the world's last days have not settled yet is pending, not a break
    assert (result.pending["due_on"] > result.as_of).all()


def test_a_date_range_gives_exactly_the_variances_of_that_range(small_run):
    world, _, full = small_run
    start, end = date(2026, 2, 1), date(2026, 3, 15)
    _, ranged = run_batch(world, None, None, start, end)
    want = full.filter(pl.col("since").is_between(start, end))
    assert 0 < ranged.height < full.height
    assert ranged.equals(want)


def test_a_rerun_over_the_same_inputs_gives_the_same_variances(small_run, small_world):
    world, first, variances = small_run
    inputs, latest = load_inputs(world, None, None)
    from clearline.pipelines.cli.recon import tolerances

    again = reconcile(inputs, tolerances(), input_watermark(inputs, latest))
    assert again.as_of == first.as_of
    assert again.variances.equals(variances)
