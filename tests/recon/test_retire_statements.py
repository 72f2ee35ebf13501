"""Statements let go of: a long-running stream stops judging bank statements whose
balance variances nothing to come can change, keeps those variances as published, and
still ends with exactly the batch's, whatever arrives late in a statement's period.

The 30-day world of test_retire is fed day by day with a two-day horizon, so most of its
statements are cut out; then something arrives that changes a cut-out statement's
balance or what explains it (a bank line nobody expected booked that day, a ledger
movement expected that day, a new statement for the day after, an adjusting entry naming
a frozen balance variance, an adjusting entry that moves the bank cash that day), and the
end is compared with one `reconcile` over every input, for any day and amount
(Hypothesis)."""

from __future__ import annotations

import copy
import pickle
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.pipelines.cli.recon import tolerances
from clearline.recon.matching import adjusted, retire, retire_statements
from clearline.recon.matching.continuous import Continuous, Retirement
from tests.recon.test_retire import BOOKS, _batch, _fed, _publish, frames, world  # noqa: F401


@pytest.fixture(scope="module")
def fed(frames, tmp_path_factory):  # noqa: F811
    """(the world's inputs and event times, the matcher fed all of it, what it published)."""
    inputs, times = frames
    flow = Continuous(tolerances(), BOOKS, Retirement(2, tmp_path_factory.mktemp("retired")))
    published = _fed(flow, inputs, times)
    return inputs, times, flow, published


def _cut_days(flow: Continuous, inputs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(account, day) of the statements the matcher no longer holds."""
    day = pl.coalesce("closing_date", "opening_date")
    every = inputs["statements"].select("account", day=day).unique()
    held = flow.holding("statements").select("account", day=day)
    return every.join(held, on=["account", "day"], how="anti").sort("account", "day")


def _bank_line(inputs: dict[str, pl.DataFrame], account: str, day: date, amount: int) -> pl.DataFrame:
    """A bank line nobody expected, booked on `day` in `account`, in a late file."""
    like = inputs["bank_lines"].filter(pl.col("account") == account).head(1)
    return like.with_columns(
        bank_ref=pl.lit("LATE-UNEXPECTED"),
        reference=pl.lit(None, pl.String),
        text=pl.lit("late"),
        amount_minor=pl.lit(amount, pl.Int64),
        booking_date=pl.lit(day),
        value_date=pl.lit(day),
        source_file=pl.lit("late_statement.xml"),
        line_no=pl.lit(1, pl.Int64),
        statement_id=pl.lit(""),
        sequence=pl.lit(None, pl.String),
    )


def _movement(inputs: dict[str, pl.DataFrame], day: date, amount: int) -> pl.DataFrame:
    """A merchant payout the ledger recorded late, expected in the bank on `day`."""
    like = inputs["expected_movements"].filter(pl.col("kind") == "merchant_payout").head(1)
    return like.with_columns(
        event_id=pl.lit("evt_late_movement"),
        reference=pl.lit("po_late_movement"),
        amount_minor=pl.lit(-amount, pl.Int64),
        expected_on=pl.lit(day),
    )


def _statement(inputs: dict[str, pl.DataFrame], account: str, day: date, amount: int) -> pl.DataFrame:
    """Another statement of `account` for `day`, sent late, closing `amount` above where it opens."""
    like = inputs["statements"].filter((pl.col("account") == account) & (pl.col("closing_date") == day)).head(1)
    return like.with_columns(
        statement_id=pl.lit("LATE-STATEMENT"),
        sequence=pl.lit(None, pl.String),
        opening_minor=pl.col("closing_minor"),
        closing_minor=pl.col("closing_minor") + amount,
        source_file=pl.lit("late_statement.xml"),
        line_no=pl.lit(1, pl.Int64),
    )


def _bank_entry(account: str, day: date, amount: int) -> pl.DataFrame:
    """An adjusting entry approved on `day` that puts `amount` into the bank cash of
    `account`'s currency (a bank line parked in suspense): the ledger's bank cash moves from
    that day on. The variance it names is none the stream knows."""
    currency = BOOKS.filter(pl.col("account") == account)["currency"].item()
    entry = {
        "event_id": "evt_late_bank_entry",
        "variance_id": "var_00000000000000000000",
        "merchant_id": "platform",
        "kind": "manual",
        "code": "our_error",
        "approved_by": "checker@platform",
        "approved_at": datetime(day.year, day.month, day.day, 10, tzinfo=timezone.utc),
        "bank": [{"currency": currency, "minor": amount}],
    }
    return adjusted.frame([entry])


LATE = {
    "bank entry": lambda inputs, account, day, amount: {"adjustments": _bank_entry(account, day, amount)},
    "statement": lambda inputs, account, day, amount: {"statements": _statement(inputs, account, day, amount)},
    "bank line": lambda inputs, account, day, amount: {"bank_lines": _bank_line(inputs, account, day, amount)},
    "ledger movement": lambda inputs, account, day, amount: {"expected_movements": _movement(inputs, day, amount)},
}


def _write_off(variance_id: str, event_id: str) -> pl.DataFrame:
    """The adjusting entry a checker posts writing off `variance_id`."""
    entry = {
        "event_id": event_id,
        "variance_id": variance_id,
        "merchant_id": "platform",
        "kind": "write_off",
        "code": "bank_fee",
        "approved_by": "checker@platform",
        "approved_at": datetime(2026, 3, 1, tzinfo=timezone.utc),
    }
    return adjusted.frame([entry])


def _ends_as_the_batch(inputs, times, flow: Continuous, published: dict, late: dict[str, pl.DataFrame]) -> None:
    everything = {name: pl.concat([frame, late[name]]) if name in late else frame for name, frame in inputs.items()}
    batch, as_of = _batch(everything, times)
    flow.add(**late)
    end = flow.advance(as_of)
    _publish(published, end)
    assert end.result.variances.equals(batch.variances)
    assert end.result.closed.equals(batch.closed)
    assert set(published) == set(batch.variances["variance_id"])


def test_statements_are_cut_out_with_their_balance_variances_kept_as_published(fed) -> None:
    inputs, _, flow, published = fed
    cut = _cut_days(flow, inputs)
    assert cut.height > inputs["statements"].height / 2, "most statements were let go"
    assert flow.retired_statements() >= cut.height
    mismatches = [vid for vid, category in published.items() if category == "bank_balance_mismatch"]
    assert flow.frozen() > 0 and mismatches, "balance variances of cut-out statements stay published"


@pytest.mark.parametrize("kind", sorted(LATE))
def test_a_late_arrival_in_a_cut_out_statements_period_brings_it_back_and_ends_as_the_batch(fed, kind) -> None:
    inputs, times, flow, published = fed
    flow, published = copy.deepcopy(flow), dict(published)
    account, day = _cut_days(flow, inputs).row(0)
    late = LATE[kind](inputs, account, day, 12_345)
    held_before = flow.holding("statements").height
    rows = flow.bring_back(**late)
    assert set(rows) == {
        "expected_settlements",
        "settlement_lines",
        "expected_movements",
        "bank_lines",
        "adjustments",
        "statements",
    }
    assert rows["statements"].height, "every input is there, the statements brought back among them"
    back = flow.holding("statements")
    assert back.height > held_before, "the statements the arrival may change came back"
    assert back.filter(pl.col("account") == account)["closing_date"].min() <= day
    _ends_as_the_batch(inputs, times, flow, published, late)


def test_an_adjustment_naming_a_frozen_balance_variance_closes_it_as_the_batch_does(fed) -> None:
    inputs, times, flow, published = fed
    flow, published = copy.deepcopy(flow), dict(published)
    frozen = flow._frozen.filter(pl.col("category") == "bank_balance_mismatch")
    assert frozen.height, "a cut-out statement's balance variance is kept as published"
    entry = _write_off(frozen["variance_id"][0], "evt_late_balance_adjustment")
    _ends_as_the_batch(inputs, times, flow, published, {"adjustments": entry})
    assert frozen["variance_id"][0] not in published


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kind=st.sampled_from(sorted(LATE)), amount=st.integers(1, 5_000_000))
def test_any_late_arrival_in_any_cut_out_period_ends_as_the_batch(fed, data, kind, amount) -> None:
    inputs, times, flow, published = fed
    flow, published = copy.deepcopy(flow), dict(published)
    cut = _cut_days(flow, inputs)
    account, day = cut.row(data.draw(st.integers(0, cut.height - 1)))
    _ends_as_the_batch(inputs, times, flow, published, LATE[kind](inputs, account, day, amount))


def test_the_reach_of_an_arrival_is_its_earliest_date_less_the_widest_window() -> None:
    tol = tolerances()
    margin = retire_statements.margin(tol)
    assert margin >= tol.bank_line_deadline_days and margin >= tol.processor_line_deadline_days
    frames = {
        "bank_lines": pl.DataFrame({"booking_date": [date(2026, 1, 20)], "value_date": [date(2026, 1, 21)]}),
        "expected_movements": pl.DataFrame({"expected_on": [date(2026, 1, 15)]}),
        "adjustments": pl.DataFrame({"variance_id": ["var_x"]}),
    }
    assert retire_statements.reach(frames, margin) == date(2026, 1, 15) - timedelta(days=margin)
    assert retire_statements.reach({"adjustments": frames["adjustments"]}, margin) is None
    at = [datetime(2026, 1, 9, 10, tzinfo=timezone.utc), datetime(2026, 1, 2, 10, tzinfo=timezone.utc)]
    moved = [[{"currency": "EUR", "minor": -250}], []]  # only an entry that moves the bank cash dates a change
    entries = pl.DataFrame(
        {"approved_at": at, "bank": moved}, schema_overrides={"bank": adjusted.ADJUSTMENT_SCHEMA["bank"]}
    )
    assert retire_statements.reach({"adjustments": entries}, margin) == date(2026, 1, 9) - timedelta(days=margin)


def test_the_snapshot_packs_the_frozen_variances_open_and_closed_and_restores_them(fed) -> None:
    inputs, times, flow, published = fed
    flow = copy.deepcopy(flow)
    frozen = flow._frozen.filter(pl.col("category") == "bank_balance_mismatch")
    entry = _write_off(frozen["variance_id"][0], "evt_snapshot_adjustment")
    flow.add(adjustments=entry)
    flow.advance(_batch(inputs, times)[1])
    assert flow._frozen_closed.height, "a closed variance of a cut-out statement is kept"
    state = flow.__getstate__()
    assert isinstance(state["_frozen"], bytes) and isinstance(state["_frozen_closed"], bytes)
    back = pickle.loads(pickle.dumps(flow))
    assert back._frozen.equals(flow._frozen) and back._frozen_closed.equals(flow._frozen_closed)


def _final_but_held(flow: Continuous, end) -> pl.DataFrame:
    """References of the ledger movements and bank lines held whose every date is past the
    horizon and whose match is final: no variance (open or closed) or pending item is about
    them, bank and ledger net to zero under them, and no line or expectation of their
    payout batch is held (its summary line stands in for what was cut out of it)."""
    result = end.result
    cutoff = result.as_of - timedelta(days=flow.retire.after_days)
    busy = pl.concat([result.variances["reference"], result.closed["reference"], result.pending["reference"]])
    real = flow.holding("settlement_lines").filter(pl.col("record_type") != retire.SUMMARY_KIND)
    batches = pl.concat([real["payout_id"], flow.holding("expected_settlements")["payout_id"]])
    bank, moves = flow.holding("bank_lines"), flow.holding("expected_movements")
    steps = pl.concat(
        [
            bank.select(ref=pl.coalesce("reference", "bank_ref"), amount="amount_minor", day="booking_date"),
            moves.select(ref="reference", amount=-pl.col("amount_minor"), day="expected_on"),
        ]
    )
    return (
        steps.group_by("ref")
        .agg(pl.col("amount").sum(), pl.col("day").max())
        .filter(
            (pl.col("amount") == 0)
            & (pl.col("day") <= cutoff)
            & ~pl.col("ref").is_in(busy.drop_nulls().implode())
            & ~pl.col("ref").is_in(batches.implode())
        )
    )


def test_a_final_ledger_movement_or_bank_line_is_not_held_past_the_horizon(fed) -> None:
    inputs, times, flow, _ = fed
    end = copy.deepcopy(flow).advance(_batch(inputs, times)[1])
    held = _final_but_held(flow, end)
    assert held.is_empty(), f"held for good though final: {held['ref'].to_list()}"
    assert flow.holding("bank_lines").height < inputs["bank_lines"].height / 2, "most bank lines were let go"


def _cut_after_its_pairs(flow: Continuous, inputs: dict[str, pl.DataFrame]) -> str:
    """A processor payout cut out whole after its agreeing pairs were (two file rounds)."""
    rounds = flow._units.group_by("unit").agg(pl.col("round").n_unique()).filter(pl.col("round") > 1)
    rounds = rounds.join(flow._summary, on="unit", how="anti")  # not a batch that stays
    payouts = inputs["expected_movements"].filter(pl.col("kind") == "processor_payout").select("reference").unique()
    named = payouts.with_columns(unit=retire.hashed(retire.joined_key("B", "reference")))
    found = named.join(rounds, on="unit").sort("reference")["reference"]
    assert found.len(), "no batch was cut out whole after its pairs"
    return found[0]


LATE_ON_PAYOUT = {
    # a second bank line naming the retired payout: a duplicate
    "bank line": lambda inputs, payout: {
        "bank_lines": inputs["bank_lines"]
        .filter(pl.col("reference") == payout)
        .with_columns(bank_ref=pl.lit("LATE2"), source_file=pl.lit("late_statement.xml"), line_no=pl.lit(1, pl.Int64))
    },
    # the ledger records the payout again, 5.00 more
    "ledger movement": lambda inputs, payout: {
        "expected_movements": inputs["expected_movements"]
        .filter(pl.col("reference") == payout)
        .with_columns(event_id=pl.lit("evt_late_payout"), amount_minor=pl.col("amount_minor") + 500)
    },
}


@pytest.mark.parametrize("kind", sorted(LATE_ON_PAYOUT))
def test_a_late_arrival_touching_a_retired_payouts_bank_line_or_movement_ends_as_the_batch(fed, kind) -> None:
    inputs, times, flow, published = fed
    flow, published = copy.deepcopy(flow), dict(published)
    payout = _cut_after_its_pairs(flow, inputs)
    assert flow.holding("bank_lines").filter(pl.col("reference") == payout).is_empty()
    late = LATE_ON_PAYOUT[kind](inputs, payout)
    rows = flow.bring_back(**late)
    assert payout in rows["bank_lines"]["reference"], "its bank line came back"
    assert payout in rows["expected_movements"]["reference"], "and its ledger movement"
    _ends_as_the_batch(inputs, times, flow, published, late)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_closing_an_open_variance_a_frozen_balance_mismatch_names_ends_as_the_batch(fed, data) -> None:
    """The entry moves the variance's share of that mismatch into its closed figure, in the
    batch; the stream has it frozen, so the entry must bring its statement back."""
    inputs, times, flow, published = fed
    flow, published = copy.deepcopy(flow), dict(published)
    named = flow._frozen.filter(pl.col("category") == "bank_balance_mismatch")["evidence"].explode()
    batch, _ = _batch(inputs, times)
    still_open = batch.variances.filter(pl.col("variance_id").is_in(named.implode()))
    assert still_open.height, "a frozen balance mismatch names a variance still open"
    variance = still_open.row(data.draw(st.integers(0, still_open.height - 1)), named=True)
    entry = _write_off(variance["variance_id"], "evt_late_write_off").with_columns(
        merchant_id=pl.lit(variance["merchant_id"] or "platform")
    )
    _ends_as_the_batch(inputs, times, flow, published, {"adjustments": entry})
    assert variance["variance_id"] not in published
