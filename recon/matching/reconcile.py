"""One reconciliation pass: the ledger's expectations, the processors' lines and the bank's
lines in; variances and what is still pending out.

A stream calls this on the state it holds whenever its watermark moves; a batch calls it
once on the stored inputs and keeps the variances of its date range (`within`). The
watermark (`as_of`) is the latest event time seen in the inputs, so a replay of the same
inputs decides every deadline the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone

import polars as pl

from clearline.recon.lines import STATEMENT_SCHEMA
from clearline.recon.matching import adjusted, bank, continuity, copies, settlements
from clearline.recon.matching.rules import Tolerances, as_of_day
from clearline.recon.matching.variance import finish


@dataclass(frozen=True)
class Inputs:
    """Frames with the schemas of `expectations` (settlements, movements) and `clearline.recon.lines`.

    Each may be in memory or lazy. A batch at ten million lines hands in Parquet scans
    (`pl.scan_parquet`): the matcher then reads each file in parts, only the columns each
    step needs, and never holds the millions of pairs that agree (a DataFrame works the
    same, it is just held whole by its caller).

    `statements` (`STATEMENT_SCHEMA`) are the bank statements the lines came in, and
    `bank_books` (`continuity.BOOKS_SCHEMA`, from `continuity.bank_books`) the accounts the
    ledger keeps bank cash for with their opening capital; without them there is nothing
    to check balances against, and no balance variance.

    `adjustments` (`adjusted.ADJUSTMENT_SCHEMA`) are the adjusting entries the ledger
    posted: each closes the variance it names (`Result.closed`), and what one moved in the
    platform's bank cash counts in every later balance."""

    expected_settlements: pl.DataFrame | pl.LazyFrame
    expected_movements: pl.DataFrame | pl.LazyFrame
    settlement_lines: pl.DataFrame | pl.LazyFrame
    bank_lines: pl.DataFrame | pl.LazyFrame
    statements: pl.DataFrame | pl.LazyFrame = field(default_factory=lambda: pl.DataFrame(schema=STATEMENT_SCHEMA))
    bank_books: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=continuity.BOOKS_SCHEMA))
    adjustments: pl.DataFrame | pl.LazyFrame = field(
        default_factory=lambda: pl.DataFrame(schema=adjusted.ADJUSTMENT_SCHEMA)
    )


@dataclass(frozen=True)
class Result:
    variances: pl.DataFrame  # variance.SCHEMA, one row per break still open
    pending: pl.DataFrame  # variance.PENDING_SCHEMA: not arrived yet, not a break before due_on
    as_of: date
    # adjusted.CLOSED_SCHEMA: breaks an adjusting entry closed, with the entry
    closed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=adjusted.CLOSED_SCHEMA))


def watermark(*times: datetime | date | None) -> datetime | None:
    """The latest of the inputs' event times (a date counts as its midnight, UTC)."""
    moments = [
        t if isinstance(t, datetime) else datetime(t.year, t.month, t.day, tzinfo=timezone.utc)
        for t in times
        if t is not None
    ]
    return max(moments) if moments else None


def input_watermark(inputs: Inputs, latest_event: datetime | None) -> datetime | None:
    """The watermark of a batch: the latest ledger event time and the latest day a
    processor line, bank line or statement carries."""
    return watermark(
        latest_event,
        _latest(inputs.settlement_lines, "value_date"),
        _latest(inputs.bank_lines, "booking_date"),
        _latest(inputs.statements, "closing_date"),
    )


def _latest(frame: pl.DataFrame | pl.LazyFrame, column: str) -> date | None:
    return frame.lazy().select(pl.col(column).max()).collect().item()


def reconcile(inputs: Inputs, tol: Tolerances, as_of: datetime | date) -> Result:
    day = as_of_day(as_of)
    lines = inputs.settlement_lines.lazy()
    # each line hashed once: the copies step reads its repeats from here
    seen = settlements.reported(inputs.expected_settlements, lines)
    known = (seen.later.drop("_l"), seen.heads.drop("_l"))
    inputs, copied = copies.sort_out(replace(inputs, settlement_lines=lines), known)  # sent twice counts once
    # with no copy taken out the lines are the same frame, and what `seen` says of them
    # holds; a copy is a later line, so without the copies it holds for all but those
    if inputs.settlement_lines is not lines:
        seen = seen.without(copies.sent_again(known))
    line_raw, line_pending = settlements.match(inputs.expected_settlements, inputs.settlement_lines, tol, day, seen)
    # the bank side is a line per payout batch: small, so held whole
    movements, bank_lines = inputs.expected_movements.lazy().collect(), inputs.bank_lines.lazy().collect()
    # what a stream carries of the bank cash of breaks worked and let go of is for balances only
    to_match = movements.filter(pl.col("kind") != continuity.WORKED)
    bank_raw, bank_pending = bank.match(to_match, inputs.settlement_lines, bank_lines, tol, day, copies_taken_out=True)
    pending = pl.concat([line_pending, bank_pending]).sort("awaiting", "processor", "reference", nulls_last=True)
    # each variance's id computed once (`finish`); the entries close what they name now,
    # so a balance mismatch tells the breaks still open from those closed
    found, closed = adjusted.close(finish(pl.concat([copied, line_raw, bank_raw]), day), inputs.adjustments)
    # the bank cash an adjusting entry moved is the ledger's too: balances read it, bank
    # lines are never matched against it
    booked = adjusted.bank_movements(inputs.adjustments, pl.concat([found, closed.select(found.columns)]))
    balance_raw = continuity.check(
        inputs.statements.lazy().collect(),
        inputs.bank_books,
        pl.concat([movements, booked.select(movements.columns)]) if booked.height else movements,
        bank_lines,
        found,
        closed,
        adjusted.platform_closes(inputs.adjustments),
        pending,
        inputs.expected_settlements,
    )
    balance_open, balance_closed = adjusted.close(finish(balance_raw, day), inputs.adjustments)
    still_open = pl.concat([found, balance_open]).sort("category", "variance_id")
    closed = pl.concat([closed, balance_closed]).sort("category", "variance_id")
    return Result(still_open, pending, day, closed)


def within(variances: pl.DataFrame, start: date | None, end: date | None) -> pl.DataFrame:
    """The variances whose `since` day is in [start, end] (either side open when None)."""
    keep = pl.lit(True)
    if start is not None:
        keep &= pl.col("since") >= start
    if end is not None:
        keep &= pl.col("since") <= end
    return variances.filter(keep)
