"""Processor settlement reports, as the world writes them, read back into `clearline.recon.lines`.

Every layout, every record type, FX lines, 0/2/3/4-decimal currencies: what the writer
put in (one normalised table) is what intake gets out, line for line, and the payout rows
come back as control totals equal to the sum of their batch.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.pipelines.world.settlement_files import write_settlement_reports
from clearline.recon.intake.parse import parse_file
from clearline.recon.intake.suites import validate_many
from clearline.recon.lines import SETTLEMENT_SCHEMA
from tests.pipelines.test_settlement_files import DAY2, Lines, world_lines

KEY = ["processor", "line_id"]


@pytest.fixture(scope="module")
def intake_world(tmp_path_factory) -> tuple[Path, dict]:
    """A 45-day, 6-merchant world with discrepancies: every record type, ~1,100
    settlement and ~370 bank lines (small enough to validate in a few seconds)."""
    out = tmp_path_factory.mktemp("intake-world")
    return out, generate(WorldOptions(days=45, merchants=6, seed=3), out)


def expected(lines: pl.DataFrame) -> pl.DataFrame:
    """What intake should produce from the writer's table: no payout rows; Stripe carries
    no rate and states gross 0 in the balance currency on fee rows; times as each layout
    writes them (seconds, Checkout.com milliseconds)."""
    fee_row = pl.col("record_type") == "fee"
    is_stripe = pl.col("processor") == "stripe"
    precision = (
        pl.when(pl.col("processor") == "checkoutcom")
        .then(pl.col("created_at").dt.truncate("1ms"))
        .otherwise(pl.col("created_at").dt.truncate("1s"))
    )
    return (
        lines.filter(pl.col("record_type") != "payout")
        .select(
            "processor",
            "line_id",
            "payment_id",
            payout_id="batch_id",
            record_type="record_type",
            merchant_id="merchant_id",
            gross_minor="gross_minor",
            gross_currency=pl.when(fee_row & is_stripe).then("net_currency").otherwise("gross_currency"),
            fee_minor="fee_minor",
            fee_currency="net_currency",
            net_minor="net_minor",
            net_currency="net_currency",
            fx_rate=pl.when(is_stripe).then(None).otherwise("fx_rate"),
            created_at=precision,
            value_date="available_on",
        )
        .sort(KEY)
    )


def read_all(paths: list[Path]) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    parsed = [parse_file(p) for p in paths]
    problems = [f"{f.path.name}: {r}" for f in parsed for r in f.problems.iter_rows()]
    return (pl.concat([f.lines for f in parsed]), pl.concat([f.controls for f in parsed]), problems)


def test_every_layout_reads_back_to_the_written_lines(tmp_path) -> None:
    lines = world_lines()
    paths = write_settlement_reports(lines, tmp_path)
    got, controls, problems = read_all(paths)
    assert problems == []
    assert got.schema == pl.Schema(SETTLEMENT_SCHEMA)
    assert {parse_file(p).format for p in paths} == {"adyen", "stripe", "checkoutcom"}
    assert got.select(expected(lines).columns).sort(KEY).to_dicts() == expected(lines).to_dicts()
    # evidence: each line points at its file and the physical line it starts on
    for row in got.iter_rows(named=True):
        text = (tmp_path / row["processor"] / row["source_file"]).read_text().splitlines()
        assert row["line_id"] in text[row["line_no"] - 1]
    # one control per payout row, and each equals its batch's sum
    payouts = lines.filter(pl.col("record_type") == "payout")
    assert controls.height == payouts.height
    assert controls["declared"].to_list() == controls["computed"].to_list()
    assert sorted(controls["declared"].to_list()) == sorted((-payouts["net_minor"]).to_list())


@pytest.mark.slow
def test_generated_world_reads_and_passes_its_suites(intake_world) -> None:
    out, summary = intake_world
    paths = sorted((out / "settlements").rglob("*.csv"))
    got, controls, problems = read_all(paths)
    assert problems == []
    transfers = got.filter(pl.col("record_type") == "balance_transfer")
    assert got.height - transfers.height == summary["settlement_lines"]
    # a negative day's balance carried to the batch that pays it: each pair nets to zero
    pairs = transfers.group_by(pl.col("line_id").str.replace(r"-(IN|OUT)$", "")).agg(pl.col("net_minor").sum())
    assert transfers.height > 0 and pairs["net_minor"].to_list() == [0] * (transfers.height // 2)
    # every batch's payout row is its control, and equals its batch (batches that carry
    # their balance forward pay nothing and have none)
    assert controls.height == summary["payouts"]
    assert controls["declared"].to_list() == controls["computed"].to_list()
    assert got.null_count().select(pl.exclude("payment_id", "fx_rate", "merchant_id")).sum_horizontal().item() == 0
    fees = got.filter(pl.col("record_type") == "fee")
    assert fees.height > 0 and (fees["fee_minor"] == -fees["net_minor"]).all() and (fees["fee_minor"] > 0).all()
    parsed = [parse_file(p) for p in paths]
    assert [(f.path.name, v.failures) for f, v in zip(parsed, validate_many(parsed)) if not v.passed] == []


I64_SAFE = st.integers(min_value=-(2**59), max_value=2**59)  # a batch of 8 still sums within i64


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(I64_SAFE, st.integers(min_value=0, max_value=10**12)), min_size=1, max_size=8),
    st.sampled_from(["USD", "EUR", "JPY", "KWD", "CLF"]),
)
def test_any_amount_in_any_exponent_survives(pairs, currency) -> None:
    """Minor units go through decimal text and back unchanged, whatever the exponent."""
    w = Lines()
    for processor in ("adyen", "stripe", "checkoutcom"):
        for gross, fee in pairs:
            w.add(
                processor,
                f"B-{processor}",
                "charge" if gross >= 0 else "refund",
                gross,
                fee,
                ccy=currency,
                parts=(fee, 0, 0, 0),
            )
        w.payout(processor, f"B-{processor}", DAY2 + timedelta(days=1))
    lines = w.frame()
    with tempfile.TemporaryDirectory() as folder:
        got, controls, problems = read_all(write_settlement_reports(lines, Path(folder)))
    assert problems == []
    cols = ["processor", "line_id", "gross_minor", "fee_minor", "net_minor", "net_currency"]
    assert got.select(cols).sort(KEY).to_dicts() == expected(lines).select(cols).to_dicts()
    assert controls["declared"].to_list() == controls["computed"].to_list()
