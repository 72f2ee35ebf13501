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
import pyarrow.parquet as pq

from clearline.events import Money
from clearline.recon.intake.model import Problems, controls_frame
from clearline.recon.lines import SettlementLine, frame

# Settlement lines held at once while a report is read, judged (a GX run) and sorted: with
# 10,000 a 50 MB report peaked at 465 MiB, with 50,000 at 710 (GX's pandas copies, Parquet
# reads and Python objects all scale with it); smaller chunks cost time (more GX runs).
CHUNK_ROWS = 10_000


@dataclass
class ProcessorFile:
    """Lines, payout rows and problems collected while reading one report.

    Read in chunks: `add` keeps at most `chunk_rows` lines as Python objects and turns each
    full chunk into a frame (a frame of a line costs a fraction of the object), so a large
    report never holds one object per row. What the file as a whole must say is kept
    across chunks: each payout's running sum of its lines' nets (the control total), the
    payout rows, and the lines whose value day waits for their batch's payout row
    (`settle_days`), which may come in a later chunk.

    With `spill` (a Parquet path), each full chunk is appended to that file as a row group
    instead of being kept, so the lines are never one frame in memory: `frames` then
    gives the path as the lines. Its caller owns the file (intake deletes it unless the
    file is accepted, when it is renamed into the store).
    """

    chunk_rows: int = CHUNK_ROWS
    lines: list[SettlementLine] = field(default_factory=list)  # the chunk being read
    payouts: list[tuple[str, int, int | None]] = field(default_factory=list)  # payout id, line, paid out
    problems: Problems = field(default_factory=Problems)
    parts: list[pl.DataFrame] = field(default_factory=list)  # the chunks read, as frames
    nets: dict[str, int | None] = field(default_factory=dict)  # payout id -> sum of its lines' net so far
    undated: list[tuple[int, str, date | None]] = field(default_factory=list)  # line no, batch, its own day
    undated_column: str = ""  # the value-date column the report lacks (named in a problem)
    closing: dict[str, date | None] = field(default_factory=dict)  # batch -> the day its payout row closed it
    spill: Path | None = None  # where full chunks go, instead of `parts`
    _writer: pq.ParquetWriter | None = None

    def add(self, line: SettlementLine) -> None:
        total = self.nets.get(line.payout_id, 0)
        self.nets[line.payout_id] = None if total is None or line.net.minor is None else total + line.net.minor
        self.lines.append(line)
        if len(self.lines) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        part, self.lines = frame(self.lines, SettlementLine), []
        if self.spill is None:
            self.parts.append(part)
            return
        self._writer = spill_chunk(part, self.spill, self._writer)

    def frames(self) -> tuple[pl.DataFrame | Path, pl.DataFrame, pl.DataFrame]:
        self.flush()
        lines: pl.DataFrame | Path
        if self.spill is None:
            lines = pl.concat(self.parts) if self.parts else frame([], SettlementLine)
            self.parts = []
            lines = self._settled(lines.lazy()).collect()
        else:
            if self._writer is None:  # no line at all: an empty file with the lines' columns
                frame([], SettlementLine).write_parquet(self.spill)
            else:
                self._writer.close()
                self._writer = None
            if self.undated:  # rewritten with the days settled, streamed (never one frame)
                settled = self.spill.with_name(self.spill.name + ".settled")
                self._settled(pl.scan_parquet(self.spill)).sink_parquet(settled, row_group_size=self.chunk_rows)
                os.replace(settled, self.spill)
            lines = self.spill
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


def spill_chunk(part: pl.DataFrame, spill: Path, writer: pq.ParquetWriter | None) -> pq.ParquetWriter:
    """A chunk of lines appended to `spill` as a row group (the file opened, with the chunk's
    schema, by the first chunk); the writer, for the next chunk and the close."""
    table = part.to_arrow()
    if writer is None:
        spill.parent.mkdir(parents=True, exist_ok=True)
        writer = pq.ParquetWriter(spill, table.schema)
    writer.write_table(table)
    return writer


def money(minor: int | None, currency: str) -> Money:
    """Money that may hold None while unvalidated: the suite refuses nulls before use."""
    return Money(minor, currency)  # type: ignore[arg-type]


def classify(kinds: dict[str, str], text: str) -> str:
    """The line kind of a processor's record type; "unclassified" for one not in `kinds`
    (matched without regard to case, spaces or underscores: "Balancetransfer",
    "BalanceTransfer" and "balance_transfer" are one type)."""
    folded = {_fold(k): v for k, v in kinds.items()}
    return folded.get(_fold(text), "unclassified")


def _fold(text: str) -> str:
    return "".join(text.split()).replace("_", "").casefold()


def settle_days(out: ProcessorFile, line_no: int, batch: str, own: date | None, column: str) -> None:
    """Note a line whose report has no value-date column: its value day is settled once the
    whole report is read (its batch's payout row may come after it; see `ProcessorFile`)."""
    out.undated.append((line_no, batch, own))
    out.undated_column = column
