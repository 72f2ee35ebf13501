"""What the three processor layouts share: record types, value days and the payout row.

Each report ends a batch with a payout row (Adyen MerchantPayout, Stripe category payout,
Checkout.com Payout) that pays out the net of the batch's lines, every kind included
(fees, costs, balance transfers), so its amount is a control total: the suite expects it
to equal the sum of the nets of the lines with that payout id. The payout row itself is
not a settlement line (`clearline.recon.lines.RECORD_TYPES` has no payout): the bank
statement carries the money movement it announces.

A record type a parser does not know is never a reason to refuse a file: the line is
kept as "unclassified" with its amounts, counted in its batch, and matching reports it
as an unclassified_processor_line variance with its raw row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from clearline.events import Money
from clearline.recon.intake.chunks import CHUNK_ROWS, LineChunks
from clearline.recon.intake.model import Problems, controls_frame
from clearline.recon.lines import SettlementLine


@dataclass
class ProcessorFile:
    """Lines, payout rows and problems collected while reading one report.

    Read in chunks (`clearline.recon.intake.chunks`; with `spill`, `frames` gives the
    spill's path as the lines). What the file as a whole must say is kept across chunks:
    each payout's running sum of its lines' nets (the control total), the payout rows, and
    the lines whose value day waits for their batch's payout row (`settle_days`), which may
    come in a later chunk.
    """

    chunk_rows: int = CHUNK_ROWS
    payouts: list[tuple[str, int, int | None]] = field(default_factory=list)  # payout id, line, paid out
    problems: Problems = field(default_factory=Problems)
    nets: dict[str, int | None] = field(default_factory=dict)  # payout id -> sum of its lines' net so far
    undated: list[tuple[int, str, date | None]] = field(default_factory=list)  # line no, batch, its own day
    undated_column: str = ""  # the value-date column the report lacks (named in a problem)
    closing: dict[str, date | None] = field(default_factory=dict)  # batch -> the day its payout row closed it
    spill: Path | None = None  # where full chunks go as row groups
    _chunks: LineChunks = field(init=False)

    def __post_init__(self) -> None:
        self._chunks = LineChunks(SettlementLine, self.chunk_rows, self.spill)

    def add(self, line: SettlementLine) -> None:
        total = self.nets.get(line.payout_id, 0)
        self.nets[line.payout_id] = None if total is None or line.net.minor is None else total + line.net.minor
        self._chunks.append(line)

    def frames(self) -> tuple[pl.DataFrame | Path, pl.DataFrame, pl.DataFrame]:
        lines = self._chunks.result()
        if isinstance(lines, pl.DataFrame):
            lines = self._settled(lines.lazy()).collect()
        else:
            if self.undated:  # rewritten with the days settled, streamed (never one frame)
                settled = self.spill.with_name(self.spill.name + ".settled")
                self._settled(pl.scan_parquet(self.spill)).sink_parquet(settled, row_group_size=self.chunk_rows)
                os.replace(settled, self.spill)
        controls = [
            (f"payout {payout_id} = sum of its lines' net", line_no, paid, self.nets.get(payout_id, 0))
            for payout_id, line_no, paid in self.payouts
        ]
        return lines, controls_frame(controls), self.problems.frame()

    def _settled(self, lines: pl.LazyFrame) -> pl.LazyFrame:
        """Value days of the lines whose report has no value-date column: the day of their
        batch's payout row (the day the batch closed), else the line's own day; a line with
        neither is a problem naming the column (`settle_days` said which)."""
        if not self.undated:
            return lines
        column, days = self.undated_column, []
        for line_no, batch, own in self.undated:
            day = self.closing.get(batch) or own
            if day is None:
                self.problems.note(line_no, f"{column}: no value date (no column, payout row or time)")
            days.append((line_no, day))
        self.undated = []
        fix = pl.DataFrame(days, schema={"line_no": pl.Int64(), "settled": pl.Date()}, orient="row")
        joined = lines.join(fix.lazy(), on="line_no", how="left", maintain_order="left")
        return joined.with_columns(value_date=pl.coalesce("settled", "value_date")).drop("settled")


def money(minor: int | None, currency: str) -> Money:
    """Money that may hold None while unvalidated: the suite refuses nulls before use."""
    return Money(minor, currency)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Kinds:
    """A processor's record types and the line kind each is, looked up without regard to
    case, spaces or underscores ("Balancetransfer", "BalanceTransfer" and
    "balance_transfer" are one type); folded once, not per line."""

    folded: dict[str, str]

    @classmethod
    def of(cls, kinds: dict[str, str]) -> Kinds:
        return cls({_fold(k): v for k, v in kinds.items()})

    def classify(self, text: str) -> str:
        """The line kind of a record type; "unclassified" for one not known."""
        return self.folded.get(_fold(text), "unclassified")


def _fold(text: str) -> str:
    return "".join(text.split()).replace("_", "").casefold()


def settle_days(out: ProcessorFile, line_no: int, batch: str, own: date | None, column: str) -> None:
    """Note a line whose report has no value-date column: its value day is settled once the
    whole report is read (its batch's payout row may come after it; see `ProcessorFile`)."""
    out.undated.append((line_no, batch, own))
    out.undated_column = column
