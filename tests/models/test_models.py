"""Labels, the point-in-time training set, reason codes, and — on a generated world with a
real MLflow store in a temporary folder — training, the oracle-AUC check, the registry's
aliases, loading the champion to decide, and the `clearline train` / `models` commands."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline import config
from clearline.features.batch import MODEL_FEATURES, order_features, read_events
from clearline.models import labels, training_set
from clearline.models.decision import UnderwritingRequest, decide
from clearline.models.policy import Policy
from clearline.models.reasons import explain
from clearline.models.train import fit_all, frame
from clearline.models.training_set import TrainingSetError
from clearline.pipelines.world.generate import WorldOptions, generate

UTC = timezone.utc
CFG = config.load("models")
WINDOW = labels.outcome_window_days(CFG)


def _t(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, 1, hour, tzinfo=UTC) + timedelta(days=day)


def _facts(rows: list[dict]) -> pl.DataFrame:
    cols = {
        "event_type": pl.String,
        "occurred_at": pl.Datetime("us", "UTC"),
        "order_id": pl.String,
        "payment_method": pl.String,
        "terms_days": pl.Int64,
        "due_date": pl.Date,
    }
    return pl.DataFrame([{k: r.get(k) for k in cols} for r in rows], schema=cols)


def _order(order_id: str, day: int, terms: int = 30, method: str = "terms", due: bool = True) -> dict:
    return {
        "event_type": "order.created",
        "occurred_at": _t(day),
        "order_id": order_id,
        "payment_method": method,
        "terms_days": terms,
        "due_date": (_t(day) + timedelta(days=terms)).date() if due else None,
    }


# ---------------------------------------------------------------------------- labels


def test_a_default_counts_only_inside_the_window_after_the_due_date():
    facts = _facts(
        [
            _order("inside", 0),
            _order("late_default", 0),
            _order("repaid", 0),
            _order("card", 0, method="card"),
            _order("no_due", 0, terms=60, due=False),
            {"event_type": "buyer.default", "occurred_at": _t(30 + 60), "order_id": "inside"},
            {"event_type": "buyer.default", "occurred_at": _t(30 + WINDOW + 1), "order_id": "late_default"},
            {"event_type": "buyer.repayment", "occurred_at": _t(31), "order_id": "repaid"},
        ]
    )
    out = {r["order_id"]: r for r in labels.outcomes(facts, WINDOW).iter_rows(named=True)}
    assert set(out) == {"inside", "late_default", "repaid", "no_due"}  # card orders are no underwriting
    assert out["inside"]["defaulted"] and not out["late_default"]["defaulted"] and not out["repaid"]["defaulted"]
    assert out["late_default"]["default_at"] is not None
    assert out["no_due"]["due_date"] == date(2026, 3, 2)  # created + terms_days
    assert out["inside"]["matures_at"] == datetime(2026, 1, 31, tzinfo=UTC) + timedelta(days=WINDOW)


def test_only_matured_labels_are_kept():
    frame = labels.outcomes(_facts([_order("early", 0), _order("recent", 100)]), WINDOW)
    cutoff = datetime(2026, 1, 31, tzinfo=UTC) + timedelta(days=WINDOW)
    assert labels.matured(frame, cutoff)["order_id"].to_list() == ["early"]


@pytest.mark.parametrize("value", [0, -3, "65", None])
def test_a_bad_outcome_window_is_named(value):
    with pytest.raises(labels.LabelError, match="outcome_window_days"):
        labels.outcome_window_days({"labels": {"outcome_window_days": value}})


# ---------------------------------------------------------------------------- training set


def _rows(n: int, bad_every: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"o{i:04d}" for i in range(n)]
    rows = pl.DataFrame(
        {
            "order_id": ids,
            "decision_time": [_t(i // 4, 8 + i % 4) for i in range(n)],
            "f": np.arange(n, dtype=float),
            "amount_minor": [1000] * n,
            "terms_days": [30] * n,
        }
    )
    lab = pl.DataFrame(
        {
            "order_id": ids,
            "matures_at": [_t(i // 4 + 95) for i in range(n)],
            "defaulted": [i % bad_every == 0 for i in range(n)],
        }
    )
    return rows, lab


def test_the_split_is_by_time_and_only_matured_orders_enter():
    rows, lab = _rows(400, 7)
    cutoff = _t(160)
    ts = training_set.build(rows, lab, ("f",), cutoff, {"evaluation_share": 0.25, "min_orders": 50, "min_defaults": 5})
    used = pl.concat([ts.train, ts.evaluation])
    assert used["matures_at"].max() <= cutoff and used.height == lab.filter(pl.col("matures_at") <= cutoff).height
    assert ts.train["decision_time"].max() < ts.split_time == ts.evaluation["decision_time"].min()
    assert set(ts.train["order_id"]).isdisjoint(ts.evaluation["order_id"])
    assert abs(ts.evaluation.height / used.height - 0.25) < 0.02
    assert ts.features == ("f", "amount_minor", "terms_days")


def test_too_little_history_is_a_clear_error():
    rows, lab = _rows(400, 7)
    with pytest.raises(TrainingSetError, match=r"only \d+ orders on terms with a matured outcome"):
        training_set.build(rows, lab, ("f",), _t(100), {"evaluation_share": 0.3, "min_orders": 50, "min_defaults": 5})
    rows, lab = _rows(400, 1000)
    with pytest.raises(TrainingSetError, match="hold only one outcome"):
        training_set.build(rows, lab, ("f",), _t(200), {"evaluation_share": 0.3, "min_orders": 50, "min_defaults": 1})


def test_both_models_fit_a_short_history_with_empty_and_constant_features():
    rows, lab = _rows(400, 7)
    rows = rows.with_columns(never=pl.lit(None, pl.Float64), same=pl.lit(3.0))
    ts = training_set.build(
        rows, lab, ("f", "never", "same"), _t(200), {"evaluation_share": 0.3, "min_orders": 50, "min_defaults": 5}
    )
    trained = fit_all(ts, CFG["models"], None, threads=1)
    assert {m.key for m in trained} == {"scorecard", "gbm"}
    assert all(0.0 <= m.auc <= 1.0 and "oracle_auc" not in m.metrics for m in trained)
    assert trained[0].reference["never"] == 0.0 and trained[0].reference["same"] == 3.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.booleans(), st.integers(0, 200)), min_size=1, max_size=60),
    st.integers(100, 500),
    st.floats(0.05, 0.95),
)
def test_split_properties(orders, cutoff_day, share):
    """Any history: only matured orders, nothing on both sides, every training order
    decided before every evaluation order."""
    ids = [f"o{i:03d}" for i in range(len(orders))]
    rows = pl.DataFrame(
        {
            "order_id": ids,
            "decision_time": [_t(d, 8 + i % 9) for i, (d, _, _) in enumerate(orders)],
            "f": [float(i) for i in range(len(orders))],
        }
    )
    lab = pl.DataFrame(
        {"order_id": ids, "defaulted": [b for _, b, _ in orders], "matures_at": [_t(d + lag) for d, _, lag in orders]}
    )
    cutoff = _t(cutoff_day)
    try:
        ts = training_set.build(
            rows, lab, ("f",), cutoff, {"evaluation_share": share, "min_orders": 2, "min_defaults": 1}
        )
    except TrainingSetError:
        return
    eligible = (
        lab.filter(pl.col("matures_at") <= cutoff).join(rows, on="order_id").filter(pl.col("decision_time") < cutoff)
    )
    assert sorted([*ts.train["order_id"], *ts.evaluation["order_id"]]) == sorted(eligible["order_id"])
    assert ts.train.height and ts.evaluation.height
    assert ts.train["decision_time"].max() < ts.evaluation["decision_time"].min() == ts.split_time


@given(st.integers(-5, 200), st.sampled_from([30, 60]))
def test_a_default_is_a_label_exactly_when_it_falls_inside_the_window(days_after_due, terms):
    facts = _facts(
        [
            _order("o", 0, terms=terms),
            {"event_type": "buyer.default", "occurred_at": _t(terms + days_after_due, 0), "order_id": "o"},
        ]
    )
    row = labels.outcomes(facts, WINDOW).row(0, named=True)
    assert row["defaulted"] == (days_after_due <= WINDOW)


# ---------------------------------------------------------------------------- reason codes


def test_reason_codes_are_the_largest_moves_from_the_reference():
    weights = np.array([0.5, -2.0, 0.0, 1.0])
    calls = []

    def predict(rows: np.ndarray) -> np.ndarray:
        calls.append(rows.shape)
        return rows @ weights

    x, ref = np.array([3.0, 1.5, 9.0, 2.0]), np.array([1.0, 1.0, 1.0, 2.0])
    score, codes = explain(predict, ("a", "b", "c", "d"), x, ref, k=3)
    assert score == pytest.approx(x @ weights) and calls == [(5, 4)]  # one model call
    # a: +0.5*2 = +1.0, b: -2*0.5 = -1.0, c: weight 0, d: at its reference -> only a and b are reasons
    assert [(c.feature, round(c.delta, 6)) for c in codes] == [("a", 1.0), ("b", -1.0)]
    assert codes[0].value == 3.0 and codes[0].reference == 1.0


# ---------------------------------------------------------------------------- a generated world

WORLD = WorldOptions(days=540, merchants=10, seed=3, discrepancy_rate=0.0)  # smallest that trains reliably


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models-world")
    generate(WORLD, out)
    return out


@pytest.fixture(scope="module")
def built(world):
    facts = read_events(world)
    ts = training_set.build(
        order_features(facts),
        labels.outcomes(facts, WINDOW),
        tuple(MODEL_FEATURES),
        facts["occurred_at"].max(),
        CFG["training_set"],
    )
    truth = pl.read_parquet(world / "truth" / "orders.parquet")
    return ts, truth, fit_all(ts, CFG["models"], truth, threads=1)


@pytest.mark.slow
def test_labels_from_events_agree_with_the_generators_truth(built):
    ts, truth, _ = built
    used = pl.concat([ts.train, ts.evaluation]).join(
        truth.select("order_id", "defaulted", "payment_method"), on="order_id", suffix="_truth"
    )
    assert used.height == ts.train.height + ts.evaluation.height and (used["payment_method"] == "terms").all()
    assert (used["defaulted"] == used["defaulted_truth"]).all()
    assert used["matures_at"].max() <= ts.cutoff


@pytest.mark.slow
def test_the_champion_reaches_95_percent_of_the_oracle_auc_on_later_orders(built):
    ts, truth, trained = built
    assert {m.key for m in trained} == {"scorecard", "gbm"}
    assert ts.evaluation.height > 1500 and ts.evaluation["defaulted"].sum() > 100
    oracle = trained[0].metrics["oracle_auc"]
    assert 0.7 < oracle < 0.95
    best = max(trained, key=lambda m: m.auc)
    assert best.auc >= 0.95 * oracle, {m.key: m.metrics for m in trained}
    assert all(m.metrics["oracle_auc"] == oracle and 0 < m.metrics["brier"] < 0.25 for m in trained)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite database with its tables made once (the schema migration takes
    seconds); each test copies it."""
    from clearline.models.registry import Registry, RegistrySettings

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    Registry(RegistrySettings(f"sqlite:///{db}", None, "template")).versions()
    return db


@pytest.fixture
def store(empty_store, tmp_path, monkeypatch) -> str:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.mark.slow
def test_registry_logs_registers_promotes_and_loads_the_champion(built, store, tmp_path):
    from clearline.models.registry import Registry, RegistryError, RegistrySettings

    ts, _, trained = built
    registry = Registry(RegistrySettings.from_config(CFG, tmp_path))
    assert registry.settings.artifact_location == (tmp_path / "artifacts").as_uri()
    logged = {m.key: registry.log(m, ts, {"source": "test"}) for m in trained}
    sc, gb = logged["scorecard"], logged["gbm"]
    assert (sc.version, gb.version) == ("1", "1") and registry.holder("champion") is None
    run = registry.client.get_run(sc.run_id)
    assert run.data.metrics["auc"] == pytest.approx(trained[0].auc) and "oracle_auc" in run.data.metrics
    assert run.data.params["source"] == "test" and run.data.params["model.C"] == str(CFG["models"]["scorecard"]["C"])
    report = json.loads(
        Path(registry.client.download_artifacts(sc.run_id, "training_report.json", str(tmp_path))).read_text()
    )
    assert report["training_set"] == json.loads(json.dumps(ts.summary())) and report["features"] == list(ts.features)
    import mlflow

    info = mlflow.models.get_model_info(f"models:/{sc.name}/{sc.version}")
    assert info.signature.inputs.input_names() == list(ts.features) and info.saved_input_example_info is not None

    registry.promote(sc.name, sc.version, "champion")
    registry.promote(gb.name, gb.version, "challenger")
    registry.promote(gb.name, gb.version, "champion")  # moves across model names, and off the challenger
    assert registry.holder("champion").name == gb.name and registry.holder("challenger") is None
    assert [v.aliases for v in registry.versions() if v.name == sc.name] == [()]
    with pytest.raises(RegistryError, match="no version 7 of model 'clearline-gbm'.*its versions: 1"):
        registry.promote(gb.name, "7", "champion")
    with pytest.raises(RegistryError, match="no such registered model"):
        registry.promote("nope", "1", "champion")
    with pytest.raises(RegistryError, match="alias must be one of"):
        registry.promote(gb.name, "1", "king")

    champion = registry.load("champion", threads=1)
    assert champion.ref.name == gb.name and champion.features == ts.features
    from threadpoolctl import threadpool_info

    assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"} == {1}  # serving: one thread
    model = next(m for m in trained if m.key == "gbm")
    assert champion.reference == pytest.approx(model.reference)
    row = ts.evaluation.row(0, named=True)
    decision = decide(UnderwritingRequest.from_row(row), row, champion, None, Policy.from_config(config.load("policy")))
    expected = model.pipeline.predict_proba(frame(ts.evaluation.head(1), ts.features))[:, 1][0]
    assert decision.model == champion.ref and decision.score == pytest.approx(expected)
    assert decision.reason_codes and all(c.feature in ts.features for c in decision.reason_codes)


@pytest.mark.slow
def test_train_and_models_commands(world, store):
    from clearline.pipelines.cli import main

    runner = CliRunner()
    order = pl.read_parquet(world / "truth" / "orders.parquet").filter(pl.col("payment_method") == "terms")["order_id"][
        -1
    ]
    unready = runner.invoke(main, ["models", "decide", order, "--world", str(world)])
    assert unready.exit_code == 2 and "error: no champion" in unready.output
    first = runner.invoke(main, ["train", "--world", str(world), "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert {m["model"] for m in report["models"]} == {"scorecard", "gbm"}
    assert all(m["auc_ratio"] == pytest.approx(m["auc"] / m["oracle_auc"], abs=1e-3) for m in report["models"])
    best = max(report["models"], key=lambda m: m["auc"])
    assert report["aliases_set"]["champion"] == {"name": best["name"], "version": "1"}
    assert report["training_set"]["outcome_window_days"] == WINDOW and report["tracking_uri"] == store

    second = json.loads(runner.invoke(main, ["train", "--world", str(world), "--json"]).stdout)
    assert second["aliases_set"] == {} and "champion already exists" in second["note"]
    listed = json.loads(runner.invoke(main, ["models", "list", "--json"]).stdout)["versions"]
    assert sorted((v["name"], v["version"]) for v in listed) == sorted(
        (m["name"], v) for m in report["models"] for v in ("1", "2")
    )
    champion = [v for v in listed if "champion" in v["aliases"]]
    assert [(v["name"], v["version"]) for v in champion] == [(best["name"], "1")]

    other = next(m for m in report["models"] if m["name"] != best["name"])
    moved = runner.invoke(main, ["models", "promote", other["name"], "2", "--alias", "champion", "--json"])
    assert json.loads(moved.stdout)["previous"] == {"name": best["name"], "version": "1"}

    decided = runner.invoke(main, ["models", "decide", order, "--world", str(world), "--json"])
    record = json.loads(decided.stdout)
    assert record["order_id"] == order and record["model"] == {"name": other["name"], "version": "2"}
    assert record["challenger"]["model"] == {"name": other["name"], "version": "1"}  # set by the first train, kept
    assert record["decision"] in ("approve", "review", "decline") and record["reason_codes"]
    assert set(record["inputs"]) == set(MODEL_FEATURES) | {"amount_minor", "terms_days"}
    assert (
        "error: ord_nope: no order on terms"
        in runner.invoke(main, ["models", "decide", "ord_nope", "--world", str(world)]).output
    )

    unknown = runner.invoke(main, ["models", "promote", other["name"], "9", "--alias", "champion"])
    assert unknown.exit_code == 2 and "error: no version 9" in unknown.output and "Traceback" not in unknown.output
    missing = runner.invoke(main, ["train", "--world", str(world / "nope")])
    assert missing.exit_code == 2 and "not a generated world" in missing.output
    bad_cutoff = runner.invoke(main, ["train", "--world", str(world), "--cutoff", "last tuesday"])
    assert bad_cutoff.exit_code == 2 and "'last tuesday' is not an ISO 8601 timestamp" in bad_cutoff.output
    early = runner.invoke(main, ["train", "--world", str(world), "--cutoff", "2026-04-01"])
    assert early.exit_code == 2 and "error: only 0 orders on terms with a matured outcome" in early.output


def _archive(world: Path, state: Path) -> None:
    """The world's events as the ledger flow archives them: the archive's columns (the
    consumed bytes in `body`), one Parquet file per event date."""
    from clearline.ledger.archive import SCHEMA

    events = pl.read_parquet(world / "events" / "events.parquet")  # same order as events.jsonl
    frame = (
        events.with_columns(
            body=pl.Series((world / "events" / "events.jsonl").read_bytes().splitlines(), dtype=pl.Binary),
            topic=pl.lit("payments.events"),
            partition=pl.lit(0, pl.Int64),
            offset=pl.int_range(pl.len(), dtype=pl.Int64),
        )
        .select(list(SCHEMA))
        .cast(SCHEMA)
    )
    for (day,), part in frame.group_by(pl.col("occurred_at").dt.date()):
        folder = state / "archive" / f"event_date={day}"
        folder.mkdir(parents=True)
        part.write_parquet(folder / f"s0-p0-o{part['offset'].min():012d}-o{part['offset'].max():012d}.parquet")


@pytest.mark.slow
def test_train_reads_the_ledger_archive_by_default(world, store, tmp_path):
    from clearline.pipelines.cli import main

    runner = CliRunner()
    state = tmp_path / "ledger"
    nothing = runner.invoke(main, ["train", "--state-dir", str(state)])
    assert nothing.exit_code == 2 and "no event archive at" in nothing.output
    _archive(world, state)
    result = runner.invoke(main, ["train", "--state-dir", str(state), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source"] == str(state / "archive")
    assert all("oracle_auc" not in m and 0.7 < m["auc"] < 1.0 for m in report["models"])  # an archive has no truth
    assert set(report["aliases_set"]) == {"champion", "challenger"}
    both = runner.invoke(main, ["train", "--world", str(world), "--state-dir", str(state)])
    assert both.exit_code == 2 and "two different sources" in both.output


@pytest.mark.slow
def test_a_tracking_server_that_does_not_answer_is_an_error_line(monkeypatch):
    from clearline.pipelines.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    result = CliRunner().invoke(main, ["models", "list"])
    assert result.exit_code == 2 and "error: API request to http://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output
