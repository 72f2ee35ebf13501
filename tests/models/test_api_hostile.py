"""The decision API against hostile and careless callers (issue 15): a real `clearline
serve` on loopback, without models or features (every decision by the conservative
rules: the HTTP surface is what is under test here, not the scores), one worker, so
the process measured is the one that answers.

What must hold: the key is checked before the body is read; a body over the configured
size is 413, JSON nested past the configured depth is 422, a date or amount out of range
is 422 naming the field; a card number (Luhn-valid, 13–19 digits) in any field is 422
naming the field with the number masked, and is never stored, echoed or logged; no
answer is 500; every answer matches the OpenAPI document the server publishes
(Schemathesis, all checks).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import jsonschema
import polars as pl
import pytest

from clearline import config
from clearline.events import contains_pan, redact_pans
from tests.models.api_server import KEYS, Server
from tests.pan_scan import find_pans

pytestmark = pytest.mark.slow  # starts a server (about ten seconds)

MERCHANTS = {"m_00001": "rs_001", "m_00002": "rs_002", "m_00003": "rs_003"}  # m_00001: the OpenAPI example's
LIMITS = config.load("serve")["limits"]

# Card numbers as a careless or hostile caller would send them: plain, dashed, spaced,
# and hidden behind a JSON escape (the raw bytes hold no digit run).
PAN = "4111111111111111"
PANS = (PAN, "5500-0000-0000-0004", "3782 822463 10005", "6011000990139424")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-hostile")
    pl.DataFrame({"merchant_id": list(MERCHANTS), "reseller_id": list(MERCHANTS.values())}).write_parquet(
        root / "merchants.parquet"
    )
    srv = Server(
        {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"},
        [
            "--feast-dir",
            str(root / "no-feast"),
            "--decisions",
            str(root / "decisions.db"),
            "--merchants",
            str(root / "merchants.parquet"),
            "--workers",
            "1",
        ],
    )
    srv.db = root / "decisions.db"
    srv.root = root
    yield srv
    srv.stop()


def _order(n: str, **changes) -> dict:
    body = {
        "order_id": f"o-{n}",
        "buyer_id": "b_1",
        "merchant_id": "m_00001",
        "amount": {"minor": 125000, "currency": "EUR"},
        "terms_days": 30,
        "occurred_at": "2026-11-22T01:00:00+00:00",
    }
    return body | changes


def _post_raw(api, body: bytes, key: str | None = KEYS["rs_001"], content_type="application/json"):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    headers = {"Content-Type": content_type} | ({"X-API-Key": key} if key else {})
    conn.request("POST", "/v1/decisions", body=body, headers=headers)
    resp = conn.getresponse()
    got = resp.status, resp.read().decode()
    conn.close()
    return got


def _error_schema(api, method: str, path: str, status: int) -> dict:
    spec = api.call("GET", "/openapi.json")[1]
    declared = spec["paths"][path][method.lower()]["responses"]
    assert str(status) in declared, f"{method} {path} answers {status}, which its OpenAPI document does not declare"
    schema = declared[str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}


def _conforms(api, method: str, path: str, status: int, body: str) -> dict:
    doc = json.loads(body)
    jsonschema.validate(doc, _error_schema(api, method, path, status))
    return doc


# ----------------------------------------------------------------------- the key first


def test_without_a_key_the_body_is_not_read(api):
    """Headers announcing 100 MB and only 64 KiB of it sent: the 401 comes back anyway,
    so the server answered without reading the body."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n" + b"[" * 65536
        )
        head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 401 "), head[:200]


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def test_a_100_mb_body_without_a_key_costs_the_worker_no_memory(api):
    before = _peak_rss_kib(api.proc.pid)
    status, body = _post_raw(api, b"[" + b"1," * (50 * 1024 * 1024 - 1) + b"1]", key=None)
    assert status == 401
    grew_mib = (_peak_rss_kib(api.proc.pid) - before) / 1024
    assert grew_mib < 20, f"the worker's peak memory grew {grew_mib:.0f} MiB for a body it should not read"


# ----------------------------------------------------------------------- size and depth


def test_a_body_over_the_limit_is_413_before_it_is_read(api):
    limit = LIMITS["max_body_bytes"]
    body = json.dumps(_order("big", buyer_id="b" * 64)).encode()
    body = body[:-1] + b" " * (limit + 1 - len(body)) + b"}"  # valid JSON, one byte over
    status, text = _post_raw(api, body)
    assert status == 413 and str(limit) in _conforms(api, "POST", "/v1/decisions", 413, text)["detail"]
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:  # announced: answered at once
        s.sendall(
            b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-API-Key: "
            + KEYS["rs_001"].encode()
            + b"\r\nContent-Length: 100000000\r\n\r\n{"
        )
        assert s.recv(65536).startswith(b"HTTP/1.1 413 ")
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:  # chunked: counted as it comes
        s.sendall(
            b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-API-Key: "
            + KEYS["rs_001"].encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 4096
        for _ in range(limit // len(chunk) + 2):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert s.recv(65536).startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("opener", ["[", '{"a":', '{"order_id": ['])
def test_json_nested_deeper_than_the_limit_is_422_never_500(api, opener):
    body = (opener * 1000).encode()  # not even closed: the depth is refused before the parse
    assert _post_raw(api, body, key=None)[0] == 401
    status, text = _post_raw(api, body)
    got = _conforms(api, "POST", "/v1/decisions", 422, text)
    assert status == 422 and got["errors"][0]["field"] == "body" and "nest" in got["detail"]
    depth = LIMITS["max_json_depth"]
    status, text = _post_raw(api, ("[" * depth + "]" * depth).encode())  # at the limit: parsed, then refused
    assert status == 422 and "valid dictionary" in text


# ----------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    "occurred_at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59Z", 1764000000]
)
def test_a_time_out_of_range_is_422_naming_occurred_at(api, occurred_at):
    body = json.dumps(_order("t", occurred_at=occurred_at)).encode()
    assert _post_raw(api, body, key=None)[0] == 401
    status, text = _post_raw(api, body)
    got = _conforms(api, "POST", "/v1/decisions", 422, text)
    assert status == 422 and [e["field"] for e in got["errors"]] == ["occurred_at"]


def test_an_amount_over_the_bound_is_422_naming_minor_and_the_bound_is_decided(api):
    from clearline.models.api import MAX_AMOUNT_MINOR

    status, text = _post_raw(api, json.dumps(_order("huge", amount={"minor": 2**70, "currency": "EUR"})).encode())
    got = _conforms(api, "POST", "/v1/decisions", 422, text)
    assert status == 422 and [e["field"] for e in got["errors"]] == ["amount.minor"]
    assert f"{MAX_AMOUNT_MINOR}" in got["detail"] or f"{MAX_AMOUNT_MINOR:_}" in got["detail"]
    status, got, _ = api.call(
        "POST", "/v1/decisions", _order("max", amount={"minor": MAX_AMOUNT_MINOR, "currency": "EUR"}), KEYS["rs_001"]
    )
    assert status == 200 and got["amount"]["minor"] == MAX_AMOUNT_MINOR


# ----------------------------------------------------------------------- the schema is the server's


def test_what_the_schema_admits_the_server_admits_and_what_it_refuses_the_server_refuses(api):
    """`1267.0` is an integer to JSON Schema: it is decided as 1267 (exactly: the text is
    read as a decimal, so `1267.0000000000000001` is a fraction and refused); the empty
    currency is refused by the schema's pattern as by the server."""
    spec = api.call("GET", "/openapi.json")[1]
    schemas = spec["components"]["schemas"]
    request = {**schemas["DecisionRequest"], "components": spec["components"]}
    status, text = _post_raw(api, json.dumps(_order("f")).replace("125000", "1267.0").encode())
    assert status == 200 and json.loads(text)["amount"] == {"minor": 1267, "currency": "EUR"}
    jsonschema.validate(json.loads(json.dumps(_order("f")).replace("125000", "1267.0")), request)
    status, text = _post_raw(api, json.dumps(_order("g")).replace("125000", "1267.0000000000000001").encode())
    assert status == 422 and "amount.minor" in text
    for bad in ({"minor": 1000, "currency": ""}, {"minor": 1000, "currency": "EUX"}, {"minor": 0, "currency": "EUR"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_order("x", amount=bad), request)
        status, text = _post_raw(api, json.dumps(_order("x", amount=bad)).encode())
        assert status == 422 and _conforms(api, "POST", "/v1/decisions", 422, text)["errors"][0]["field"].startswith(
            "amount."
        )


def test_every_error_status_is_declared_with_the_one_error_schema(api):
    spec = api.call("GET", "/openapi.json")[1]
    post = spec["paths"]["/v1/decisions"]["post"]["responses"]
    get = spec["paths"]["/v1/decisions/{decision_id}"]["get"]["responses"]
    assert {"401", "403", "409", "413", "422"} <= set(post) and {"401", "403", "404", "422"} <= set(get)
    refs = {r["content"]["application/json"]["schema"]["$ref"] for s, r in {**post, **get}.items() if s != "200"}
    assert refs == {"#/components/schemas/Problem"} and "HTTPValidationError" not in spec["components"]["schemas"]
    status, text = _post_raw(api, json.dumps(_order("e", terms_days="thirty")).encode())
    assert status == 422 and _conforms(api, "POST", "/v1/decisions", 422, text)["errors"][0]["field"] == "terms_days"
    status, text = _post_raw(api, json.dumps(_order("e")).encode(), key="wrong")
    assert status == 401 and _conforms(api, "POST", "/v1/decisions", 401, text)


# ----------------------------------------------------------------------- card numbers


_FRACTION = re.compile(r"(?<=[0-9])\.[0-9]+")


def pans_in(text: str) -> list[str]:
    """Card numbers in `text` by the shared test scanner (`tests/pan_scan.py`: also spelt
    with JSON escapes or in UTF-16/32), each masked; a decimal's fraction is left out, as
    `0.5493028163909912` in /metrics or a score is a fraction, not a card number."""
    return [str(f) for f in find_pans(_FRACTION.sub(".", text))]


def _db_texts(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [str(v) for row in db.execute("SELECT * FROM decisions") for v in row]


def _plants() -> list[tuple[str, bytes]]:
    """(the field named in the refusal, a body) with a card number in every field the API
    takes, in every spelling, and as the name of a field it does not take."""
    plants = []
    for i, pan in enumerate(PANS):
        for field in ("order_id", "buyer_id", "merchant_id"):
            plants.append((field, _order(f"pan-{field}-{i}", **{field: pan})))
        plants.append(("amount.currency", _order(f"pan-c-{i}", amount={"minor": 1, "currency": pan})))
        plants.append(("occurred_at", _order(f"pan-t-{i}", occurred_at=pan)))
        plants.append((pan, _order(f"pan-k-{i}") | {pan: 1}))
    bodies = [(field, json.dumps(body).encode()) for field, body in plants]
    for field in ("order_id", "buyer_id", "merchant_id"):  # a JSON escape: the raw bytes hold no digit run
        body = _order(f"esc-{field}")
        text = json.dumps(body).replace(f'"{body[field]}"', '"\\u0034111111111111111"', 1)
        assert text != json.dumps(body)
        bodies.append((field, text.encode()))
    bodies.append(("amount.minor", json.dumps(_order("pan-m")).replace("125000", PAN).encode()))
    return bodies


def test_a_card_number_in_any_field_is_422_masked_and_never_stored_or_echoed(api):
    answers = []
    for field, body in _plants():
        for key in (KEYS["rs_001"], KEYS["rs_002"], "not-a-key", None):
            status, text = _post_raw(api, body, key=key)
            answers.append(text)
            assert status == (401 if key in ("not-a-key", None) else 422), (field, status, text)
            if status == 422:
                named = [e["field"] for e in _conforms(api, "POST", "/v1/decisions", 422, text)["errors"]]
                assert named == [field if not contains_pan(field) else redact_pans(field)], (field, text)
    for pan in PANS:
        for key in (KEYS["rs_001"], None):
            status, text, _ = api.call("GET", f"/v1/decisions/{pan.replace(' ', '%20')}", key=key, raw=True)
            answers.append(text)
            assert status == (422 if key else 401), text
            if key:
                assert _conforms(api, "GET", "/v1/decisions/{decision_id}", 422, text)["errors"][0]["field"] == (
                    "decision_id"
                )
    assert [text for text in answers if pans_in(text)] == []
    assert [text for text in _db_texts(api.db) if pans_in(text)] == []
    assert "************1111" in "".join(answers)  # refused with the number masked, not dropped
    status, text = _post_raw(api, json.dumps(_order("pan-ok")).encode())
    assert status == 200 and json.loads(text)["order_id"] == "o-pan-ok"  # and the server still decides


# ----------------------------------------------------------------------- Schemathesis


def test_schemathesis_finds_no_server_error_and_no_schema_violation(api, tmp_path):
    """Every operation of the published document, every phase (the document's example,
    coverage of each constraint's edges, positive and negative fuzzing, and stateful runs
    along the POST → GET link), every check. Bounded by examples per operation (about
    1,100 cases, some 20 s here), and in time by the timeout. Its answers and what it got
    stored hold no card number."""
    report = tmp_path / "report"
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"X-API-Key: {KEYS['rs_001']}",
            "--max-examples",
            "100",
            "--seed",
            "15",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--report",
            "har",
            "--report-dir",
            str(report),
            "--generation-database",
            "none",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang, not a speed check: minutes on a loaded 2-core machine
    )
    assert run.returncode == 0 and "No issues found" in run.stdout, run.stdout[-6000:] + run.stderr[-2000:]
    entries = json.loads(next(report.glob("*.json")).read_text())["log"]["entries"]
    statuses = {e["response"]["status"] for e in entries if e["request"]["method"] == "POST"}
    assert {200, 401, 403, 409, 422} <= statuses and 500 not in statuses
    answers = [e["response"]["content"].get("text", "") for e in entries]
    assert len(answers) > 500 and [t for t in answers if pans_in(t)] == []
    assert [t for t in _db_texts(api.db) if pans_in(t)] == []


def test_the_servers_log_holds_no_card_number(api):
    """Last: every card number planted again, then the server stopped and its output read."""
    for _, body in _plants():
        _post_raw(api, body)
    out, err = api.stop()
    assert "Traceback" not in err and pans_in(out + err) == []
