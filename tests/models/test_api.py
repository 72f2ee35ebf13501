"""The decision API end to end: a real `clearline serve` on loopback (a subprocess), a
real Feast SQLite online store and a real MLflow registry in tmp folders, holding models
trained on a small generated world."""

from __future__ import annotations

import http.client
import importlib.util
import json
from datetime import datetime

import pytest

from clearline import config
from clearline.events import Money
from clearline.features import store as fstore
from clearline.features.batch import MODEL_FEATURES
from clearline.features.definitions import ticket_zscore
from clearline.models.decision import UnderwritingRequest, decide
from clearline.models.policy import Policy
from tests import REPO_ROOT
from tests.models.api_server import KEYS, Server

pytestmark = pytest.mark.slow  # trains two models and starts servers: about half a minute


def _bench():
    """bench/decision_api.py, whose `prepare` sets up the world the tests serve too."""
    spec = importlib.util.spec_from_file_location("decision_api_bench", REPO_ROOT / "bench" / "decision_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A world long enough for defaults to mature, models in MLflow (gbm champion,
    scorecard challenger) and every entity's latest features in the online store."""
    root = tmp_path_factory.mktemp("api")
    prep = _bench().prepare(root)
    return {**prep, "root": root, "merchants": prep["owners"]}


@pytest.fixture(scope="module")
def server(world):
    srv = Server(
        {"MLFLOW_TRACKING_URI": world["uri"]},
        [
            "--feast-dir",
            world["feast_dir"],
            "--decisions",
            str(world["root"] / "decisions.db"),
            "--merchants",
            str(world["root"] / "world" / "entities" / "merchants.parquet"),
        ],
    )
    yield srv
    srv.stop()


def _order(world, n: int = 0, **changes) -> tuple[dict, str]:
    """A request for the n-th latest order on terms, and its tenant."""
    row = world["rows"].sort("decision_time", descending=True).row(n, named=True)
    body = {
        "order_id": f"api-{row['order_id']}",
        "buyer_id": row["buyer_id"],
        "merchant_id": row["merchant_id"],
        "amount": {"minor": row["amount_minor"], "currency": row["currency"]},
        "terms_days": row["terms_days"],
        "occurred_at": "2026-11-22T01:00:00+00:00",
    }
    return body | changes, world["merchants"][row["merchant_id"]]


def test_a_decision_by_the_champion_with_reasons_and_the_challengers_shadow(world, server):
    body, tenant = _order(world)
    status, got, _ = server.call("POST", "/v1/decisions", body, KEYS[tenant])
    assert status == 200, got
    assert got["decision"] in ("approve", "review", "decline") and got["tenant"] == tenant
    assert got["model"] == {"name": "clearline-gbm", "version": "1"} and 0.0 <= got["score"] <= 1.0
    assert got["reason_codes"] and all(
        c["feature"] in MODEL_FEATURES + ("amount_minor", "terms_days") for c in got["reason_codes"]
    )
    assert got["policy_reasons"] and got["missing_features"] == []
    assert got["challenger"]["model"] == {"name": "clearline-scorecard", "version": "1"}
    assert got["amount"] == body["amount"] and got["decision_time"] == "2026-11-22T01:00:00+00:00"
    from clearline.models.api import DecisionOut

    DecisionOut.model_validate(got)  # the documented response model is what is sent


def test_the_api_and_decide_give_the_same_decision_for_the_same_features(world, server):
    """The features read back through Feast's own adapter, decided by `decide` with the
    registry's plain (DataFrame) scorer, against what the server answered."""
    for n in range(5):
        body, tenant = _order(world, n)
        status, got, _ = server.call("POST", "/v1/decisions", body, KEYS[tenant])
        assert status == 200, got
        features = {}
        for entity, key in (("buyer", body["buyer_id"]), ("merchant", body["merchant_id"])):
            features |= {
                k: v
                for k, v in fstore.online_features(world["fs"], entity, key).items()
                if k not in ("currency", f"{entity}_id")
            }
        merchant = fstore.online_features(world["fs"], "merchant", body["merchant_id"])
        assert merchant["currency"] == body["amount"]["currency"]
        squares = features["merchant_ticket_sumsq_30d"] = int(merchant["merchant_ticket_sumsq_30d"])  # stored as text
        features["merchant_ticket_zscore"] = ticket_zscore(  # this order's amount against the row's tickets
            body["amount"]["minor"], merchant["merchant_tickets_30d"], merchant["merchant_volume_30d"], squares
        )
        request = UnderwritingRequest(
            got["event_id"],
            body["order_id"],
            body["buyer_id"],
            body["merchant_id"],
            datetime.fromisoformat(body["occurred_at"]),
            Money(**body["amount"]),
            body["terms_days"],
        )
        direct = decide(request, features, world["champion"], None, Policy.from_config(config.load("policy"))).to_dict()
        assert got["decision_id"] == f"dec_{got['event_id']}"
        assert got["score"] == pytest.approx(direct["score"], rel=1e-9, abs=1e-12)
        for key in ("decision", "credit_limit", "band", "policy_reasons", "model", "inputs", "missing_features"):
            assert got[key] == direct[key], key
        assert [c["feature"] for c in got["reason_codes"]] == [c["feature"] for c in direct["reason_codes"]]


def test_an_order_is_decided_once(world, server):
    body, tenant = _order(world, 7)
    first = server.call("POST", "/v1/decisions", body, KEYS[tenant])
    again = server.call("POST", "/v1/decisions", body, KEYS[tenant])
    assert first[0] == again[0] == 200 and first[1] == again[1]
    assert again[2].get("idempotent-replay") == "true" and "idempotent-replay" not in first[2]
    status, conflict, _ = server.call(
        "POST", "/v1/decisions", body | {"terms_days": body["terms_days"] + 1}, KEYS[tenant]
    )
    assert status == 409 and first[1]["decision_id"] in conflict["detail"]
    assert server.call("GET", f"/v1/decisions/{first[1]['decision_id']}", key=KEYS[tenant])[1] == first[1]


def test_without_a_valid_key_nothing_is_answered(world, server):
    body, _ = _order(world, 8)
    for key in (None, "not-a-key", KEYS["rs_001"] + "x"):
        status, got, headers = server.call("POST", "/v1/decisions", body, key)
        assert status == 401 and "API key" in got["detail"] and headers["www-authenticate"] == "ApiKey"
        assert server.call("GET", "/v1/decisions/dec_x", key=key)[0] == 401
    assert server.call("POST", "/v1/decisions", {"order_id": 1}, None)[0] == 401  # before looking at the body


def test_a_tenant_sees_only_its_own_merchants_decisions(world, server):
    body, tenant = _order(world, 9)
    other = next(t for t in KEYS if t != tenant)
    status, got, _ = server.call("POST", "/v1/decisions", body, KEYS[other])
    assert status == 403 and body["merchant_id"] in got["detail"]
    assert server.call("POST", "/v1/decisions", body | {"merchant_id": "m_nobody"}, KEYS[tenant])[0] == 403
    mine = server.call("POST", "/v1/decisions", body, KEYS[tenant])[1]
    status, got, _ = server.call("GET", f"/v1/decisions/{mine['decision_id']}", key=KEYS[other])
    assert status == 403 and "another tenant" in got["detail"]
    assert server.call("GET", "/v1/decisions/dec_unknown", key=KEYS[tenant])[0:2] == (
        404,
        {"detail": "no decision 'dec_unknown'"},
    )


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"buyer_id": None}, "buyer_id", "Field required"),
        ({"terms_days": "thirty"}, "terms_days", "valid integer"),
        ({"amount": {"minor": 1000, "currency": "EUX"}}, "amount.currency", "not an ISO 4217"),
        ({"amount": {"minor": -5, "currency": "EUR"}}, "amount.minor", "greater than 0"),
        ({"amount": {"minor": 10.5, "currency": "EUR"}}, "amount.minor", "valid integer"),
        ({"occurred_at": "2026-11-22T01:00:00"}, "occurred_at", "timezone"),
    ],
)
def test_a_bad_body_is_422_naming_the_field(world, server, change, field, words):
    body, tenant = _order(world, 10)
    body = {k: v for k, v in (body | change).items() if v is not None}
    status, got, _ = server.call("POST", "/v1/decisions", body, KEYS[tenant])
    assert status == 422 and [e["field"] for e in got["errors"]] == [field]
    assert got["detail"].startswith(f"{field}: ") and words in got["detail"]


def test_a_body_that_is_not_json_or_not_an_object_is_422_as_fastapi_answers_it(world, server):
    _, tenant = _order(world, 11)

    def post(body: str, content_type: str | None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request(
            "POST",
            "/v1/decisions",
            body=body,
            headers={"X-API-Key": KEYS[tenant]} | ({"Content-Type": content_type} if content_type else {}),
        )
        resp = conn.getresponse()
        got = json.loads(resp.read())
        conn.close()
        return resp.status, got

    status, got = post('{"order_id": "o-1",', "application/json")
    assert status == 422 and got["errors"][0]["type"] == "json_invalid" and "JSON decode error" in got["detail"]
    status, got = post(json.dumps(["not", "an", "object"]), "application/json; charset=utf-8")
    assert status == 422 and "valid dictionary" in got["detail"]
    body, _ = _order(world, 11)
    for content_type in ("text/plain", None):  # JSON only when declared so (FastAPI's strict content type)
        status, got = post(json.dumps(body), content_type)
        assert status == 422 and got["errors"][0]["field"] == "body", got
    status, got = post("", "application/json")
    assert status == 422 and got["errors"] == [{"field": "body", "message": "Field required", "type": "missing"}]
    assert post('{"order_id": "o-1",', "application/vnd.clearline+json")[0] == 422


def test_a_buyer_the_store_never_saw_is_decided_by_the_conservative_rules(world, server):
    body, tenant = _order(world, 11, buyer_id="b_brand_new", order_id="api-new-buyer")
    status, got, _ = server.call("POST", "/v1/decisions", body, KEYS[tenant])
    assert status == 200 and got["model"] is None and got["policy_reasons"][0] == "features_unavailable"
    assert "buyer_defaults" in got["missing_features"]


def test_health_metrics_and_openapi(world, server):
    status, health, _ = server.call("GET", "/health")
    assert status == 200 and health["decides_by"] == "champion"
    assert health["champion"] == {"name": "clearline-gbm", "version": "1"} and health["merchants"] == len(
        world["merchants"]
    )
    body, tenant = _order(world, 12)
    server.call("POST", "/v1/decisions", body, KEYS[tenant])
    server.call("GET", "/v1/decisions/dec_nope", key=KEYS[tenant])
    status, text, _ = server.call("GET", "/metrics", raw=True)
    assert status == 200
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert lines['clearline_api_requests_total{method="POST",route="/v1/decisions",status="200"}'] >= 1
    assert lines['clearline_api_requests_total{method="GET",route="/v1/decisions/{decision_id}",status="404"}'] >= 1
    assert lines['clearline_api_request_seconds_count{method="POST",route="/v1/decisions"}'] >= 1
    assert 'clearline_api_request_seconds_bucket{le="0.015",method="POST",route="/v1/decisions"}' in lines
    status, spec, _ = server.call("GET", "/openapi.json")
    assert {"/v1/decisions", "/v1/decisions/{decision_id}", "/health", "/metrics"} <= set(spec["paths"])
    assert "DecisionRequest" in spec["components"]["schemas"] and "DecisionOut" in spec["components"]["schemas"]


def test_decisions_survive_a_restart_and_without_a_champion_the_rules_decide(world, server, tmp_path):
    body, tenant = _order(world, 13)
    first = server.call("POST", "/v1/decisions", body, KEYS[tenant])[1]
    server.stop()
    empty = Server(
        {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"},
        [
            "--feast-dir",
            world["feast_dir"],
            "--decisions",
            str(world["root"] / "decisions.db"),
            "--merchants",
            str(world["root"] / "world" / "entities" / "merchants.parquet"),
            "--workers",
            "2",
        ],
    )
    try:
        health = empty.call("GET", "/health")[1]
        assert health["champion"] is None and health["decides_by"] == "conservative rules (no_champion)"
        assert empty.call("GET", f"/v1/decisions/{first['decision_id']}", key=KEYS[tenant])[1] == first
        again = empty.call("POST", "/v1/decisions", body, KEYS[tenant])
        assert again[1] == first and again[2].get("idempotent-replay") == "true"
        new, _ = _order(world, 14)
        status, got, _ = empty.call("POST", "/v1/decisions", new, KEYS[world["merchants"][new["merchant_id"]]])
        assert status == 200 and got["model"] is None and got["policy_reasons"][0] == "no_champion"
        text = empty.call("GET", "/metrics", raw=True)[1]
        assert 'clearline_api_requests_total{method="POST",route="/v1/decisions",status="200"}' in text  # all workers
    finally:
        empty.stop()
