"""Continuous reconciliation: the inputs seen so far, and what to publish as the event-time
watermark moves on.

The stream's core (the Bytewax flow is wiring around it): inputs arrive in any order and
are added as they come; `advance(watermark)` reconciles everything held at that watermark
and says which variances are new since the last publication and which published ones no
longer hold. With the inputs fixed, a later watermark only adds variances (pending items
come due, ids unchanged); a record arriving after its deadline is what withdraws one (a
line first called missing_at_processor arrives late: that variance is gone, a
late_settlement is new). At the end the published set is exactly what a batch over the
same inputs gives, because both are one `reconcile` call on the same frames.

Each advance reconciles the whole state, which is fine for a day's or a week's worth of
a merchant base and is what the batch does at ten million lines; a flow partitioned by
processor and currency keeps each state to its own share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl

from clearline.recon.lines import BANK_SCHEMA, SETTLEMENT_SCHEMA, STATEMENT_SCHEMA
from clearline.recon.matching import adjusted, continuity, expectations
from clearline.recon.matching.reconcile import Inputs, Result, reconcile
from clearline.recon.matching.rules import Tolerances

_EMPTY = Inputs(
    pl.DataFrame(schema=expectations.SETTLEMENT_SCHEMA),
    pl.DataFrame(schema=expectations.BANK_WITH_MERCHANT),
    pl.DataFrame(schema=SETTLEMENT_SCHEMA),
    pl.DataFrame(schema=BANK_SCHEMA),
    pl.DataFrame(schema=STATEMENT_SCHEMA),
    adjustments=pl.DataFrame(schema=adjusted.ADJUSTMENT_SCHEMA),
)
_HELD = ("expected_settlements", "expected_movements", "settlement_lines", "bank_lines", "statements", "adjustments")


@dataclass(frozen=True)
class Changes:
    new: pl.DataFrame  # variances not published before (variance.SCHEMA)
    changed: pl.DataFrame  # published before, with other facts now (a line joined a batch; not mere age)
    gone: list[str]  # ids published before that the inputs no longer support (closed ones too: result.closed)
    result: Result  # the whole reconciliation at this watermark


@dataclass
class Continuous:
    tol: Tolerances
    books: pl.DataFrame | None = None  # continuity.BOOKS_SCHEMA: what the statements' balances are tied to
    _parts: dict[str, list[pl.DataFrame]] = field(default_factory=lambda: {name: [] for name in _HELD})
    _published: dict[str, int] = field(default_factory=dict)  # id -> hash of its facts but age

    def add(self, **frames: pl.DataFrame) -> None:
        """Hold more inputs: any of expected_settlements, expected_movements,
        settlement_lines, bank_lines, statements, adjustments, with the schemas of
        `reconcile.Inputs`."""
        for name, frame in frames.items():
            if frame.height:
                self._parts.setdefault(name, []).append(frame)  # setdefault: a snapshot from before statements

    def advance(self, watermark: datetime | date) -> Changes:
        """Reconcile what is held at `watermark`: what to publish, what to withdraw."""
        frames = {name: pl.concat([getattr(_EMPTY, name), *self._parts.get(name, [])]) for name in _HELD}
        for name, parts in self._parts.items():  # one frame each from now on
            parts[:] = [frames[name]] if frames[name].height else []
        books = self.books if self.books is not None else pl.DataFrame(schema=continuity.BOOKS_SCHEMA)
        result = reconcile(Inputs(**frames, bank_books=books), self.tol, watermark)
        facts = dict(zip(result.variances["variance_id"], facts_hash(result.variances)))
        known = pl.col("variance_id").is_in(list(self._published))
        moved = [vid for vid, h in facts.items() if vid in self._published and self._published[vid] != h]
        changes = Changes(
            result.variances.filter(~known),
            result.variances.filter(pl.col("variance_id").is_in(moved)),
            sorted(self._published.keys() - facts.keys()),
            result,
        )
        self._published = facts
        return changes


def facts_hash(variances: pl.DataFrame) -> pl.Series:
    """A hash per variance of everything it says except its age, which grows with every
    watermark and is no news."""
    return variances.drop("age_days").hash_rows(seed=0)
