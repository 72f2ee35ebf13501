"""The ledger's records: what a consumed message becomes.

Every message the ledger flow consumes ends as exactly one Outcome — Posted (its postings),
or Rejected (why) — tagged with where it came from (partition, offset). The store turns a
Posted whose event_id it has already seen into a duplicate. These three are what the offset
accounting adds up: consumed = posted + duplicate + dead-lettered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar

from clearline.events import Event, Money

T = TypeVar("T")


def _quick_init(cls: type[T]) -> type[T]:
    """A frozen, slotted dataclass whose `__init__` sets each field through its slot's
    descriptor instead of `object.__setattr__` by name: the same object (still frozen,
    equal and hashed as before) at about half the cost. The flow makes several of these
    records per consumed message."""
    names = [f.name for f in dataclasses.fields(cls)]
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    scope = {f"_set_{n}": getattr(cls, n).__set__ for n in names} | {f"_default_{n}": v for n, v in defaults.items()}
    params = ", ".join(f"{n}=_default_{n}" if n in defaults else n for n in names)
    body = "".join(f"\n    _set_{n}(self, {n})" for n in names)
    exec(f"def __init__(self, {params}):{body}", scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls


@_quick_init
@dataclass(frozen=True, slots=True)
class Posting:
    """One leg: `amount` (a positive magnitude) debited or credited to `account`.

    Account keys are "<tenant>:<account>[:<sub-ledger key>]", e.g.
    "rs_001:merchant_payable:m_00001" or "platform:bank_cash"."""

    account: str
    side: Literal["debit", "credit"]
    amount: Money


@_quick_init
@dataclass(frozen=True, slots=True)
class Source:
    """Where a message was consumed from."""

    topic: str
    partition: int
    offset: int


@_quick_init
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


@_quick_init
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
