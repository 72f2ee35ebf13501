"""What the three bank formats share: collecting statements and entries, balance controls, frames.

Signs, for every format: a bank line's amount is + for a credit to the platform's account
and - for a debit (BAI2 by the detail type code's direction, camt.053 by CdtDbtInd, MT940
by the D/C mark), in the account's minor units.

Statements: a parser opens a statement (`open_statement`: its account and identity),
adds its entries (each `BankLine` is stamped with the open statement's id and sequence)
and closes it with the balances it states (`close_statement`), which appends one
`clearline.recon.lines.Statement`. Entries added outside an open statement would have no
identity, so `add` refuses them. A file that states the same identity twice (BAI2 files
that report one account twice in a group) gets `#2`, `#3`, … on the later sequences, so
every statement of a file keeps an identity of its own.

Large statements: the parsers read a file a line (an XML entry) at a time and hand each
entry to `add` as they go, so what a statement costs is its lines, never the file's text.
`BankFile` holds its entries a chunk at a time (`clearline.recon.intake.chunks`, as
`ProcessorFile` does a processor report's lines); what a statement's controls need is
kept as running sums (`Sum`), not as a list of its amounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from clearline.recon.intake.chunks import CHUNK_ROWS, LineChunks
from clearline.recon.intake.model import Problems, controls_frame, fits_i64
from clearline.recon.intake.processor import money
from clearline.recon.lines import BankLine, Statement, frame


@dataclass(frozen=True)
class _Open:
    format: str
    account: str
    statement_id: str
    sequence: str | None
    line_no: int
    first: int  # index of its first line in the file (`BankFile.count` when it opened)


@dataclass
class Sum:
    """A running sum of amounts and their count; the sum is None once any amount is (one
    that could not be read), so a control over it is unknown rather than wrong."""

    total: int | None = 0
    count: int = 0

    def add(self, amount: int | None) -> None:
        self.count += 1
        self.total = None if self.total is None or amount is None else self.total + amount


@dataclass
class BankFile:
    controls: list[tuple[str, int, int | None, int | None]] = field(default_factory=list)
    problems: Problems = field(default_factory=Problems)
    statements: list[Statement] = field(default_factory=list)
    source_file: str = ""
    chunk_rows: int = CHUNK_ROWS
    spill: Path | None = None  # where full chunks go as row groups
    count: int = 0  # entries added so far
    _open: _Open | None = None
    _chunks: LineChunks = field(init=False)

    def __post_init__(self) -> None:
        self._chunks = LineChunks(BankLine, self.chunk_rows, self.spill)

    def open_statement(self, fmt: str, account: str, statement_id: str, sequence: str | None, line_no: int) -> None:
        if self._open is not None:
            raise RuntimeError("a statement is already open")  # a parser's bug, never the file's
        stated = {(s.account, s.statement_id, s.sequence) for s in self.statements}
        repeat, base = 1, sequence
        while (account, statement_id, sequence) in stated:
            repeat += 1
            sequence = f"{base or ''}#{repeat}"
        self._open = _Open(fmt, account, statement_id, sequence, line_no, self.count)

    def close_statement(
        self,
        opening: int | None,
        opening_date: date | None,
        closing: int | None,
        closing_date: date | None,
        currency: str,
    ) -> None:
        """The open statement with the balances it states (None where it states none)."""
        s, self._open = self._open, None
        if s is None:
            raise RuntimeError("no statement is open")
        self.statements.append(
            Statement(
                format=s.format,
                account=s.account,
                statement_id=s.statement_id,
                sequence=s.sequence,
                opening=money(opening if opening is None or fits_i64(opening) else None, currency),
                opening_date=opening_date,
                closing=money(closing if closing is None or fits_i64(closing) else None, currency),
                closing_date=closing_date,
                entries=self.count - s.first,
                source_file=self.source_file,
                line_no=s.line_no,
            )
        )

    def add(
        self,
        bank_ref: str | None,
        reference: str | None,
        text: str | None,
        amount: int | None,
        currency: str,
        booked: date | None,
        value: date | None,
        line_no: int,
        problems: Problems | None = None,
    ) -> int | None:
        """One entry of the open statement; the amount it holds (None where it is beyond 64
        bits, a problem noted in `problems`, by default the file's)."""
        s = self._open
        if s is None:
            raise RuntimeError("an entry outside a statement")
        if amount is not None and not fits_i64(amount):
            (self.problems if problems is None else problems).note(
                line_no, f"amount {amount} is beyond the range of a 64-bit count of minor units"
            )
            amount = None
        self._chunks.append(
            BankLine(
                format=s.format,
                account=s.account,
                bank_ref=bank_ref or "",
                reference=reference,
                text=text,
                amount=money(amount, currency),
                booking_date=booked,
                value_date=value or booked,
                source_file=self.source_file,
                line_no=line_no,
                statement_id=s.statement_id,
                sequence=s.sequence,
            )
        )
        self.count += 1
        return amount

    def control(self, name: str, line_no: int, declared: int | None, computed: int | None) -> None:
        self.controls.append((name, line_no, declared, computed))

    def balance(self, what: str, line_no: int, opening: int | None, closing: int | None, amounts: Sum) -> None:
        """opening + entries = closing, for a statement that states both balances."""
        computed = None if opening is None or amounts.total is None else opening + amounts.total
        self.control(f"{what}: opening balance + entries = closing balance", line_no, closing, computed)

    def frames(self) -> tuple[pl.DataFrame | Path, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Lines (a frame, or the spill's path), controls, problems, statements."""
        lines = self._chunks.result()
        return (
            lines,
            controls_frame(self.controls),
            self.problems.frame(),
            frame(self.statements, Statement),
        )
