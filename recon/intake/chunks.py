"""Lines read a chunk at a time, for every format that reads lines (processor reports,
bank statements).

At most `chunk_rows` lines are Python objects at once: each full chunk becomes a frame (a
frame of a line costs a fraction of the object), kept in memory or, with `spill` (a
Parquet path), appended to that file as a row group, so a large file is never one object
per line and, spilled, never one frame. The spill's caller owns the file (intake deletes
it unless the file is accepted, when it is renamed into the store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from clearline.recon.lines import frame

# Lines held at once while a file is read, judged (a GX run) and sorted: with 10,000 a 50 MB
# report peaked at 465 MiB, with 50,000 at 710 (GX's pandas copies, Parquet reads and
# Python objects all scale with it); smaller chunks cost time (more GX runs).
CHUNK_ROWS = 10_000


@dataclass
class LineChunks:
    line_type: type  # a dataclass of `clearline.recon.lines`: SettlementLine, BankLine
    chunk_rows: int = CHUNK_ROWS
    spill: Path | None = None
    pending: list = field(default_factory=list)  # the chunk being read
    _parts: list[pl.DataFrame] = field(default_factory=list)  # the chunks read, unless spilled
    _writer: pq.ParquetWriter | None = None

    def append(self, line) -> None:
        self.pending.append(line)
        if len(self.pending) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        """The chunk being read, as a frame: kept, or appended to the spill as a row group."""
        if not self.pending:
            return
        part, self.pending = frame(self.pending, self.line_type), []
        if self.spill is None:
            self._parts.append(part)
            return
        table = part.to_arrow()
        if self._writer is None:  # the file opened with the first chunk's schema
            self.spill.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.spill, table.schema)
        self._writer.write_table(table)

    def result(self) -> pl.DataFrame | Path:
        """Every line read: one frame, or the spill's path, closed (with no line at all, an
        empty file with the lines' columns)."""
        self.flush()
        if self.spill is None:
            lines = pl.concat(self._parts) if self._parts else frame([], self.line_type)
            self._parts = []
            return lines
        if self._writer is None:
            self.spill.parent.mkdir(parents=True, exist_ok=True)
            frame([], self.line_type).write_parquet(self.spill)
        else:
            self._writer.close()
            self._writer = None
        return self.spill
