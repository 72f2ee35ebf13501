"""What the three bank formats share: collecting entries, balance controls, frames.

Signs, for every format: a bank line's amount is + for a credit to the platform's account
and - for a debit (BAI2 by the detail type code's direction, camt.053 by CdtDbtInd, MT940
by the D/C mark), in the account's minor units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from clearline.recon.intake.model import Problems, controls_frame, fits_i64
from clearline.recon.intake.processor import money
from clearline.recon.lines import BankLine, frame


@dataclass
class BankFile:
    lines: list[BankLine] = field(default_factory=list)
    controls: list[tuple[str, int, int | None, int | None]] = field(default_factory=list)
    problems: Problems = field(default_factory=Problems)

    def add(
        self,
        fmt: str,
        account: str,
        bank_ref: str | None,
        reference: str | None,
        text: str | None,
        amount: int | None,
        currency: str,
        booked: date | None,
        value: date | None,
        source_file: str,
        line_no: int,
    ) -> None:
        if amount is not None and not fits_i64(amount):
            self.problems.note(line_no, f"amount {amount} is beyond the range of a 64-bit count of minor units")
            amount = None
        self.lines.append(
            BankLine(
                format=fmt,
                account=account,
                bank_ref=bank_ref or "",
                reference=reference,
                text=text,
                amount=money(amount, currency),
                booking_date=booked,
                value_date=value or booked,
                source_file=source_file,
                line_no=line_no,
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

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        return frame(self.lines, BankLine), controls_frame(self.controls), self.problems.frame()
