"""What the three processor layouts share: the payout row as the batch's control total.

Each report ends a batch with a payout row (Adyen MerchantPayout, Stripe category payout,
Checkout.com Payout) that pays out the net of the batch's lines, so its amount is a
control total: the suite expects it to equal the sum of the nets of the lines with that
payout id. The payout row itself is not a settlement line (`clearline.recon.lines.RECORD_TYPES` has
no payout): the bank statement carries the money movement it announces.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

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
