"""Backtests: the metrics against their definitions (Hypothesis and worked examples), and
on a generated world — a real run, the leakage checks firing on planted look-ahead
features and staying quiet otherwise, and `clearline backtest` with a real MLflow store."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from clearline import config
from clearline.features.batch import MODEL_FEATURES, feature_history, order_features, read_events
from clearline.features.feast_repo import feature_names
from clearline.features.store import latest_rows
from clearline.models import backtest as bt
from clearline.models import labels, pit, training_set
from clearline.models.backtest_report import render
from clearline.models.backtest_run import Settings, run
from clearline.models.scorer import ModelRef, Scorer
from clearline.models.train import fit_all
from clearline.pipelines.world.generate import WorldOptions, generate

UTC = timezone.utc
CFG = config.load("models")
WINDOW = labels.outcome_window_days(CFG)
SETTINGS = Settings.from_config(config.load("backtest"), config.load("policy"), WINDOW)

outcomes_and_scores = (
    st.lists(st.tuples(st.booleans(), st.sampled_from([0.01, 0.05, 0.1, 0.2, 0.5, 0.9])), min_size=2, max_size=80)
    .filter(lambda r: len({y for y, _ in r}) == 2)
    .map(lambda rows: (np.array([int(b) for b, _ in rows]), np.array([v for _, v in rows])))
)


# ---------------------------------------------------------------------------- metrics


@settings(max_examples=200, deadline=None)
@given(outcomes_and_scores)
def test_ks_gini_and_auc_follow_their_definitions(case):
    y, s = case
    got = bt.ranking(y, s)
    assert got["gini"] == pytest.approx(2 * roc_auc_score(y, s) - 1)
    brute = max(abs((s[y == 1] <= t).mean() - (s[y == 0] <= t).mean()) for t in set(s))
    assert got["ks"] == pytest.approx(brute)


@settings(max_examples=200, deadline=None)
@given(outcomes_and_scores)
def test_calibration_deciles_cover_every_order_and_never_split_a_score(case):
    y, s = case
    table = bt.calibration(y, s)
    assert table["orders"].sum() == len(y)
    assert (table["decile"].is_between(1, 10)).all() and table["decile"].is_sorted()
    # deciles are ordered by score and a score value sits in exactly one decile
    assert (table["max_score"].head(-1) < table["min_score"].tail(-1)).all()
    assert (table["default_rate"] * table["orders"]).sum() == pytest.approx(y.sum())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=60),
    st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=60),
)
def test_psi_is_zero_for_the_same_population_and_never_negative(a, b):
    assert bt.psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert bt.psi(a, b) >= -1e-12


def test_psi_of_a_shifted_population_reads_as_a_shift_and_missing_values_count():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 5000)
    assert bt.psi(base, rng.normal(0, 1, 5000)) < 0.1
    assert bt.psi(base, rng.normal(1, 1, 5000)) > 0.25
    half_missing = [None if i % 2 else v for i, v in enumerate(base)]
    assert bt.psi(base, half_missing) > 0.25  # the missing bin, empty in training, gets epsilon not zero
    with pytest.raises(bt.BacktestError, match="both sides"):
        bt.psi([], base)


def test_cutoffs_expected_loss_and_vintages_by_hand():
    y, s = np.array([0, 1, 0, 1]), np.array([0.01, 0.03, 0.05, 0.5])
    cuts = bt.cutoff_table(y, s, [0.02, 0.07, 0.02]).to_dicts()
    assert [(c["cutoff"], c["approved"], c["bad_rate"]) for c in cuts] == [(0.02, 1, 0.0), (0.07, 3, 1 / 3)]
    assert bt.cutoff_table(y, s, [0.001]).row(0, named=True)["bad_rate"] is None

    rows = pl.DataFrame(
        {
            "score": [0.1, 0.5, 0.2],
            "amount_minor": [100_00, 10_00, 333],
            "currency": ["EUR", "EUR", "JPY"],
            "defaulted": [False, True, True],
        }
    )
    loss = {r["currency"]: r for r in bt.expected_loss(rows, 0.5).to_dicts()}
    assert loss["EUR"]["expected_loss_minor"] == 5_00 + 2_50 and loss["EUR"]["realised_loss_minor"] == 5_00
    assert loss["JPY"]["expected_loss_minor"] == 33 and loss["JPY"]["exposure_minor"] == 333  # 33.3 rounds once
    assert all(isinstance(v, int) for r in loss.values() for k, v in r.items() if k.endswith("_minor"))
    with pytest.raises(bt.BacktestError, match="lgd"):
        bt.expected_loss(rows, 1.5)

    t = lambda m, d: datetime(2026, m, d, tzinfo=UTC)  # noqa: E731
    orders = pl.DataFrame(
        {"decision_time": [t(1, 5), t(1, 20), t(1, 31), t(2, 1)], "default_at": [t(3, 2), None, t(4, 30), None]}
    )
    curve = bt.vintages(orders, t(4, 15))
    jan = {
        r["months_since"]: r["cumulative_default_rate"] for r in curve.filter(pl.col("cohort") == "2026-01").to_dicts()
    }
    assert jan == {0: 0.0, 1: 0.0, 2: 1 / 3, 3: 2 / 3}  # the April write-off shows from month 3
    assert curve.filter(pl.col("cohort") == "2026-02")["months_since"].to_list() == [0, 1, 2]


def test_the_recommendation_says_why_in_plain_words():
    def metrics(auc, approval, bad):
        return {"auc": auc, "cutoffs": [{"cutoff": 0.07, "approval_rate": approval, "bad_rate": bad}]}

    verdict, text = bt.compare(metrics(0.78, 0.50, 0.030), metrics(0.801, 0.502, 0.026), 0.07)
    assert verdict == "promote" and text == (
        "promote the challenger: AUC +0.021, same approval rate, bad rate −0.4 pt (at the approve cut-off 0.07)"
    )
    assert bt.compare(metrics(0.78, 0.5, 0.03), metrics(0.77, 0.5, 0.03), 0.07)[0] == "keep"
    verdict, text = bt.compare(metrics(0.78, 0.5, 0.03), metrics(0.79, 0.6, 0.04), 0.07)
    assert verdict == "keep" and "approval rate +10.0 pt, bad rate +1.0 pt" in text


# ---------------------------------------------------------------------------- on a generated world

CUT = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2027, 3, 1, tzinfo=UTC)


def _leaky(facts: pl.DataFrame) -> pl.DataFrame:
    """The batch features plus two planted look-aheads: the buyer's write-offs over the
    whole history (computed including events after the decision) and the order's own
    eventual write-off."""
    rows = order_features(facts)
    defaults = facts.filter(pl.col("event_type") == "buyer.default")
    per_buyer = defaults.group_by("buyer_id").agg(pl.len().cast(pl.Int64).alias("buyer_defaults_ever"))
    own = defaults.select("order_id", pl.lit(1, pl.Int64).alias("order_written_off")).unique("order_id")
    return (
        rows.join(per_buyer, on="buyer_id", how="left")
        .join(own, on="order_id", how="left")
        .with_columns(pl.col("buyer_defaults_ever", "order_written_off").fill_null(0))
    )


def _scorer(facts, featurize, extra: tuple[str, ...] = ()) -> tuple[Scorer, training_set.TrainingSet]:
    ts = training_set.build(
        featurize(facts), labels.outcomes(facts, WINDOW), (*MODEL_FEATURES, *extra), CUT, CFG["training_set"]
    )
    model = fit_all(ts, {"scorecard": CFG["models"]["scorecard"]}, None, threads=1)[0]
    return Scorer(ModelRef(model.registered_name, "1"), model.pipeline, model.features, model.reference), ts


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("backtest-world")
    generate(WorldOptions(days=540, merchants=10, seed=3, discrepancy_rate=0.0), out)  # trains reliably (test_models)
    return out


@pytest.fixture(scope="module")
def facts(world) -> pl.DataFrame:
    return read_events(world)


@pytest.fixture(scope="module")
def truth(world) -> pl.DataFrame:
    return pl.read_parquet(world / "truth" / "orders.parquet")


@pytest.fixture(scope="module")
def honest(facts, truth):
    scorer, ts = _scorer(facts, order_features)
    return scorer, run(
        facts, {"champion": scorer}, CUT, END, SETTINGS, (ts.train["decision_time"].min(), ts.split_time), truth
    )


@pytest.mark.slow
def test_a_backtest_scores_matured_orders_of_the_window_and_finds_no_leak(honest, facts):
    _, result = honest
    s = result.summary
    assert s["orders"]["matured"] + s["orders"]["not_matured_excluded"] == s["orders"]["in_window"]
    assert (
        s["orders"]["matured"] > 1000 and s["orders"]["not_matured_excluded"] > 0
    )  # the window runs into young orders
    m = s["models"]["champion"]
    assert 0.5 < m["auc"] <= m["oracle_auc"] + SETTINGS.oracle_margin and m["gini"] == pytest.approx(2 * m["auc"] - 1)
    assert sum(c["orders"] for c in m["calibration"]) == s["orders"]["matured"]
    rates = [c["approval_rate"] for c in m["cutoffs"]]
    assert rates == sorted(rates) and [c["cutoff"] for c in m["cutoffs"]] == list(SETTINGS.cutoffs)
    assert sum(e["orders"] for e in m["expected_loss"]) == s["orders"]["matured"]
    assert set(m["psi"]["features"]) == set(honest[0].features) and m["psi"]["score"] >= 0
    for _, curve in result.tables["vintages"].group_by("cohort"):
        assert curve.sort("months_since")["cumulative_default_rate"].is_sorted()
    assert s["leakage_checks"]["passed"], s["leakage_checks"]
    assert {c["name"] for c in s["leakage_checks"]["checks"]} == {"replay", "feature_auc", "oracle", "feature_time"}
    assert s["leakage_checks"]["checks"][0]["orders_replayed"] == SETTINGS.replay_orders


@pytest.mark.slow
def test_planted_look_ahead_features_are_caught(facts, truth):
    scorer, ts = _scorer(facts, _leaky, ("buyer_defaults_ever", "order_written_off"))
    result = run(
        facts,
        {"champion": scorer},
        CUT,
        END,
        SETTINGS,
        (ts.train["decision_time"].min(), ts.split_time),
        truth,
        featurize=_leaky,
    )
    checks = {c["name"]: c for c in result.summary["leakage_checks"]["checks"]}
    assert not result.summary["leakage_checks"]["passed"]
    # replay: only the planted features change when recomputed from the events known at decision time
    assert set(checks["replay"]["features_that_saw_the_future"]) == {"buyer_defaults_ever", "order_written_off"}
    assert set(checks["feature_auc"]["too_good"]) == {"order_written_off"}
    assert not checks["oracle"]["passed"] and checks["oracle"]["above"]["champion"] > checks["oracle"]["oracle_auc"]
    html = render(result.summary)
    assert "FAILED" in html and "order_written_off" in html


def _buyer_features_from_history(point_in_time: bool):
    """Features as a training set built from stored feature rows gets them: the buyer's
    rows (as pushed to the Feast offline history) joined to each decision — by the
    point-in-time join, or naively by taking each buyer's newest row."""

    def featurize(facts: pl.DataFrame) -> pl.DataFrame:
        rows = order_features(facts)
        history = feature_history(rows, "buyer")
        decisions = rows.drop(feature_names("buyer"))
        if point_in_time:
            return pit.join(decisions, history, "buyer_id", feature_names("buyer"), at="decision_time")
        newest = latest_rows(history, "buyer").select(
            "buyer_id", *feature_names("buyer"), pl.col("created").alias(pit.AVAILABLE)
        )
        return decisions.join(newest, on="buyer_id", how="left")

    return featurize


@pytest.mark.slow
def test_feature_rows_known_after_the_decision_are_caught(honest, facts, truth):
    scorer, _ = honest
    checks = {}
    for point_in_time in (True, False):
        result = run(
            facts,
            {"champion": scorer},
            CUT,
            END,
            SETTINGS,
            truth=truth,
            featurize=_buyer_features_from_history(point_in_time),
        )
        checks[point_in_time] = {c["name"]: c for c in result.summary["leakage_checks"]["checks"]}
    assert checks[True]["feature_time"]["checked"] and checks[True]["feature_time"]["passed"]
    assert checks[True]["replay"]["passed"]  # the PIT join gives exactly the batch runtime's values
    naive = checks[False]
    assert not naive["feature_time"]["passed"] and naive["feature_time"]["rows_known_after_decision"] > 0
    assert "known only after the decision" in naive["feature_time"]["detail"]
    assert not naive["replay"]["passed"]
    assert set(naive["replay"]["features_that_saw_the_future"]) <= set(feature_names("buyer"))


@pytest.mark.slow
def test_a_window_without_matured_outcomes_is_a_clear_error(honest, facts):
    scorer, _ = honest
    late = facts["occurred_at"].max() - timedelta(days=20)
    with pytest.raises(bt.BacktestError, match="no order on terms decided between .* has a matured outcome"):
        run(facts, {"champion": scorer}, late, late + timedelta(days=10), SETTINGS)
    with pytest.raises(bt.BacktestError, match="is not before"):
        run(facts, {"champion": scorer}, END, CUT, SETTINGS)


# ---------------------------------------------------------------------------- the command


@pytest.fixture
def registry(tmp_path, monkeypatch, honest, facts):
    """A real MLflow store in tmp with the scorecard (champion) and gbm (challenger) logged."""
    from clearline.models.registry import Registry, RegistrySettings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry = Registry(RegistrySettings.from_config(CFG, tmp_path))
    ts = training_set.build(
        order_features(facts), labels.outcomes(facts, WINDOW), tuple(MODEL_FEATURES), CUT, CFG["training_set"]
    )
    for model, alias in zip(fit_all(ts, CFG["models"], None, threads=1), ("champion", "challenger")):
        version = registry.log(model, ts, {"source": "test"})
        registry.promote(version.name, version.version, alias)
    return registry


@pytest.mark.slow
def test_backtest_command_logs_a_run_and_writes_a_self_contained_page(world, registry, tmp_path):
    from clearline.pipelines.cli import main

    runner = CliRunner()
    out = tmp_path / "report"
    args = [
        "backtest",
        "--model",
        "clearline-scorecard@champion",
        "--challenger",
        "clearline-gbm@challenger",
        "--from",
        CUT.date().isoformat(),
        "--to",
        END.date().isoformat(),
        "--world",
        str(world),
        "--out",
        str(out),
    ]
    done = runner.invoke(main, [*args, "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert set(report["models"]) == {"champion", "challenger"} and report["recommendation"]["verdict"] in (
        "promote",
        "keep",
    )
    assert (
        report["training_window"]["to"]
        == registry.client.get_run(registry.client.get_model_version("clearline-scorecard", "1").run_id).data.params[
            "split_time"
        ]
    )
    page = (out / "backtest.html").read_text()
    assert page.count("<svg") >= 5 and "http://" not in page and "https://" not in page and "<script src" not in page
    assert report["recommendation"]["text"] in page
    assert {p.name for p in out.glob("*.csv")} >= {"champion_calibration.csv", "challenger_cutoffs.csv", "vintages.csv"}
    logged = registry.client.get_run(report["mlflow_run_id"])
    assert logged.data.metrics["champion_auc"] == pytest.approx(report["models"]["champion"]["auc"])
    assert logged.data.metrics["leakage_checks_passed"] == 1.0
    artifacts = {a.path for a in registry.client.list_artifacts(report["mlflow_run_id"], "report")}
    assert "report/backtest.html" in artifacts and "report/vintages.csv" in artifacts

    people = runner.invoke(main, args)
    assert people.exit_code == 0 and "leakage checks passed" in people.output and "the champion" in people.output

    wrong = runner.invoke(main, [*args[:2], "clearline-gbm@champion", *args[3:]])
    assert (
        wrong.exit_code == 2 and "error: clearline-gbm@champion: clearline-scorecard v1 holds the alias" in wrong.output
    )
    bad_spec = runner.invoke(main, [*args[:2], "clearline-scorecard", *args[3:]])
    assert bad_spec.exit_code == 2 and "expected NAME@ALIAS" in bad_spec.output
    bad_date = runner.invoke(main, [*args[:6], "last tuesday", *args[7:]])
    assert bad_date.exit_code == 2 and "not an ISO 8601" in bad_date.output
    young = runner.invoke(main, [*args[:6], "2027-06-01", "--to", "2027-07-01", *args[9:]])
    assert young.exit_code == 2 and "error: no order on terms decided" in young.output
    no_archive = runner.invoke(main, [*args[:9], "--state-dir", str(tmp_path / "ledger"), *args[11:]])
    assert no_archive.exit_code == 2 and "no event archive at" in no_archive.output  # the default input: the archive
    shutil.rmtree(out)
