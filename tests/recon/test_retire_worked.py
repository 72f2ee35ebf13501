"""Batches whose breaks were all worked are let go of too: a payout the bank booked at
another amount than the ledger expected (the processor paid what its lines say) leaves a
difference in every later balance for good. Once an adjusting entry closed every variance
about it, a balance sums that difference as worked and names none of it, so the stream
may cut the batch out, carry the difference as one `continuity.WORKED` movement, and still
end with exactly the batch's variances, whatever arrives late and touches the batch.

The 30-day world of test_retire gets a write-off, a day after it is raised, for every
variance of such batches, and is fed day by day with a two-day horizon."""

from __future__ import annotations

import copy
from datetime import datetime, time, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.pipelines.cli.recon import tolerances
from clearline.recon.matching import adjusted
from clearline.recon.matching.continuous import Continuous, Retirement
from tests.recon.test_retire import BOOKS, _batch, _fed, _late_copy, frames, world  # noqa: F401
from tests.recon.test_retire_statements import _ends_as_the_batch


def _differing(inputs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(payout, ledger's amount, bank's amount) of the payouts the bank booked at another amount."""
    moves = inputs["expected_movements"].filter(pl.col("kind") == "processor_payout")
    bank = inputs["bank_lines"].select("reference", bank="amount_minor")
    return (
        moves.select("reference", ledger="amount_minor")
        .join(bank, on="reference")
        .filter(pl.col("ledger") != pl.col("bank"))
        .sort("reference")
    )


@pytest.fixture(scope="module")
def worked(frames, tmp_path_factory):
    """(inputs with a write-off for every variance of the differing batches, event times,
    the matcher fed all of it, what it published, the variances worked)."""
    inputs, times = frames
    batch, _ = _batch(inputs, times)
    differing = _differing(inputs)["reference"]
    about = batch.variances.filter(pl.col("payout_id").is_in(differing.implode()))
    entries = [
        {
            "event_id": f"evt_worked_{n}",
            "variance_id": v["variance_id"],
            "merchant_id": v["merchant_id"] or "platform",
            "kind": "write_off",
            "code": "processor_error",
            "approved_by": "checker@platform",
            "approved_at": datetime.combine(v["since"] + timedelta(days=1), time(10), timezone.utc),
            "bank": [],
        }
        for n, v in enumerate(about.iter_rows(named=True))
    ]
    inputs = {**inputs, "adjustments": pl.concat([inputs["adjustments"], adjusted.frame(entries)])}
    times = {**times, **{e["event_id"]: e["approved_at"] for e in entries}}
    flow = Continuous(tolerances(), BOOKS, Retirement(2, tmp_path_factory.mktemp("retired-worked")))
    published = _fed(flow, inputs, times)
    return inputs, times, flow, published, about


def _cut(flow: Continuous, payouts: pl.Series) -> pl.Series:
    """The `payouts` whose batches were cut out whole: the matcher holds none of their
    lines, nor their bank line (a batch that stays may have had its agreeing pairs cut out)."""
    payouts = payouts.unique().sort()
    held = pl.concat([flow.holding("settlement_lines")["payout_id"], flow.holding("bank_lines")["reference"]])
    return payouts.filter(~payouts.is_in(held.drop_nulls().implode()))


def test_a_batch_whose_breaks_were_all_worked_is_cut_out_and_the_stream_ends_as_the_batch(worked) -> None:
    inputs, times, flow, published, about = worked
    assert about["payout_id"].n_unique() >= 2, "the world has batches the bank booked at another amount"
    cut = _cut(flow, about["payout_id"])
    assert cut.len() >= 1, "a worked batch was let go of, its payout's bank line with it"
    # WORKED movements carry the difference between the ledger's payouts and the bank's, of
    # every batch let go of (one a late line couples to a worked one too)
    held = flow.holding("bank_lines")["reference"].drop_nulls()
    differing = _differing(inputs).filter(~pl.col("reference").is_in(held.implode()))
    assert differing["reference"].is_in(cut.implode()).sum() == cut.len()
    assert flow._carry["worked"].sum() == (differing["ledger"] - differing["bank"]).sum() != 0
    batch, _ = _batch(inputs, times)
    mismatches = batch.variances.filter(pl.col("category") == "bank_balance_mismatch")
    assert mismatches["actual"].str.contains("in variances closed by adjusting entries").any()
    _ends_as_the_batch(inputs, times, copy.deepcopy(flow), dict(published), {})


LATE = {
    # one of its lines sent again with another net: corrected_line, the batch comes back
    "copy": lambda inputs, about, payout: {
        "settlement_lines": _late_copy(
            inputs["settlement_lines"].filter(pl.col("payout_id") == payout).head(1),
            net_minor=pl.col("net_minor") + 700,
        )
    },
    # a second bank line naming its payout
    "bank line": lambda inputs, about, payout: {
        "bank_lines": inputs["bank_lines"]
        .filter(pl.col("reference") == payout)
        .with_columns(bank_ref=pl.lit("LATE1"), source_file=pl.lit("late_statement.xml"), line_no=pl.lit(1, pl.Int64))
    },
    # a second entry naming one of its closed variances: the first approved still closes it
    "entry": lambda inputs, about, payout: {
        "adjustments": inputs["adjustments"]
        .join(about.filter(pl.col("payout_id") == payout).select("variance_id"), on="variance_id")
        .head(1)
        .with_columns(event_id=pl.lit("evt_worked_again"), approved_at=pl.col("approved_at") + timedelta(days=3))
    },
}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kind=st.sampled_from(sorted(LATE)))
def test_a_late_arrival_touching_a_worked_batch_brings_it_back_and_ends_as_the_batch(worked, data, kind) -> None:
    inputs, times, flow, published, about = worked
    flow, published = copy.deepcopy(flow), dict(published)
    cut = _cut(flow, about["payout_id"])
    payout = cut[data.draw(st.integers(0, cut.len() - 1))]
    late = LATE[kind](inputs, about, payout)
    if kind == "entry":
        times = {**times, "evt_worked_again": late["adjustments"]["approved_at"][0]}
    _ends_as_the_batch(inputs, times, flow, published, late)


def _coupled(inputs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(processor, id, payout_id) of the settlements the ledger expected in one batch and
    the processor paid in another: each couples two batches."""
    keys = pl.concat(
        [
            inputs["settlement_lines"].select("processor", "payout_id", id="line_id"),
            inputs["expected_settlements"].select("processor", "payout_id", id="settlement_id"),
        ]
    ).unique()
    return keys.filter(pl.col("payout_id").n_unique().over("processor", "id") > 1).sort("processor", "id", "payout_id")


def test_batches_a_late_line_couples_go_together_and_come_back_together(worked) -> None:
    inputs, times, flow, published, about = worked
    flow, published = copy.deepcopy(flow), dict(published)
    coupled = _coupled(inputs)
    cut = _cut(flow, coupled["payout_id"])
    both = (
        coupled.group_by("processor", "id")
        .agg("payout_id")
        .filter(pl.col("payout_id").list.eval(pl.element().is_in(cut.implode())).list.all())
    )
    assert both.height, "a line paid in another batch than the ledger's: both batches were let go of"
    pair = both["payout_id"][0].to_list()
    # a line of the first sent again brings back the other batch too
    late = LATE["copy"](inputs, about, pair[0])
    flow.bring_back(**late)
    held = pl.concat([flow.holding("bank_lines")["reference"], flow.holding("settlement_lines")["payout_id"]])
    assert set(pair) <= set(held.drop_nulls()), "every batch of the group came back"
    _ends_as_the_batch(inputs, times, flow, published, late)
