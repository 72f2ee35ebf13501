"""The decision API's parts without a server: tenant keys, the merchant directory, the
features a request gets from online rows, the decision store, and the numpy scorer that
must give exactly the numbers of the DataFrame one."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from clearline import config
from clearline.config import ConfigError
from clearline.events import Money, contains_pan
from clearline.models.api import (
    MAX_AMOUNT_MINOR,
    ApiLimits,
    DecisionRequest,
    nests_deeper,
    request_hash,
    same_request,
)
from clearline.models.api_core import ApiKeys, ApiSetupError, MerchantDirectory, key_env, key_hash, request_features
from clearline.models.api_store import DecisionStore
from clearline.models.fast_scoring import ArrayScorer, LinearTable, TreeTable, positive_class
from clearline.models.scorer import ModelRef, Scorer
from clearline.models.train import gbm, scorecard


def test_the_dev_keys_behind_configs_hashes_name_their_tenant():
    keys = ApiKeys.from_config(config.load("tenants"), environ={})
    assert {t: keys.tenant_of(f"dev-api-key-{t}") for t in ("rs_001", "rs_002", "rs_003")} == {
        "rs_001": "rs_001",
        "rs_002": "rs_002",
        "rs_003": "rs_003",
    }
    assert "platform" not in keys.hashes  # no key: it cannot call the API
    for wrong in (None, "", "dev-api-key-rs_00", "dev-api-key-rs_001 ", "DEV-API-KEY-RS_001"):
        assert keys.tenant_of(wrong) is None


def test_the_environment_replaces_a_tenants_dev_key():
    keys = ApiKeys.from_config(config.load("tenants"), environ={key_env("rs_002"): "prod-secret"})
    assert key_env("rs_002") == "CLEARLINE_API_KEY_RS_002"
    assert keys.tenant_of("prod-secret") == "rs_002" and keys.tenant_of("dev-api-key-rs_002") is None
    assert keys.hashes["rs_002"] == bytes.fromhex(key_hash("prod-secret"))


def test_a_malformed_hash_or_no_keys_at_all_stop_the_start():
    with pytest.raises(ApiSetupError, match="tenants.t1.api_key_sha256 is not 64 hex digits"):
        ApiKeys.from_config({"tenants": {"t1": {"api_key_sha256": "abc"}}}, environ={})
    with pytest.raises(ApiSetupError, match="no tenant has an API key"):
        ApiKeys.from_config({"tenants": {"t1": {"name": "x"}}}, environ={})


def test_a_merchant_under_two_tenants_is_refused(tmp_path):
    from clearline.pipelines.cli.serve import merchant_directory

    pl.DataFrame({"merchant_id": ["m1", "m2", "m1"], "reseller_id": ["r1", "r2", "r1"], "x": [1, 2, 3]}).write_parquet(
        tmp_path / "events.parquet"
    )
    assert merchant_directory(str(tmp_path / "*.parquet")).owners == {"m1": "r1", "m2": "r2"}
    with pytest.raises(ApiSetupError, match="merchant 'm1' is listed under two tenants"):
        MerchantDirectory.from_pairs([("m1", "r1"), ("m1", "r2")])
    with pytest.raises(ApiSetupError, match="merchant_id and reseller_id"):
        merchant_directory(str(tmp_path / "nothing.parquet"))


def test_request_features_drop_money_read_in_another_currency_and_treat_all_none_as_no_row():
    """And the merchant's z-score is this order's, from the row's tickets (1, 2, 6: mean 3,
    sample std sqrt(7)), not the previous order's value the row holds."""
    buyer = {
        "currency": "USD",
        "buyer_orders_1h": 2,
        "buyer_amount_1h": 5000,
        "buyer_exposure_minor": 10,
        "buyer_refund_rate": 0.1,
    }
    merchant = {
        "currency": "EUR",
        "merchant_orders_30d": 3,
        "merchant_volume_30d": 900,
        "merchant_avg_ticket_30d": 300,
        "merchant_ticket_zscore": 0.5,
        "merchant_refund_rate": None,
        "merchant_tickets_30d": 3,
        "merchant_ticket_sumsq_30d": str(100**2 + 200**2 + 600**2),
    }
    got = request_features({"buyer": buyer, "merchant": merchant}, Money(1000, "EUR"))
    assert got.pop("merchant_ticket_zscore") == pytest.approx((1000 - 300) / (100 * 7**0.5), rel=1e-12)
    assert got == {
        "buyer_orders_1h": 2,
        "buyer_refund_rate": 0.1,
        "merchant_orders_30d": 3,
        "merchant_volume_30d": 900,
        "merchant_avg_ticket_30d": 300,
        "merchant_refund_rate": None,
        "merchant_tickets_30d": 3,
        "merchant_ticket_sumsq_30d": 410000,
    }
    in_usd = request_features({"buyer": buyer, "merchant": merchant}, Money(1000, "USD"))
    assert set(in_usd) == {*buyer, "merchant_orders_30d", "merchant_refund_rate"} - {"currency"}
    unknown = {k: None for k in buyer}
    assert request_features({"buyer": unknown, "merchant": dict.fromkeys(merchant)}, Money(1, "EUR")) is None
    before_aggregates = merchant | {"merchant_tickets_30d": None, "merchant_ticket_sumsq_30d": None}
    assert request_features({"buyer": unknown, "merchant": before_aggregates}, Money(1000, "EUR")) == {
        k: None if k == "merchant_ticket_zscore" else v for k, v in before_aggregates.items() if k != "currency"
    }


def test_an_order_is_stored_once_and_survives_reopening(tmp_path):
    store = DecisionStore(tmp_path / "d.db")
    first = store.add("dec_1", "rs_001", "o1", "h1", {"decision": "approve"})
    racing = store.add("dec_2", "rs_001", "o1", "h2", {"decision": "decline"})  # a second worker, same order
    assert racing == first and store.by_id("dec_2") is None
    other_tenant = store.add("dec_3", "rs_002", "o1", "h1", {"decision": "review"})
    assert other_tenant.decision_id == "dec_3" and store.count() == 2
    store.close()
    again = DecisionStore(tmp_path / "d.db")
    assert again.by_order("rs_001", "o1") == first and again.by_id("dec_3").tenant == "rs_002"


def test_the_stores_checkpoints_copy_decisions_into_the_database_file_off_the_request_path(tmp_path):
    """Requests only append to the WAL (no checkpoint, and its fsync, on a request); the
    background checkpointer copies them into the database file itself, which a reader
    that ignores the WAL (immutable) then sees."""
    import sqlite3
    import time

    store = DecisionStore(tmp_path / "d.db", checkpoint_every_s=0.05)
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for i in range(50):
        store.add(f"dec_{i}", "rs_001", f"o{i}", "h", {"decision": "approve", "i": i})

    def in_file() -> int:
        db = sqlite3.connect(f"file:{tmp_path / 'd.db'}?immutable=1", uri=True)
        try:
            return db.execute("SELECT count(*) FROM decisions").fetchone()[0]
        except sqlite3.DatabaseError:  # no table yet, or a page the checkpointer is still writing
            return 0
        finally:
            db.close()

    deadline = time.monotonic() + 10
    while in_file() < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_file() == 50 and store.count() == 50
    store.close()
    assert not store._checkpointer.is_alive()


def _fitted(kind: str) -> Scorer:
    import pandas as pd

    rng = np.random.default_rng(3)
    names = ("a", "b_rate", "c_minor", "d")
    x = pd.DataFrame(rng.normal(size=(400, 4)) * [1, 0.2, 5000, 3], columns=list(names))
    x.loc[rng.random(400) < 0.2, "b_rate"] = np.nan
    y = (x["a"] + rng.normal(size=400) > 0.8).astype(int)
    params = {"C": 0.5, "max_iter": 500} if kind == "scorecard" else {"max_iter": 30, "max_depth": 3, "random_state": 1}
    pipeline = (scorecard if kind == "scorecard" else gbm)(params).fit(x, y)
    return Scorer(ModelRef(kind, "1"), pipeline, names, {n: float(x[n].median()) for n in names})


SCORERS = {k: _fitted(k) for k in ("scorecard", "gbm")}
value = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False))


FAST = {k: ArrayScorer.of(s) for k, s in SCORERS.items()}
edge = st.sampled_from([0.0, -0.0, 1e300, -1e300])  # never inf: `decide` treats it as missing


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(sorted(SCORERS)), values=st.lists(st.one_of(value, edge), min_size=4, max_size=4))
def test_the_numpy_scorer_gives_exactly_the_dataframe_scorers_numbers(kind, values):
    plain, fast = SCORERS[kind], FAST[kind]
    assert isinstance(fast.table, {"gbm": TreeTable, "scorecard": LinearTable}[kind])  # both take a table path
    row = dict(zip(plain.features, values))
    assert fast.score(row) == plain.score(row)
    assert fast.explain(row, 3) == plain.explain(row, 3)
    assert hasattr(plain.pipeline.steps[0][1], "feature_names_in_")  # the loaded model itself is untouched


def _wide_scorecard() -> ArrayScorer:
    """A scorecard on 12 features of mixed scales, as wide as the risk flow's: with 4, the
    matrix products happen to agree to the last bit whatever the batch."""
    import pandas as pd

    rng = np.random.default_rng(3)
    names = tuple(f"f{i}" for i in range(12))
    x = pd.DataFrame(rng.normal(size=(600, 12)) * rng.choice([1, 0.01, 1000], size=12), columns=list(names))
    y = (x["f0"] + rng.normal(size=600) > 0.5).astype(int)
    fitted = scorecard({"C": 0.5, "max_iter": 500}).fit(x, y)
    return ArrayScorer.of(Scorer(ModelRef("wide", "1"), fitted, names, {n: float(x[n].median()) for n in names}))


BATCHED = {"scorecard": _wide_scorecard(), "gbm": FAST["gbm"]}


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(sorted(BATCHED)), seed=st.integers(0, 2**32 - 1), n=st.integers(2, 60))
def test_a_request_s_score_and_reasons_do_not_depend_on_the_batch_it_comes_in(kind, seed, n):
    """A replay batches requests otherwise than the first run did (polls, restarts,
    processes): each decision must come out the same to the last bit. Found 2026-12-07:
    the scorecard's reason-code deltas differed in their 17th digit with the batch (its
    requests' probe rows were one matrix product; before the fix this test failed)."""
    fast = BATCHED[kind]
    rows = np.random.default_rng(seed).normal(size=(n, len(fast.features))) * 100
    many = [dict(zip(fast.features, r)) for r in rows]
    batched = fast.explain_many(many, 3)
    assert batched == [fast.explain_many([one], 3)[0] for one in many]
    assert fast.explain_many(many[::-1], 3) == batched[::-1]


@settings(max_examples=20, deadline=None)
@given(rows=st.lists(st.lists(st.one_of(value, edge), min_size=4, max_size=4), min_size=1, max_size=30))
def test_the_tree_table_sums_the_trees_exactly_as_scikit_learn(rows):
    """Many rows at once, at and around the fitted thresholds too."""
    x = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    table = FAST["gbm"].table
    at_splits = table.threshold[~table.leaf][: len(rows)]
    x[: len(at_splits), 0] = at_splits  # exactly on a split: `<=` goes left
    pipeline = SCORERS["gbm"].pipeline
    import pandas as pd

    expected = pipeline.predict_proba(pd.DataFrame(x, columns=list(SCORERS["gbm"].features)))[:, 1]
    assert np.array_equal(table.predict(x), expected)


@settings(max_examples=40, deadline=None)
@given(
    raw=st.lists(st.one_of(st.floats(-800, 800), st.sampled_from([0.0, -0.0, 1e300, -1e300])), min_size=1, max_size=40)
)
def test_the_tree_tables_probability_is_the_losss_predict_proba(raw):
    """`positive_class` (scipy's expit for the binomial loss) gives exactly what the
    fitted loss's `predict_proba` puts in its column 1, which the tree table called before."""
    loss = SCORERS["gbm"].pipeline.steps[-1][1]._loss
    sums = np.array(raw, dtype=float)
    assert FAST["gbm"].table.positive is positive_class(loss)  # the table takes this path
    assert np.array_equal(positive_class(loss)(sums), loss.predict_proba(sums)[:, 1])


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.lists(st.one_of(value, edge), min_size=4, max_size=4), min_size=1, max_size=30))
def test_the_linear_table_gives_exactly_the_scorecard_pipelines_numbers(rows):
    """Many rows at once, missing values in every column (the fitted indicator is on
    b_rate only: the other columns had none in training), huge and signed-zero values."""
    x = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    table = FAST["scorecard"].table
    assert table.flagged.tolist() == [1]
    import pandas as pd

    pipeline = SCORERS["scorecard"].pipeline
    expected = pipeline.predict_proba(pd.DataFrame(x, columns=list(SCORERS["scorecard"].features)))[:, 1]
    assert np.array_equal(table.predict(x), expected)


def test_a_pipeline_the_tables_do_not_cover_keeps_scikit_learns_path():
    import pandas as pd
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    rng = np.random.default_rng(5)
    x = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    y = (x["a"] > 0).astype(int)
    other = Pipeline([("impute", SimpleImputer()), ("minmax", MinMaxScaler()), ("model", LogisticRegression())]).fit(
        x, y
    )
    fast = ArrayScorer.of(Scorer(ModelRef("other", "1"), other, ("a", "b"), {"a": 0.0, "b": 0.0}))
    assert fast.table is None
    row = {"a": 0.3, "b": None}
    assert fast.score(row) == other.predict_proba(pd.DataFrame([[0.3, np.nan]], columns=["a", "b"]))[0, 1]


def test_a_feature_store_that_fails_still_gives_a_decision_by_the_rules(tmp_path, caplog):
    """A real Feast repo whose online database is gone: the read raises inside Feast,
    the checkout still gets a decision (conservative, `features_unavailable`), stored."""
    from datetime import datetime, timezone

    from clearline.features import store as fstore
    from clearline.models.api import DecisionRequest, DecisionService
    from clearline.models.api_core import OnlineFeatures
    from clearline.models.policy import Policy

    settings = fstore.FeastSettings("clearline", tmp_path / "feast")
    fstore.apply(settings)
    features = OnlineFeatures(fstore.open_store(settings))
    (tmp_path / "feast" / "online.db").unlink(missing_ok=True)
    (tmp_path / "feast" / "online.db").mkdir()  # not a database: every read fails
    service = DecisionService(
        Policy.from_config(config.load("policy")),
        SCORERS["gbm"],
        None,
        ApiKeys.from_config(config.load("tenants"), environ={}),
        MerchantDirectory({"m1": "rs_001"}),
        features,
        DecisionStore(tmp_path / "d.db"),
        now=lambda: datetime(2026, 11, 22, tzinfo=timezone.utc),
    )
    body = DecisionRequest.model_validate(
        {
            "order_id": "o1",
            "buyer_id": "b1",
            "merchant_id": "m1",
            "terms_days": 30,
            "amount": {"minor": 30000, "currency": "EUR"},
        }
    )
    stored, new = service.decide("rs_001", body)
    record = json.loads(stored.record)
    assert new and record["policy_reasons"] == ["features_unavailable", "amount_within_limit"]
    assert record["decision"] == "approve" and record["model"] is None and record["decided_at"].startswith("2026-11-22")
    assert "online feature store read failed for buyer b1 merchant m1" in caplog.text
    assert service.decide("rs_001", body) == (stored, False)


# --------------------------------------------------------------------------- what the API refuses early


def _depth(doc) -> int:
    """The reference: nesting depth by plain recursion (a scalar 0, `[]` 1)."""
    if isinstance(doc, dict):
        return 1 + max(map(_depth, doc.values()), default=0)
    if isinstance(doc, list):
        return 1 + max(map(_depth, doc), default=0)
    return 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=30,
)


@settings(deadline=None)
@given(doc=_json, limit=st.integers(0, 8))
def test_nests_deeper_agrees_with_the_recursive_depth(doc, limit):
    assert nests_deeper(doc, limit) == (_depth(doc) > limit)


def test_a_number_written_with_a_zero_fraction_is_the_integer_and_any_other_fraction_is_refused():
    """As JSON Schema reads `integer`; the body's numbers are decimals (the API parses with
    parse_float=Decimal), so a fraction too small for a float is still a fraction."""

    def body(minor, terms="30") -> dict:
        text = (
            '{"order_id": "o1", "buyer_id": "b1", "merchant_id": "m1", '
            f'"terms_days": {terms}, "amount": {{"minor": {minor}, "currency": "EUR"}}}}'
        )
        return json.loads(text, parse_float=Decimal)

    for text in ("1267.0", "1.267e3", "12670e-1", "1267"):
        got = DecisionRequest.model_validate(body(text, terms="30.0"))
        assert got.amount.minor == 1267 and type(got.amount.minor) is int and got.terms_days == 30
    for refused in ("1267.0000000000000001", "1e999999999", '"1267"', "true", "NaN"):
        with pytest.raises(ValidationError, match="amount.minor"):
            DecisionRequest.model_validate(body(refused))
    with pytest.raises(ValidationError, match=f"less than or equal to {MAX_AMOUNT_MINOR}"):
        DecisionRequest.model_validate(body(f"{MAX_AMOUNT_MINOR + 1}.0"))


def test_a_request_hash_holds_no_card_number_and_a_stored_hex_hash_still_matches():
    first, other = (
        DecisionRequest.model_validate(
            {
                "order_id": f"o{i}",
                "buyer_id": "b1",
                "merchant_id": "m1",
                "terms_days": 30,
                "amount": {"minor": 100, "currency": "EUR"},
            }  # fmt: skip
        )
        for i in (1, 2)
    )
    digest = request_hash(first)
    assert len(digest) == 43 and not contains_pan(digest)
    hexed = hashlib.sha256(json.dumps(first.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    assert same_request(digest, first) and same_request(hexed, first)  # a store written before: hex
    assert not same_request(digest, other) and not same_request(hexed, other)


def test_the_limits_come_from_configs_and_a_missing_one_is_named():
    limits = ApiLimits.from_config(config.load("serve"))
    assert limits.max_body_bytes > 1000 and limits.max_json_depth >= 2  # a decision request fits
    with pytest.raises(ConfigError, match="max_json_depth: 'deep' is not"):
        ApiLimits.from_config({"limits": {"max_body_bytes": 10, "max_json_depth": "deep"}})
