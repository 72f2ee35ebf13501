"""What a parser hands on: the file's format, its normalised lines and the facts to check.

A parser never decides whether a file is good: it reads what is there, notes what it
could not normalise (`problems`, per line) and the totals the file declares about itself
(`controls`), and the suite judges all of it at once, so a report names every broken rule
rather than the first. Only a file that cannot be read at all raises `ParseError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from clearline.recon.lines import STATEMENT_SCHEMA

PROCESSOR_FORMATS = ("adyen", "stripe", "checkoutcom", "checkoutcom_breakdown")
BANK_FORMATS = ("bai2", "camt053", "mt940")

# One row per declared control: its name, the line that declares it, and the declared
# and recomputed values (minor units or counts). The suite expects the two to be equal.
CONTROL_SCHEMA = {"control": pl.String(), "line_no": pl.Int64(), "declared": pl.Int64(), "computed": pl.Int64()}
PROBLEM_SCHEMA = {"line_no": pl.Int64(), "problem": pl.String()}


class ParseError(ValueError):
    """The file cannot be read as any supported format; `line_no` says where (1-based)."""

    def __init__(self, reason: str, line_no: int | None = None) -> None:
        self.reason, self.line_no = reason, line_no
        super().__init__(f"line {line_no}: {reason}" if line_no else reason)


@dataclass
class Problems:
    """Values a parser could not normalise, each with the line it sits on."""

    items: list[tuple[int, str]] = field(default_factory=list)

    def note(self, line_no: int, problem: str) -> None:
        self.items.append((line_no, problem))

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.items, schema=PROBLEM_SCHEMA, orient="row")


def fits_i64(value: int) -> bool:
    """Frames hold money as i64; a larger amount in a file is a problem, never a crash."""
    return -(2**63) <= value < 2**63


def controls_frame(rows: list[tuple[str, int, int | None, int | None]]) -> pl.DataFrame:
    """Controls as a frame; a total beyond 64 bits is unreadable (None)."""

    def fit(value: int | None) -> int | None:
        return value if value is None or fits_i64(value) else None

    return pl.DataFrame([(c, n, fit(d), fit(k)) for c, n, d, k in rows], schema=CONTROL_SCHEMA, orient="row")


@dataclass(frozen=True)
class ParsedFile:
    """One file read: its lines have `clearline.recon.lines.SETTLEMENT_SCHEMA` (processor formats) or
    `BANK_SCHEMA` (bank formats); values that could not be normalised are null there and
    explained in `problems`. `statements` has `STATEMENT_SCHEMA`, one row per statement
    of a bank file (empty for processor reports).

    `rows` is the lines as a frame, or the path of a Parquet file they were spilled to a
    chunk at a time (a large report read by intake, `processor.ProcessorFile`), so they are
    never one frame in memory: `line_count` and `chunks` read such a file a row group at a
    time; `lines` reads it whole (for callers that want a frame of a small file)."""

    path: Path
    format: str
    rows: pl.DataFrame | Path
    controls: pl.DataFrame
    problems: pl.DataFrame
    statements: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=STATEMENT_SCHEMA))

    @property
    def kind(self) -> str:
        return "processor" if self.format in PROCESSOR_FORMATS else "bank"

    @property
    def spill(self) -> Path | None:
        return self.rows if isinstance(self.rows, Path) else None

    @property
    def lines(self) -> pl.DataFrame:
        return pl.read_parquet(self.rows) if isinstance(self.rows, Path) else self.rows

    @property
    def line_count(self) -> int:
        if isinstance(self.rows, Path):
            return pq.ParquetFile(self.rows).metadata.num_rows
        return self.rows.height

    def chunks(self, rows: int, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """The lines (only `columns`, when given) in frames of at most `rows` rows, in file
        order (at least one frame).
        A spill is read a slice at a time by Polars: pyarrow's batch reader held about
        twice as much memory for the same batches (measured: +230 MiB against +100 for
        50,000-row slices of a 50 MB report)."""
        if not isinstance(self.rows, Path):
            lines = self.rows if columns is None else self.rows.select(columns)
            yield from lines.iter_slices(rows) if lines.height else [lines]
            return
        spilled = pl.scan_parquet(self.rows)
        spilled = spilled if columns is None else spilled.select(columns)
        total = self.line_count
        if not total:
            yield spilled.collect()
        for start in range(0, total, rows):  # polars reads only the row groups a slice needs
            yield spilled.slice(start, rows).collect()
