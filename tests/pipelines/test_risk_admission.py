"""The risk flow passes over, undecoded, only messages whose event no feature reads.

`passed_over` decides from the bytes alone; a message it passes over must never be one
that decodes to an event a feature reads (which would change features and decisions),
however the JSON is spelled: key order, whitespace, escapes, a second "event_type".
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.events import EVENT_TYPES, ContractError, decode, encode
from clearline.features import FEATURE_EVENTS
from clearline.pipelines.flows.risk import passed_over
from tests.contract.test_events import doc_for, events, mutated_docs


def _decoded_type(message: bytes) -> str | None:
    try:
        return decode(message).event_type
    except ContractError:
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_a_canonical_message_is_passed_over_exactly_when_no_feature_reads_its_type(event):
    message = encode(event)
    if b"\\" not in message:
        assert passed_over(message) == (event.event_type not in FEATURE_EVENTS)
    else:  # an escape anywhere: always admitted
        assert not passed_over(message)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutated_docs(),
    st.sampled_from([None, 1, "\t"]),
    st.sampled_from([(",", ":"), (", ", " : "), (",\n", ":\r\n")]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, *EVENT_TYPES]),
)
def test_what_is_passed_over_never_decodes_to_an_event_a_feature_reads(
    doc, indent, separators, ascii_only, sort_keys, nested_type
):
    if nested_type is not None and isinstance(doc.get("payload"), dict):
        doc["payload"]["event_type"] = nested_type  # a second "event_type", inside the payload
    message = json.dumps(
        doc, indent=indent, separators=separators, ensure_ascii=ascii_only, sort_keys=sort_keys
    ).encode()
    if passed_over(message):
        assert _decoded_type(message) not in FEATURE_EVENTS


def test_spellings_that_hide_the_type_are_admitted_not_passed_over():
    capture = json.dumps(doc_for("payment.captured"), separators=(",", ":"))
    order = json.dumps(doc_for("order.created"), separators=(",", ":"))
    assert passed_over(capture.encode())
    assert not passed_over(order.encode())
    # the type spelled with an escape is still an order once decoded
    escaped = order.replace('"event_type":"order.created"', '"event_type":"order\\u002ecreated"')
    assert _decoded_type(escaped.encode()) == "order.created" and not passed_over(escaped.encode())
    # a second "event_type" key (the last one wins when decoded): admitted, whatever the first says
    twice = order.replace(
        '"event_type":"order.created"', '"event_type":"payment.captured","event_type":"order.created"'
    )
    assert not passed_over(twice.encode())
    assert not passed_over(None) and not passed_over(b"")
