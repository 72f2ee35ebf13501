"""References an adjusting entry settled are let go of: a bank line nothing explained,
parked in suspense, and a payout the bank never booked, taken back out of the bank's cash.
Each moves the ledger's bank cash on the entry's day, so every balance in between sums it
as worked; the stream carries that exactly, cuts the reference out with its entries and
its closed variance, and still ends with exactly the batch's variances, whatever arrives
late and touches it.

The 30-day world of test_retire gets the entry `propose_adjustment` proposes, a day after
it is raised, for every variance of those two kinds, and is fed day by day with a two-day
horizon."""

from __future__ import annotations

import copy
from datetime import datetime, time, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline import events
from clearline.pipelines.cli.recon import tolerances
from clearline.recon.adjustments import propose_adjustment
from clearline.recon.matching import adjusted
from clearline.recon.matching.continuous import Continuous, Retirement
from tests.recon.test_retire import BOOKS, _batch, _fed, frames, world  # noqa: F401
from tests.recon.test_retire_statements import _ends_as_the_batch

SETTLED = ("unexplained_bank_line", "payout_not_in_bank")


def _entry(variance: dict, n: int) -> dict:
    """The entry proposed for `variance` (else one by hand, moving no bank cash), approved
    the day after it was raised."""
    proposal = propose_adjustment(variance)
    legs = [(g.account, g.side, g.amount.minor, g.amount.currency) for g in proposal.legs] if proposal else []
    return {
        "event_id": f"evt_settled_{n}",
        "variance_id": variance["variance_id"],
        "merchant_id": variance["merchant_id"] or events.PLATFORM,
        "kind": proposal.kind if proposal else "manual",
        "code": "our_error",
        "approved_by": "checker@platform",
        "approved_at": datetime.combine(variance["since"] + timedelta(days=1), time(10), timezone.utc),
        "bank": adjusted.bank_net(legs),
    }


@pytest.fixture(scope="module")
def settled(frames, tmp_path_factory):
    """(inputs with an entry for every variance of `SETTLED` kinds, event times, the matcher
    fed all of it, what it published, the variances settled)."""
    inputs, times = frames
    batch, _ = _batch(inputs, times)
    # a processor's payout the bank never booked is settled with every break of its batch
    unbooked = batch.variances.filter((pl.col("category") == "payout_not_in_bank") & pl.col("payout_id").is_not_null())
    about = batch.variances.filter(
        pl.col("category").is_in(SETTLED) | pl.col("payout_id").is_in(unbooked["payout_id"].implode())
    )
    entries = [_entry(v, n) for n, v in enumerate(about.iter_rows(named=True))]
    inputs = {**inputs, "adjustments": pl.concat([inputs["adjustments"], adjusted.frame(entries)])}
    times = {**times, **{e["event_id"]: e["approved_at"] for e in entries}}
    flow = Continuous(tolerances(), BOOKS, Retirement(2, tmp_path_factory.mktemp("retired-settled")))
    published = _fed(flow, inputs, times)
    return inputs, times, flow, published, about


def _cut(flow: Continuous, about: pl.DataFrame) -> pl.DataFrame:
    """The variances of `about` whose reference the matcher no longer holds: no bank line or
    movement under it, no entry naming it."""
    bank = flow.holding("bank_lines").select(ref=pl.coalesce("reference", "bank_ref"))["ref"]
    held = pl.concat([bank, flow.holding("expected_movements")["reference"]]).drop_nulls()
    entries = flow.holding("adjustments")["variance_id"]
    return about.filter(~pl.col("reference").is_in(held.implode()) & ~pl.col("variance_id").is_in(entries.implode()))


def test_settled_references_are_cut_out_with_their_entries_and_the_stream_ends_as_the_batch(settled) -> None:
    inputs, times, flow, published, about = settled
    refs = about.filter(pl.col("category").is_in(SETTLED))
    assert set(refs["category"]) == set(SETTLED), "the world has both kinds"
    cut = _cut(flow, refs)
    assert set(cut["category"]) == set(SETTLED), "both kinds were let go of, each with its entry"
    payouts = cut["payout_id"].drop_nulls()
    assert payouts.len(), "a processor's payout the bank never booked went with its batch"
    assert not flow.holding("settlement_lines")["payout_id"].is_in(payouts.implode()).any()
    # the ledger's bank cash they moved is carried as worked: what the entries moved and the
    # movements expected, less what the bank booked under them, none of which a balance names
    held = flow.holding("adjustments")["event_id"].implode()
    entries = inputs["adjustments"].join(about.select("variance_id"), on="variance_id")
    moved = entries.filter(~pl.col("event_id").is_in(held)).explode("bank").unnest("bank")
    lines = inputs["bank_lines"].filter(pl.coalesce("reference", "bank_ref").is_in(cut["reference"].implode()))
    movements = inputs["expected_movements"].filter(pl.col("reference").is_in(cut["reference"].implode()))
    assert lines.height and movements.height
    expected = moved["minor"].sum() + movements["amount_minor"].sum() - lines["amount_minor"].sum()
    assert flow._carry["worked"].sum() == expected, "every carried worked movement is of a reference cut out"
    frozen = flow._frozen_closed["variance_id"]
    assert cut["variance_id"].is_in(frozen.implode()).all(), "each closed variance is kept as published"
    batch, _ = _batch(inputs, times)
    mismatches = batch.variances.filter(pl.col("category") == "bank_balance_mismatch")
    assert mismatches["actual"].str.contains("in variances closed by adjusting entries").any()
    _ends_as_the_batch(inputs, times, copy.deepcopy(flow), dict(published), {})


def _late_line(inputs, row: dict, days: int, **changes) -> dict[str, pl.DataFrame]:
    """A bank line of another statement, booked `days` after the settled reference's day."""
    line = inputs["bank_lines"].filter(pl.col("amount_currency") == row["currency"]).head(1)
    return {
        "bank_lines": line.with_columns(
            booking_date=pl.lit(row["since"] + timedelta(days=days)),
            value_date=pl.lit(row["since"] + timedelta(days=days)),
            source_file=pl.lit("late_statement.xml"),
            line_no=pl.lit(1, pl.Int64),
            statement_id=pl.lit(""),
            **({"bank_ref": pl.lit("LATE1")} | changes),
        )
    }


def _signed(inputs, reference: str) -> int:
    """The signed amount of the ledger movement, else the bank line, under `reference`."""
    moves = inputs["expected_movements"].filter(pl.col("reference") == reference)["amount_minor"]
    bank = inputs["bank_lines"].filter(pl.coalesce("reference", "bank_ref") == reference)["amount_minor"]
    return pl.concat([moves, bank])[0]


LATE = {
    # a bank line under the settled reference: a duplicate, or the payout booked after all
    "same reference": lambda inputs, row: _late_line(inputs, row, 1, reference=pl.lit(row["reference"])),
    # a bank line naming nothing, whose bank reference is the settled one's
    "bank reference": lambda inputs, row: _late_line(
        inputs, row, 1, reference=pl.lit(None, pl.String), bank_ref=pl.lit(row["reference"])
    ),
    # a line of the same amount under another reference, near the day: the matcher pairs
    # a movement and a line nothing else explains by amount
    "same amount": lambda inputs, row: _late_line(
        inputs,
        row,
        2,
        reference=pl.lit("LATE-SAME-AMOUNT"),
        amount_minor=pl.lit(_signed(inputs, row["reference"]), pl.Int64),
    ),
    # a second entry naming the closed variance: the first approved still closes it, the
    # second moves the bank cash again
    "entry": lambda inputs, row: {
        "adjustments": inputs["adjustments"]
        .filter(pl.col("variance_id") == row["variance_id"])
        .with_columns(event_id=pl.lit("evt_settled_again"), approved_at=pl.col("approved_at") + timedelta(days=3))
    },
}


# the three shapes let go of: a bank line, a movement, a processor's batch and its payout
SHAPES = {
    "bank line": (pl.col("category") == "unexplained_bank_line"),
    "movement": (pl.col("category") == "payout_not_in_bank") & pl.col("payout_id").is_null(),
    "batch": (pl.col("category") == "payout_not_in_bank") & pl.col("payout_id").is_not_null(),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("kind", sorted(LATE))
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_late_arrival_touching_a_settled_reference_brings_it_back_and_ends_as_the_batch(
    settled, data, kind, shape
) -> None:
    inputs, times, flow, published, about = settled
    flow, published = copy.deepcopy(flow), dict(published)
    cut = _cut(flow, about.filter(SHAPES[shape]))
    assert cut.height, f"a {shape} was let go of"
    row = cut.row(data.draw(st.integers(0, cut.height - 1)), named=True)
    late = LATE[kind](inputs, row)
    if kind == "entry":
        times = {**times, "evt_settled_again": late["adjustments"]["approved_at"][0]}
    units = flow.retired_units()
    _ends_as_the_batch(inputs, times, flow, published, late)
    assert flow.units_back > 0 and flow.retired_units() <= units
