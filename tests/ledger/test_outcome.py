"""The message → outcome rule: whatever a message holds, it becomes Posted or Rejected, and
what a Rejected keeps of it is masked and bounded."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearline.admission import KEPT_BYTES
from clearline.events import SCHEMA_VERSION, Event, Money
from clearline.ledger import Posted, Rejected, Source, to_outcome
from clearline.ledger.model import Posting
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys

KEYS = TenantKeys.from_config()
PAN = "4111111111111111"


@dataclass
class Message:
    """A consumed message as the rule reads it (a confluent-kafka Message has these)."""

    raw: bytes | None
    head: list | None

    def topic(self) -> str:
        return "payments.events"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def value(self) -> bytes | None:
        return self.raw

    def headers(self) -> list | None:
        return self.head


def test_a_failure_no_rule_foresaw_is_a_dead_letter_naming_it_not_a_crash():
    """A header value of the wrong type breaks admission itself: the message is refused as
    unprocessable, with the error named and the bytes kept masked."""
    out = to_outcome(Message(f"card {PAN}".encode(), [(TENANT_HEADER, 5), (SIGNATURE_HEADER, b"v1=0")]), KEYS)
    assert isinstance(out, Rejected) and out.reason == "unprocessable"
    assert "AttributeError" in out.detail and out.event_id is None
    assert PAN.encode() not in out.raw and out.raw.endswith(b"1111")


def test_a_rejection_keeps_a_bounded_masked_prefix_with_the_size_and_digest_of_the_whole():
    body = PAN.encode() + b" " + b"q" * 1_000_000
    out = to_outcome(Message(body, []), KEYS)
    assert isinstance(out, Rejected) and out.reason == "tenant"
    masked = b"************1111 " + b"q" * 1_000_000
    assert out.raw == masked[:KEPT_BYTES]
    assert (out.length, out.sha256) == (len(masked), hashlib.sha256(masked).hexdigest())


def test_a_tombstone_is_refused_with_an_empty_value():
    out = to_outcome(Message(None, None), KEYS)
    assert isinstance(out, Rejected) and not isinstance(out, Posted)
    assert (out.reason, out.raw, out.length) == ("empty", b"", 0)


@given(
    st.text(min_size=1, max_size=8),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.integers(min_value=0, max_value=10**12),
    st.one_of(st.none(), st.integers(min_value=1, max_value=9)),
)
def test_records_built_by_quick_init_are_the_dataclass_s_own(text, when, minor, version):
    """`quick_init` replaces the frozen dataclass `__init__` of the records made per
    message (Event, Money, Source, Posted…): built positionally or by name, with or without
    a default, each holds exactly its fields, compares and hashes by them, and stays frozen."""
    amount = Money(minor, "EUR")
    assert (amount.minor, amount.currency) == (minor, "EUR") and amount == Money(currency="EUR", minor=minor)
    extra = {} if version is None else {"schema_version": version}
    event = Event(text, "order.created", when, "m_1", "rs_001", amount, **extra)
    by_name = Event(
        event_id=text,
        event_type="order.created",
        occurred_at=when,
        merchant_id="m_1",
        reseller_id="rs_001",
        payload=amount,
        **extra,
    )
    assert [getattr(event, f.name) for f in dataclasses.fields(Event)] == [
        text,
        "order.created",
        when,
        "m_1",
        "rs_001",
        amount,
        SCHEMA_VERSION if version is None else version,
    ]
    assert event == by_name and hash(event) == hash(by_name)
    source = Source("t", 1, minor)
    posted = Posted(source, text, "order.created", "rs_001", when, (Posting("rs_001:a", "debit", amount),), event)
    assert (
        posted.body == b""
        and posted.event is event
        and posted == Posted(source, text, "order.created", "rs_001", when, posted.postings)
    )
    for record, name in ((amount, "minor"), (event, "event_id"), (source, "offset"), (posted, "tenant")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, name, None)
