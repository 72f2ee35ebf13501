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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

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
    first: int  # index of its first line in BankFile.lines


@dataclass
class BankFile:
    lines: list[BankLine] = field(default_factory=list)
    controls: list[tuple[str, int, int | None, int | None]] = field(default_factory=list)
    problems: Problems = field(default_factory=Problems)
    statements: list[Statement] = field(default_factory=list)
    source_file: str = ""
    _open: _Open | None = None

    def open_statement(self, fmt: str, account: str, statement_id: str, sequence: str | None, line_no: int) -> None:
        if self._open is not None:
            raise RuntimeError("a statement is already open")  # a parser's bug, never the file's
        stated = {(s.account, s.statement_id, s.sequence) for s in self.statements}
        repeat, base = 1, sequence
        while (account, statement_id, sequence) in stated:
            repeat += 1
            sequence = f"{base or ''}#{repeat}"
        self._open = _Open(fmt, account, statement_id, sequence, line_no, len(self.lines))

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
                entries=len(self.lines) - s.first,
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
    ) -> None:
        """One entry of the open statement."""
        s = self._open
        if s is None:
            raise RuntimeError("an entry outside a statement")
        if amount is not None and not fits_i64(amount):
            self.problems.note(line_no, f"amount {amount} is beyond the range of a 64-bit count of minor units")
            amount = None
        self.lines.append(
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

    def control(self, name: str, line_no: int, declared: int | None, computed: int | None) -> None:
        self.controls.append((name, line_no, declared, computed))

    def balance(
        self, what: str, line_no: int, opening: int | None, closing: int | None, amounts: list[int | None]
    ) -> None:
        """opening + entries = closing, for a statement that states both balances."""
        computed = None if opening is None or None in amounts else opening + sum(amounts)  # type: ignore[operator]
        self.control(f"{what}: opening balance + entries = closing balance", line_no, closing, computed)

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        return (
            frame(self.lines, BankLine),
            controls_frame(self.controls),
            self.problems.frame(),
            frame(self.statements, Statement),
        )
