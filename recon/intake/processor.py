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

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date

import polars as pl

from clearline.events import Money
from clearline.recon.intake.model import Problems, controls_frame
from clearline.recon.lines import SettlementLine, frame


@dataclass
class ProcessorFile:
    """Lines, payout rows and problems collected while reading one report."""

    lines: list[SettlementLine] = field(default_factory=list)
    payouts: list[tuple[str, int, int | None]] = field(default_factory=list)  # payout id, line, paid out
    problems: Problems = field(default_factory=Problems)

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        nets: dict[str, list[int | None]] = defaultdict(list)
        for line in self.lines:
            nets[line.payout_id].append(line.net.minor)
        controls = [
            (
                f"payout {payout_id} = sum of its lines' net",
                line_no,
                paid,
                None if None in nets[payout_id] else sum(nets[payout_id]),
            )
            for payout_id, line_no, paid in self.payouts
        ]
        return frame(self.lines, SettlementLine), controls_frame(controls), self.problems.frame()


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


def settle_days(
    out: ProcessorFile, undated: list[tuple[int, str, date | None]], closing: dict[str, date | None], column: str
) -> None:
    """Value days of the lines whose report has no value-date column: the day of their
    batch's payout row (the day the batch closed), else the line's own day; a line with
    neither is a problem naming the column."""
    for index, batch, own in undated:
        day = closing.get(batch) or own
        if day is None:
            out.problems.note(out.lines[index].line_no, f"{column}: no value date (no column, payout row or time)")
        out.lines[index] = replace(out.lines[index], value_date=day)
