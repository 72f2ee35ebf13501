"""Admission: what the ledger refuses, and that every refusal says why."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from clearline import events
from clearline.admission import KEPT_BYTES, Refusal, admit, kept, sniff_event_id
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
    assert refusal.reason == "contract:pan"
    data = kept(body).data
    assert PAN.encode() not in data and b"1111" in data
    assert PAN not in refusal.detail and refusal.event_id is None


@pytest.mark.parametrize(
    "written",
    [
        PAN.encode(),
        b"4111 1111 1111 1111",
        b"4111-1111-1111-1111",
        "".join(f"\\u{ord(c):04x}" for c in PAN).encode(),  # JSON escapes
        PAN.encode("utf-16-le"),
        PAN.encode("utf-32-be"),
        b"\xff\xfe" + PAN.encode() + b"\xc3",  # inside bytes that are not UTF-8
    ],
)
def test_a_card_number_is_masked_whatever_the_refusal(written):
    """Refused for the signature, never parsed as an event: the number is masked all the same."""
    body = b'{"note":"' + written + b'"}'
    refusal = admit(body, _headers(body, key_tenant="rs_002"), KEYS)
    assert refusal.reason == "signature"
    data = kept(body).data
    assert written not in data and not events.contains_pan(data.decode("latin-1"), wide=True)
    assert data.startswith(b'{"note":"') and data.endswith(b'"}')


def test_a_card_number_in_the_tenant_header_is_masked_in_the_detail():
    body = _event()
    refusal = admit(body, [(TENANT_HEADER, PAN.encode()), (SIGNATURE_HEADER, b"v1=00")], KEYS)
    assert refusal.reason == "tenant" and PAN not in refusal.detail and "1111" in refusal.detail


def test_a_header_without_a_value_is_a_refusal_not_a_crash():
    body = _event()
    assert admit(body, [(TENANT_HEADER, None), (SIGNATURE_HEADER, None)], KEYS).reason == "tenant"
    assert admit(body, [(TENANT_HEADER, b"rs_001"), (SIGNATURE_HEADER, None)], KEYS).reason == "signature"


def test_a_long_message_is_kept_as_a_bounded_prefix_with_the_length_and_digest_of_the_whole():
    import hashlib

    whole = b"q" * 1_040_000
    k = kept(whole)
    assert k.data == whole[:KEPT_BYTES] and k.truncated
    assert (k.length, k.sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
    small = kept(b"abc")
    assert (small.data, small.length, small.truncated) == (b"abc", 3, False)


def test_the_cut_of_a_prefix_never_makes_a_card_number():
    """A 20-digit run is no card number; cut to a Luhn-valid 16 digits at the prefix's end, it
    would read as one: the kept prefix is masked again."""
    run = PAN + "0000"  # 4111111111111111 is Luhn-valid, the 20-digit run is not a candidate
    body = b"x" * (KEPT_BYTES - 16) + run.encode()
    assert not events.contains_pan(body.decode(), wide=True)
    k = kept(body)
    assert len(k.data) == KEPT_BYTES and not events.contains_pan(k.data.decode(), wide=True)


def test_event_id_is_sniffed_from_a_broken_message():
    assert sniff_event_id(b'{"event_id":"evt_zz","event_type":') == "evt_zz"
    assert sniff_event_id(b"not json") is None
