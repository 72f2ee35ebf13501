"""What one consumed message becomes in the ledger: Posted (its postings) or Rejected
(why, with its bytes: card numbers masked whatever the reason, at most a bounded prefix).

The ledger flow and the reconciliation flow both call this, so reconciliation expects
exactly what the ledger posts. A message is anything that says where it was read and
what it holds (`Consumed`: a confluent-kafka Message is one), so the rule runs without
Kafka in tests and replays.
"""

from __future__ import annotations

from typing import Protocol

from clearline.admission import DETAIL_CHARS, Refusal, admit, kept
from clearline.events import Event, masked_text
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
    """One consumed message → Posted (its postings) or Rejected (why, with its bytes).

    Nothing a message holds may stop the flow: should admission or a posting rule fail in
    a way no rule foresaw, the message is refused as `unprocessable`, naming the error,
    like any other refusal (the rule's defect is then a dead letter to read, not a flow
    that dies on every restart)."""
    source = Source(msg.topic(), msg.partition(), msg.offset())
    raw = msg.value()
    try:
        admitted = admit(raw, msg.headers() or [], keys)
        if isinstance(admitted, Refusal):
            return _rejected(source, admitted.event_id, admitted.reason, admitted.detail, raw)
        return _posted(source, admitted, raw)
    except Exception as exc:  # noqa: BLE001 — the one place a message's failure is contained
        detail = f"{type(exc).__name__} while admitting or posting: {exc}"
        return _rejected(source, None, "unprocessable", masked_text(detail, DETAIL_CHARS), raw)


def to_outcomes(msgs: list[Consumed], keys: TenantKeys) -> list[Outcome]:
    return [to_outcome(m, keys) for m in msgs]


def _rejected(source: Source, event_id: str | None, reason: str, detail: str, raw: bytes | None) -> Rejected:
    k = kept(raw)
    return Rejected(source, event_id, reason, detail, k.data, k.length, k.sha256)


def _posted(source: Source, event: Event, raw: bytes) -> Outcome:
    try:
        postings = post(event)
    except ValueError as exc:  # a rule that cannot post this event says why
        return _rejected(source, event.event_id, "posting", masked_text(str(exc), DETAIL_CHARS), raw)
    return Posted(source, event.event_id, event.event_type, event.reseller_id, event.occurred_at, postings, event, raw)
