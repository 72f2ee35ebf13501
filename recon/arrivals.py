"""What the reconciliation flow takes from its two topics, as records the matcher holds.

payments.events: every message goes through the ledger's own admission and posting
(`clearline.ledger.outcome.to_outcome`), so reconciliation expects exactly what the ledger
posted and archived; refused ones are the ledger's business (it dead-letters them) and
are only counted here. An admitted event's time moves the watermark whether or not it
sets up an expectation, as the batch's watermark is the latest event in the archive;
except an event a person publishes (`events.PERSON_EVENT_TYPES`: an adjusting entry),
stamped when it was approved, which may be months after the traffic it corrects: it
closes what it names whenever it comes, and never makes pending items due.

payments.settlements: the lines intake validated and published (`clearline.recon.intake.publish`),
one JSON message per line and per bank statement, back into rows of `clearline.recon.lines`'
schemas. A message that is not such a line cannot come from intake; it is counted and
logged with its offset, and nothing in it is matched.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import polars as pl
from confluent_kafka import Message

from clearline import events
from clearline.ledger import Posted, to_outcome
from clearline.recon.lines import BANK_SCHEMA, SETTLEMENT_SCHEMA, STATEMENT_SCHEMA
from clearline.recon.matching import adjusted, expectations
from clearline.recon.matching.expectations import ExpectedBankMovement, ExpectedSettlement
from clearline.signing import TenantKeys

log = logging.getLogger(__name__)
LINE_SCHEMAS = {"processor": SETTLEMENT_SCHEMA, "bank": BANK_SCHEMA, "statement": STATEMENT_SCHEMA}
# The day a published record moves the watermark by (a statement: the day it closes, or opens).
_DAYS = {"processor": ("value_date",), "bank": ("booking_date",), "statement": ("closing_date", "opening_date")}


@dataclass
class Arrivals:
    """One poll batch's worth of inputs: expectations keyed by event id, lines keyed by
    (file SHA-256, line number) and statements by ("<file SHA-256>:statement", line
    number), so a message read twice (a replay after a crash, the same event re-sent) is
    held once. `latest` is the latest event time or line day."""

    expected: dict[str, ExpectedSettlement | ExpectedBankMovement] = field(default_factory=dict)
    adjustments: dict[str, dict] = field(default_factory=dict)  # adjusting entries' rows (`adjusted.adjustment`)
    lines: dict[tuple[str, int], tuple[str, dict]] = field(default_factory=dict)
    latest: datetime | None = None
    consumed: int = 0
    refused: int = 0
    bad_lines: int = 0

    def saw(self, moment: datetime) -> None:
        self.latest = moment if self.latest is None or moment > self.latest else self.latest


def from_events(msgs: list[Message], keys: TenantKeys) -> Arrivals:
    """Admitted events' expectations; an event reconciliation ignores still moves time."""
    got = Arrivals(consumed=len(msgs))
    for msg in msgs:
        outcome = to_outcome(msg, keys)
        if not isinstance(outcome, Posted):
            got.refused += 1
            continue
        expected = expectations.expectation(outcome.event)
        if expected is not None:
            got.expected.setdefault(outcome.event_id, expected)
        entry = adjusted.adjustment(outcome.event)
        if entry is not None:
            got.adjustments.setdefault(outcome.event_id, entry)
        if outcome.event.event_type not in events.PERSON_EVENT_TYPES:
            got.saw(outcome.event.occurred_at)
    return got


def _typed(value, dtype: pl.DataType):
    if value is None:
        return None
    if dtype == pl.Date():
        return date.fromisoformat(value)
    if isinstance(dtype, pl.Datetime):
        return datetime.fromisoformat(value).astimezone(timezone.utc)
    return value


def line_row(body: dict) -> tuple[str, dict]:
    """(kind, row of that kind's schema) of one published line; KeyError/ValueError when
    the message is not one."""
    kind = body["kind"]
    schema = LINE_SCHEMAS[kind]
    return kind, {name: _typed(body[name], dtype) for name, dtype in schema.items()}


def from_settlements(msgs: list[Message]) -> Arrivals:
    got = Arrivals(consumed=len(msgs))
    for msg in msgs:
        try:
            body = json.loads(msg.value())
            kind, row = line_row(body)
            file = str(body["file_sha256"]) + (":statement" if kind == "statement" else "")
            key = (file, int(body["line_no"]))
        except (TypeError, KeyError, ValueError) as exc:
            got.bad_lines += 1
            log.warning(
                "%s[%d]@%d is not a line intake published (%s: %s); not matched",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                type(exc).__name__,
                exc,
            )
            continue
        got.lines.setdefault(key, (kind, row))
        day = next((row[c] for c in _DAYS[kind] if row[c] is not None), None)
        if day is not None:
            got.saw(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))
    return got


def line_frames(lines: list[tuple[str, dict]]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(settlement lines, bank lines, statements) frames of held rows."""
    return tuple(
        pl.DataFrame([row for k, row in lines if k == kind], schema=LINE_SCHEMAS[kind], orient="row")
        for kind in ("processor", "bank", "statement")
    )
