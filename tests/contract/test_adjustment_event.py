"""`adjustment.posted`, the one event type people publish: its nested legs and bounded
texts are checked by the decoder and by the exported JSON Schema alike, and it round-trips."""

from __future__ import annotations

import copy

import pytest

from clearline.events import MAX_CHARS, MAX_ITEMS, AdjustmentLeg, AdjustmentPosted, decode, encode
from tests.contract.schemas import problems as schema_problems
from tests.contract.test_events import doc_for, problems, raw

LEG = {"account": "suspense", "side": "debit", "amount": {"minor": 1, "currency": "USD"}}


def adjustment() -> dict:
    return doc_for("adjustment.posted")


def test_the_sample_round_trips_and_passes_its_schema():
    doc = adjustment()
    event = decode(raw(doc))
    assert isinstance(event.payload, AdjustmentPosted)
    assert event.payload.legs == (
        AdjustmentLeg("fee_expense:stripe", "debit", event.payload.legs[0].amount),
        AdjustmentLeg("processor_receivable:stripe", "credit", event.payload.legs[1].amount),
    )
    assert event.payload.legs[0].amount.minor == 25
    assert decode(encode(event)) == event
    assert schema_problems("adjustment.posted", doc) == []


def _with(change) -> dict:
    doc = copy.deepcopy(adjustment())
    change(doc["payload"])
    return doc


BROKEN = [
    ("zero leg", lambda p: p["legs"][0]["amount"].update(minor=0), "payload.legs[0].amount.minor", "range"),
    ("no legs", lambda p: p.update(legs=[]), "payload.legs", "length"),
    ("too many legs", lambda p: p.update(legs=[LEG] * (MAX_ITEMS["legs"] + 1)), "payload.legs", "length"),
    ("legs not a list", lambda p: p.update(legs=LEG), "payload.legs", "type"),
    ("a leg not an object", lambda p: p["legs"].append("suspense"), "payload.legs[2]", "type"),
    ("bad side", lambda p: p["legs"][1].update(side="Credit"), "payload.legs[1].side", "enum"),
    ("extra leg field", lambda p: p["legs"][0].update(memo="x"), "payload.legs[0].memo", "unknown"),
    ("float minor", lambda p: p["legs"][0]["amount"].update(minor=2.5), "payload.legs[0].amount.minor", "type"),
    ("long note", lambda p: p.update(note="x" * (MAX_CHARS["note"] + 1)), "payload.note", "length"),
    (
        "long approver",
        lambda p: p.update(approved_by="y" * (MAX_CHARS["approved_by"] + 1)),
        "payload.approved_by",
        "length",
    ),
    ("unknown kind", lambda p: p.update(kind="refund"), "payload.kind", "enum"),
    ("no approval time", lambda p: p.pop("approved_at"), "payload.approved_at", "missing"),
    ("empty code", lambda p: p.update(code=""), "payload.code", "type"),
]


@pytest.mark.parametrize("name, change, path, reason", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_adjustment_is_refused_by_the_decoder_and_the_schema(name, change, path, reason):
    doc = _with(change)
    assert problems(raw(doc)) == [(path, reason)]
    assert schema_problems("adjustment.posted", doc), f"the schema accepts: {name}"


def test_sixteen_legs_and_texts_at_their_limits_are_accepted():
    doc = _with(
        lambda p: p.update(
            legs=[LEG] * MAX_ITEMS["legs"],
            note="n" * MAX_CHARS["note"],
            proposed_by="p" * MAX_CHARS["proposed_by"],
            code="c" * MAX_CHARS["code"],
        )
    )
    assert len(decode(raw(doc)).payload.legs) == MAX_ITEMS["legs"]
    assert schema_problems("adjustment.posted", doc) == []
