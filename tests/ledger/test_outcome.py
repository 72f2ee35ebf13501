"""The message → outcome rule: whatever a message holds, it becomes Posted or Rejected, and
what a Rejected keeps of it is masked and bounded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from clearline.admission import KEPT_BYTES
from clearline.ledger import Posted, Rejected, to_outcome
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
