"""`clearline contract export`: the JSON Schemas and the AsyncAPI document other services
build on say exactly what Clearline accepts and publishes.

Every event of a generated world passes its type's schema; the ways an event can break
the contract (a float amount, a lowercase or unknown currency, a missing field, the
wrong event_type, …) are refused by the schema *and* by `clearline.events.decode`, so
the two agree; decisions, variances and dead letters built by the real code pass theirs;
the AsyncAPI document names every configured topic and every message in it resolves to
an exported schema; and the files on disk are what the code generates now, one schema
per event type and no other.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from clearline import config, contract, events, signing
from clearline.pipelines.cli import main
from clearline.pipelines.cli.contract import documents
from tests.contract.samples import decisions
from tests.contract.schemas import assert_valid, problems

MESSAGES = {"decision", "decision-headers", "variance", "deadletter-headers", "event-headers"}


def export(folder: Path, *extra: str):
    return CliRunner().invoke(main, ["contract", "export", str(folder), *extra])


def said(result) -> str:
    """A command's output with the console's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("contract") / "out"
    result = export(folder, "--json")
    assert result.exit_code == 0, result.output
    return folder, json.loads(result.output)


@pytest.fixture(scope="module")
def world_events(small_world) -> list[dict]:
    world, _ = small_world
    return [json.loads(line) for line in (world / "events" / "events.jsonl").read_text().splitlines()]


def first(world_events: list[dict], event_type: str) -> dict:
    return copy.deepcopy(next(e for e in world_events if e["event_type"] == event_type))


# ------------------------------------------------------------------------ events


def test_every_event_of_a_world_is_valid_against_its_types_schema(exported, world_events):
    folder, report = exported
    assert report["event_types"] == len(events.PAYLOADS) and Path(report["asyncapi"]).is_file()
    seen: dict[str, int] = {}
    for event in world_events:
        assert_valid(event["event_type"], event)
        seen[event["event_type"]] = seen.get(event["event_type"], 0) + 1
    people = set(events.PERSON_EVENT_TYPES)  # published from the workbench, not played out by a world
    assert set(seen) == set(events.PAYLOADS) - people, "the world should exercise every event type"


def _set(path: str, value):
    def change(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()
BROKEN_ORDERS = {
    "a float amount": _set("payload.amount.minor", 1999.5),
    "an amount as decimal text": _set("payload.amount.minor", "19.99"),
    "a negative amount": _set("payload.amount.minor", -1),
    "a lowercase currency": _set("payload.amount.currency", "usd"),
    "a 4-letter currency": _set("payload.amount.currency", "USDX"),
    "a code outside ISO 4217": _set("payload.amount.currency", "ABC"),
    "money with an extra field": _set("payload.amount.decimal", "19.99"),
    "a missing payload field": _set("payload.buyer_id", _DELETE),
    "a missing envelope field": _set("event_id", _DELETE),
    "a null required field": _set("payload.order_id", None),
    "the wrong event_type": _set("event_type", "payment.captured"),
    "an unknown event_type": _set("event_type", "order.exploded"),
    "an unknown field": _set("payload.note", "rush"),
    "an unknown schema_version": _set("schema_version", 2),
    "a schema_version as text": _set("schema_version", "1"),
    "a time without a zone": _set("occurred_at", "2025-03-01T10:00:00"),
    "a time not in UTC": _set("occurred_at", "2025-03-01T10:00:00+02:00"),
    "a date for a time": _set("occurred_at", "2025-03-01"),
    "an id with a space": _set("merchant_id", "m 1"),
    "an empty id": _set("payload.order_id", ""),
    "terms as text": _set("payload.terms_days", "30"),
    "a payment method outside the contract": _set("payload.payment_method", "crypto"),
    "a due date in another format": _set("payload.due_date", "01/03/2025"),
    "an amount above what the ledger stores": _set("payload.amount.minor", events.MAX_MINOR + 1),
    "an amount of 2^70": _set("payload.amount.minor", 2**70),
    "terms beyond 32 bits": _set("payload.terms_days", events.MAX_INT + 1),
    "terms below 32 bits": _set("payload.terms_days", events.MIN_INT - 1),
}


@pytest.mark.parametrize("why", BROKEN_ORDERS)
def test_the_schema_refuses_what_the_contract_refuses(world_events, why):
    event = first(world_events, "order.created")
    assert not problems("order.created", event) and events.decode(json.dumps(event))
    BROKEN_ORDERS[why](event)
    assert problems("order.created", event), f"the schema accepts {why}"
    with pytest.raises(events.ContractError):
        events.decode(json.dumps(event))


def test_the_bounds_are_admitted_by_both_and_named_by_both(world_events, exported):
    """The largest amount and the widest count are events; the schema states the bounds."""
    event = first(world_events, "order.created")
    event["payload"]["amount"]["minor"] = events.MAX_MINOR
    event["payload"]["terms_days"] = events.MAX_INT
    assert not problems("order.created", event) and _decodes(event)
    event["payload"]["terms_days"] = events.MIN_INT
    assert not problems("order.created", event) and _decodes(event)
    schema = json.loads(documents()[contract.schema_path("order.created")])
    money = schema["$defs"]["Money"]["properties"]["minor"]
    assert (money["minimum"], money["maximum"]) == (0, 2**63 - 1)
    terms = schema["properties"]["payload"]
    terms = schema["$defs"][terms["$ref"].rsplit("/", 1)[1]]["properties"]["terms_days"]
    assert (terms["minimum"], terms["maximum"]) == (-(2**31), 2**31 - 1)


@pytest.mark.parametrize("rate,valid", [("1.0834", True), ("0.92", True), ("0.000", False), ("1,08", False)])
def test_an_fx_rate_is_a_positive_decimal_text_in_both(world_events, rate, valid):
    event = first(world_events, "processor.settlement")
    event["payload"]["fx_rate"] = rate
    assert (not problems("processor.settlement", event)) is valid
    assert _decodes(event) is valid


def _decodes(event: dict) -> bool:
    try:
        events.decode(json.dumps(event))
    except events.ContractError:
        return False
    return True


def test_an_integral_float_is_the_one_number_the_schema_cannot_tell_apart(world_events):
    """JSON Schema's data model makes 12.0 the integer 12; Clearline refuses it. The
    schemas' descriptions say so; this pins the gap so nobody mistakes it for agreement."""
    event = first(world_events, "order.created")
    event["payload"]["amount"]["minor"] = 1999.0
    assert not problems("order.created", event)
    assert not _decodes(event)
    assert "12.0 is not 12 minor units" in json.loads(documents()[contract.schema_path("order.created")])["description"]


def test_a_signed_events_headers_match_the_headers_schema(world_events):
    event = first(world_events, "payment.captured")
    body = json.dumps(event).encode()
    headers = {signing.TENANT_HEADER: event["reseller_id"], signing.SIGNATURE_HEADER: signing.sign(body, b"k" * 32)}
    assert_valid("event-headers", headers)
    assert problems("event-headers", {**headers, signing.SIGNATURE_HEADER: "v2=" + "0" * 64})
    assert problems("event-headers", {signing.TENANT_HEADER: event["reseller_id"]})


# ----------------------------------------------------------- published messages


def test_decision_records_match_the_decision_schema():
    records = decisions()
    for record in records:
        assert_valid("decision", record)
    assert problems("decision", {**records[0], "score": "high"})
    assert problems("decision", {**records[0], "amount": {"minor": 2500.5, "currency": "EUR"}})
    assert problems("decision", {k: v for k, v in records[1].items() if k != "challenger"}), "every key is written"


def _variance_row() -> dict:
    from clearline.recon import VARIANCE_SCHEMA, variance_id

    row = {
        "variance_id": variance_id("fee_mismatch", "stripe:txn_1"),
        "category": "fee_mismatch",
        "processor": "stripe",
        "merchant_id": "m_00001",
        "reference": "pay_1",
        "payout_id": None,
        "amount_minor": 20,
        "currency": "EUR",
        "field": "fee",
        "expected": "2.90 EUR",
        "actual": "3.10 EUR",
        "since": date(2025, 3, 2),
        "age_days": 4,
        "ledger_event_ids": ["evt_1", "evt_2"],
        "evidence": ["stripe-2025-03-02.csv:14"],
    }
    assert list(row) == list(VARIANCE_SCHEMA)
    return row


@pytest.mark.parametrize("kind", ["variance", "withdrawn"])
def test_variance_messages_match_the_variance_schema(kind):
    from clearline.pipelines.connectors.variance_sink import variance_message

    _key, value = variance_message(_variance_row(), kind)
    message = json.loads(value)
    assert_valid("variance", message)
    assert problems("variance", {**message, "category": "vibes"})
    assert problems("variance", {**message, "amount_minor": 20.5})


def test_dead_letter_headers_match_the_dead_letter_schema():
    """The ledger sink's own code writes the headers, whole and cut short."""
    from clearline.ledger.model import Rejected, Source
    from clearline.pipelines.connectors.ledger_sink import FALLBACK_BYTES, dead_letter

    letters = [
        Rejected(Source("payments.events", 2, 41), "evt_9", "contract:type", "payload.amount.minor: …", b'{"x":1}'),
        Rejected(Source("payments.events", 0, 7), None, "signature", "HMAC-SHA256 signature missing", b"\xff"),
        Rejected(Source("payments.events", 1, 3), None, "tenant", "no tenant", b"q" * 2048, 1_040_000, "ab" * 32),
    ]
    for letter in letters:
        for message in (dead_letter(letter, letter.raw), dead_letter(letter, letter.raw, value_bytes=FALLBACK_BYTES)):
            headers = {k: v.decode() for k, v in message.headers}
            assert_valid("deadletter-headers", headers)
            assert headers["truncated"] == ("true" if len(message.value) < int(headers["value-length"]) else "false")


# ----------------------------------------------------------------- the document


def _asyncapi(folder: Path) -> dict:
    return yaml.safe_load((folder / contract.ASYNCAPI_FILE).read_text(encoding="utf-8"))


def _pointer(doc: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_asyncapi_document_names_every_topic_and_resolves_every_message(exported):
    folder, _ = exported
    doc = _asyncapi(folder)
    assert doc["asyncapi"] == "3.0.0" and doc["info"]["title"] and doc["info"]["version"]
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(config.load("topics")["topics"]) <= addresses
    assert {config.load("risk")["decisions_topic"], config.load("ledger")["deadletter_topic"]} <= addresses
    for channel in doc["channels"].values():
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]
        for name, ref in channel["messages"].items():
            message = _pointer(doc, ref["$ref"])
            assert message["name"] == name and message["bindings"]["kafka"]["key"]["description"]
            for part in ("payload", "headers"):
                if part in message and "$ref" in message[part]["schema"]:
                    assert message[part]["schemaFormat"].startswith("application/schema+json")
                    schema = json.loads((folder / message[part]["schema"]["$ref"]).read_text(encoding="utf-8"))
                    Draft202012Validator.check_schema(schema)
    for operation in doc["operations"].values():
        channel = _pointer(doc, operation["channel"]["$ref"])
        assert operation["action"] in ("send", "receive")
        for ref in operation["messages"]:
            assert ref["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            _pointer(doc, ref["$ref"])
        assert channel["messages"]


def test_every_event_type_has_a_schema_and_every_schema_a_type_or_message(exported):
    folder, _ = exported
    names = {p.name.removesuffix(".schema.json") for p in (folder / contract.SCHEMA_DIR).iterdir()}
    assert names - MESSAGES == set(events.PAYLOADS)
    assert MESSAGES <= names
    events_channel = _asyncapi(folder)["channels"][config.load("ledger")["topic"]]
    assert set(events_channel["messages"]) == set(events.PAYLOADS)
    for event_type in events.PAYLOADS:
        schema = json.loads((folder / contract.schema_path(event_type)).read_text(encoding="utf-8"))
        assert schema["properties"]["event_type"]["const"] == event_type


def test_the_exported_files_are_what_the_code_generates_now(exported, tmp_path):
    folder, report = exported
    generated = documents()
    on_disk = _files(folder)
    assert on_disk == generated, "an export differs from the code: re-run `clearline contract export`"
    assert report["files"] == sorted(generated)
    again = export(folder)
    assert again.exit_code == 0, again.output
    assert _files(folder) == on_disk, "a second export is byte-identical"


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------- the folder


def test_export_refuses_a_folder_with_files_it_did_not_write(tmp_path):
    (tmp_path / "README.md").write_text("ours, not the export's")
    result = export(tmp_path)
    assert result.exit_code == 2 and said(result).startswith("error:") and "README.md" in said(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    (tmp_path / "a-file").write_text("")
    result = export(tmp_path / "a-file")
    assert result.exit_code == 2 and "is a file; export needs a folder" in said(result)


def test_a_re_export_replaces_its_own_files_and_removes_ones_no_longer_generated(tmp_path):
    folder = tmp_path / "contract"
    assert export(folder).exit_code == 0
    stale = folder / contract.schema_path("order.cancelled")
    stale.write_text("{}")
    manifest = json.loads((folder / contract.MANIFEST_FILE).read_text())
    manifest["files"].append(contract.schema_path("order.cancelled"))
    (folder / contract.MANIFEST_FILE).write_text(json.dumps(manifest))
    (folder / contract.schema_path("decision")).write_text("edited by hand")
    assert export(folder).exit_code == 0
    assert not stale.exists()
    assert (folder / contract.schema_path("decision")).read_text() == documents()[contract.schema_path("decision")]
