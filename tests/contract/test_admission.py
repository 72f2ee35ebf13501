"""Admission: what the ledger refuses, and that every refusal says why."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from clearline import events
from clearline.admission import Refusal, admit, redacted_raw, sniff_event_id
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, sign

KEYS = TenantKeys.from_config()
PAN = "4111111111111111"


def _event(reseller="rs_001", token="tok_abcdef") -> bytes:
    return events.encode(
        events.Event(
            "evt_aaaa",
            "payment.authorized",
            datetime(2026, 1, 5, 10, tzinfo=timezone.utc),
            "m_00001",
            reseller,
            events.PaymentAuthorized("pay_a", "ord_a", "b_1", "adyen", "card", events.Money(1999, "EUR"), token),
        )
    )


def _headers(body: bytes, tenant="rs_001", key_tenant=None) -> list:
    return [(TENANT_HEADER, tenant.encode()), (SIGNATURE_HEADER, sign(body, KEYS.key(key_tenant or tenant)).encode())]


def test_a_signed_valid_event_is_admitted():
    body = _event()
    event = admit(body, _headers(body), KEYS)
    assert isinstance(event, events.Event) and event.event_id == "evt_aaaa"


@pytest.mark.parametrize(
    "case, reason",
    [
        ("no tenant header", "tenant"),
        ("unknown tenant", "tenant"),
        ("signed with another tenant's key", "signature"),
        ("one byte changed after signing", "signature"),
        ("body of another tenant", "tenant"),
        ("malformed json", "contract:json"),
        ("card number", "contract:pan"),
        ("tombstone", "empty"),
    ],
)
def test_refusals_name_the_reason(case, reason):
    body = _event()
    headers = _headers(body)
    if case == "no tenant header":
        headers = headers[1:]
    elif case == "unknown tenant":
        headers = [(TENANT_HEADER, b"rs_999"), headers[1]]
    elif case == "signed with another tenant's key":
        headers = _headers(body, "rs_001", key_tenant="rs_002")
    elif case == "one byte changed after signing":
        body = body.replace(b"1999", b"1998")
    elif case == "body of another tenant":
        body = _event(reseller="rs_002")
        headers = _headers(body, "rs_001")
    elif case == "malformed json":
        body = body[:-2]
        headers = _headers(body)
    elif case == "card number":
        body = _event(token=PAN)
        headers = _headers(body)
    elif case == "tombstone":
        body = None
    refusal = admit(body, headers, KEYS)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == reason
    assert len(refusal.detail) > 20


def test_a_card_number_never_survives_in_what_is_kept():
    body = _event(token=PAN)
    refusal = admit(body, _headers(body), KEYS)
    kept = redacted_raw(body, refusal)
    assert PAN.encode() not in kept and b"1111" in kept
    assert PAN not in refusal.detail and refusal.event_id is None


def test_event_id_is_sniffed_from_a_broken_message():
    assert sniff_event_id(b'{"event_id":"evt_zz","event_type":') == "evt_zz"
    assert sniff_event_id(b"not json") is None
