"""HMAC-SHA256 signing of event messages with per-tenant keys (clearline/signing.py)."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timezone

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline import config, signing
from clearline.events import Event, Money, PaymentCaptured, decode, encode
from clearline.signing import TenantKeys, UnknownTenant, sign, verify

SETTINGS = settings(max_examples=100, deadline=None)
TENANTS_YAML = config.default_dir() / "tenants.yaml"
KEY_A = bytes.fromhex("4e6f72746877696e642d6465762d6b65792d30303100000000000000000000aa01")
KEY_B = bytes(range(32))


@pytest.fixture
def clean_env(monkeypatch):
    """No key overrides and the repository's own configs/ directory."""
    monkeypatch.delenv("CLEARLINE_CONFIG_DIR", raising=False)
    for tenant in _yaml_tenants():
        monkeypatch.delenv(_env_name(tenant), raising=False)
    return monkeypatch


def _yaml_tenants() -> dict:
    return yaml.safe_load(TENANTS_YAML.read_text())["tenants"]


def _env_name(tenant: str) -> str:
    # as documented in configs/tenants.yaml: upper-cased, non-alphanumerics as _
    return "CLEARLINE_HMAC_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", tenant).upper()


def _event_bytes(reseller: str = "rs_001") -> bytes:
    return encode(
        Event(
            event_id="evt_1",
            event_type="payment.captured",
            occurred_at=datetime(2024, 3, 14, 9, 26, 53, 589793, tzinfo=timezone.utc),
            merchant_id="mer_42",
            reseller_id=reseller,
            payload=PaymentCaptured(
                payment_id="pay_1", capture_id="cap_1", processor="stripe", amount=Money(1999, "USD"), final=True
            ),
        )
    )


# ------------------------------------------------------------------------ sign/verify


def test_sign_matches_rfc_4231_test_case_1():
    # RFC 4231 section 4.2: key 0x0b * 20, data "Hi There"
    expected = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert sign(b"Hi There", b"\x0b" * 20) == "v1=" + expected


def test_sign_is_hmac_sha256_of_the_exact_bytes():
    body = _event_bytes()
    assert sign(body, KEY_A) == "v1=" + hmac.new(KEY_A, body, hashlib.sha256).hexdigest()
    assert re.fullmatch(r"v1=[0-9a-f]{64}", sign(body, KEY_A))


@SETTINGS
@given(body=st.binary(max_size=2048), key=st.binary(min_size=16, max_size=64))
def test_sign_verify_round_trip(body, key):
    signature = sign(body, key)
    assert verify(body, signature, key) is True
    assert verify(body, signature.encode("ascii"), key) is True  # header values often arrive as bytes


@SETTINGS
@given(bodies=st.lists(st.binary(max_size=600), min_size=1, max_size=4), key=st.binary(max_size=80))
def test_each_message_is_signed_alone_however_often_its_key_was_used(bodies, key):
    """sign/verify keep one HMAC state per key and copy it per message: each signature
    must still be the HMAC of that message alone, whatever came before under the key."""
    for body in bodies:
        assert sign(body, key) == "v1=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def test_round_trip_on_an_encoded_event():
    body = _event_bytes()
    assert verify(body, sign(body, KEY_A), KEY_A)
    assert decode(body).reseller_id == "rs_001"


@SETTINGS
@given(data=st.data(), body=st.binary(min_size=1, max_size=512), xor=st.integers(1, 255))
def test_flipping_any_byte_fails_verification(data, body, xor):
    index = data.draw(st.integers(0, len(body) - 1))
    signature = sign(body, KEY_A)
    tampered = bytearray(body)
    tampered[index] ^= xor
    assert bytes(tampered) != body
    assert verify(bytes(tampered), signature, KEY_A) is False


@SETTINGS
@given(data=st.data(), xor=st.integers(1, 255))
def test_flipping_any_byte_of_an_event_fails_verification(data, xor):
    body = _event_bytes()
    index = data.draw(st.integers(0, len(body) - 1))
    tampered = bytearray(body)
    tampered[index] ^= xor
    assert verify(bytes(tampered), sign(body, KEY_A), KEY_A) is False


def test_appending_or_truncating_fails_verification():
    body = _event_bytes()
    signature = sign(body, KEY_A)
    assert not verify(body + b" ", signature, KEY_A)
    assert not verify(body[:-1], signature, KEY_A)
    assert not verify(b"", signature, KEY_A)


def test_another_tenants_key_fails(clean_env):
    keys = TenantKeys.from_config()
    body = _event_bytes("rs_001")
    forged = sign(body, keys.key("rs_002"))
    assert not verify(body, forged, keys.key("rs_001"))
    assert verify(body, sign(body, keys.key("rs_001")), keys.key("rs_001"))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        b"",
        "v1=",
        "v1=zz",
        "v1=" + "0" * 64,
        "garbage",
        "sha256=" + "0" * 64,
    ],
)
def test_missing_or_garbled_signature_fails(header):
    assert verify(_event_bytes(), header, KEY_A) is False


def test_signature_in_the_wrong_shape_fails():
    body = _event_bytes()
    good = sign(body, KEY_A)
    digest = good.removeprefix("v1=")
    assert not verify(body, digest, KEY_A)  # scheme missing
    assert not verify(body, "v2=" + digest, KEY_A)  # unknown scheme
    assert not verify(body, good[:-1], KEY_A)  # truncated
    assert not verify(body, good + "0", KEY_A)  # extended
    assert not verify(body, " " + good, KEY_A)


@pytest.mark.parametrize("header", [b"v1=\xff" + b"0" * 63, "v1=é" + "0" * 63, "v1=\u00a0"])
def test_non_ascii_signature_fails_without_raising(header):
    assert verify(_event_bytes(), header, KEY_A) is False


# ------------------------------------------------------------------------- tenant keys


def test_from_config_knows_the_configured_tenants(clean_env):
    expected = {tenant: bytes.fromhex(spec["hmac_key"]) for tenant, spec in _yaml_tenants().items()}
    assert {"rs_001", "rs_002", "rs_003"} <= set(expected)
    keys = TenantKeys.from_config()
    assert keys.keys == expected
    for tenant, key in expected.items():
        assert keys.key(tenant) == key
    assert len(set(expected.values())) == len(expected)  # each tenant has its own key
    assert keys.key("rs_001") == KEY_A


def test_env_override_takes_precedence(clean_env):
    override = bytes(range(100, 132))
    clean_env.setenv("CLEARLINE_HMAC_KEY_RS_002", override.hex())
    keys = TenantKeys.from_config()
    assert keys.key("rs_002") == override
    assert keys.key("rs_001") == bytes.fromhex(_yaml_tenants()["rs_001"]["hmac_key"])  # others untouched
    body = _event_bytes("rs_002")
    yaml_key = bytes.fromhex(_yaml_tenants()["rs_002"]["hmac_key"])
    assert not verify(body, sign(body, yaml_key), keys.key("rs_002"))


def test_empty_env_override_falls_back_to_config(clean_env):
    clean_env.setenv("CLEARLINE_HMAC_KEY_RS_003", "")
    assert TenantKeys.from_config().key("rs_003") == bytes.fromhex(_yaml_tenants()["rs_003"]["hmac_key"])


@pytest.mark.parametrize("tenant", ["rs_999", "RS_001", "", "rs_001 "])
def test_unknown_tenant(clean_env, tenant):
    keys = TenantKeys.from_config()
    with pytest.raises(UnknownTenant) as info:
        keys.key(tenant)
    assert repr(tenant) in str(info.value)
    assert isinstance(info.value, LookupError)


def test_header_names():
    assert signing.SIGNATURE_HEADER == "x-clearline-signature"
    assert signing.TENANT_HEADER == "x-clearline-tenant"
