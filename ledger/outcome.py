"""What one consumed message becomes in the ledger: Posted (its postings) or Rejected
(why, with its bytes, card numbers masked).

The ledger flow and the reconciliation flow both call this, so reconciliation expects
exactly what the ledger posts. A message is anything that says where it was read and
what it holds (`Consumed`: a confluent-kafka Message is one), so the rule runs without
Kafka in tests and replays.
"""

from __future__ import annotations

from typing import Protocol

from clearline.admission import Refusal, admit, redacted_raw
from clearline.events import Event
from clearline.ledger.model import Outcome, Posted, Rejected, Source
from clearline.ledger.posting import post
from clearline.signing import TenantKeys


class Consumed(Protocol):
    """The parts of a consumed Kafka message the ledger reads."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


def to_outcome(msg: Consumed, keys: TenantKeys) -> Outcome:
    """One consumed message → Posted (its postings) or Rejected (why, with its bytes)."""
    source = Source(msg.topic(), msg.partition(), msg.offset())
    raw = msg.value()
    admitted = admit(raw, msg.headers() or [], keys)
    if isinstance(admitted, Refusal):
        return Rejected(source, admitted.event_id, admitted.reason, admitted.detail, redacted_raw(raw, admitted))
    return _posted(source, admitted, raw)


def to_outcomes(msgs: list[Consumed], keys: TenantKeys) -> list[Outcome]:
    return [to_outcome(m, keys) for m in msgs]


def _posted(source: Source, event: Event, raw: bytes) -> Outcome:
    try:
        postings = post(event)
    except ValueError as exc:  # a rule that cannot post this event says why
        return Rejected(source, event.event_id, "posting", str(exc), raw)
    return Posted(source, event.event_id, event.event_type, event.reseller_id, event.occurred_at, postings, event, raw)
