"""The ledger's records: what a consumed message becomes.

Every message the ledger flow consumes ends as exactly one Outcome — Posted (its postings),
or Rejected (why) — tagged with where it came from (partition, offset). The store turns a
Posted whose event_id it has already seen into a duplicate. These three are what the offset
accounting adds up: consumed = posted + duplicate + dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from clearline.events import Event, Money, quick_init


@quick_init
@dataclass(frozen=True, slots=True)
class Posting:
    """One leg: `amount` (a positive magnitude) debited or credited to `account`.

    Account keys are "<tenant>:<account>[:<sub-ledger key>]", e.g.
    "rs_001:merchant_payable:m_00001" or "platform:bank_cash"."""

    account: str
    side: Literal["debit", "credit"]
    amount: Money


@quick_init
@dataclass(frozen=True, slots=True)
class Source:
    """Where a message was consumed from."""

    topic: str
    partition: int
    offset: int


@quick_init
@dataclass(frozen=True, slots=True)
class Posted:
    source: Source
    event_id: str
    event_type: str
    tenant: str
    occurred_at: datetime
    postings: tuple[Posting, ...]
    event: Event | None = field(default=None, compare=False)  # for the archive; not stored
    body: bytes = field(default=b"", compare=False)  # the message as consumed, likewise


@quick_init
@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that could not be posted, kept with its bytes (card numbers masked, cut
    to a bounded prefix when long: `length` and `sha256` then describe the whole) and the reason.

    `event_id` is known when the body parsed far enough to name it; a retried bad event
    with the same id is then rejected the same way."""

    source: Source
    event_id: str | None
    reason: str
    detail: str
    raw: bytes | None  # masked, at most a bounded prefix of the message (None: the store made it)
    length: int | None = None  # of the whole message as kept (masked); None: len(raw)
    sha256: str | None = None  # hex SHA-256 of that whole; None: of raw


Outcome = Posted | Rejected
