"""Continuous reconciliation over a world fed in arrival order, one day at a time, the
way the stream sees it: it ends with exactly the batch's variances, and the only ones it
ever withdraws are absences a late arrival disproved."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import polars as pl
import pytest

from clearline import config
from clearline.pipelines.cli.recon import parse_all, report_files, run_batch, tolerances
from clearline.recon.matching import expectations
from clearline.recon.matching.continuity import bank_books
from clearline.recon.matching.continuous import Continuous


@pytest.mark.slow
def test_a_world_fed_day_by_day_ends_with_the_batchs_variances(small_world):
    world, _ = small_world
    batch, _ = run_batch(world, None, None, None, None)
    events = pl.read_parquet(world / "events" / "events.parquet").sort("arrival_seq")
    files = []  # (arrival day, frames): a report the day after its last line, a statement the morning after
    for path in report_files(world / "settlements") + report_files(world / "bank"):
        settle, bank, statements = parse_all([path], quiet=True)
        if settle.height:
            files.append((settle["value_date"].max() + timedelta(days=1), {"settlement_lines": settle}))
        else:
            day = statements["closing_date"].max() + timedelta(days=1)
            files.append((day, {"bank_lines": bank, "statements": statements}))

    flow = Continuous(tolerances(), bank_books(config.load("platform")))
    published: dict[str, tuple[str, str]] = {}  # id -> (category, reference)
    withdrawn: list[tuple[str, str]] = []
    day = events["occurred_at"].min().date()
    while day <= batch.as_of:
        end = datetime.combine(day, time.max, timezone.utc)
        todays = events.filter(pl.col("occurred_at").dt.date() == day)
        settle, moves = expectations.from_events(todays.lazy())
        flow.add(expected_settlements=settle, expected_movements=moves)
        for arrives, frames in files:
            if arrives == day:
                flow.add(**frames)
        changes = flow.advance(min(end, datetime.combine(batch.as_of, time.max, timezone.utc)))
        assert set(changes.new["variance_id"]).isdisjoint(published)
        published.update(zip(changes.new["variance_id"], zip(changes.new["category"], changes.new["reference"])))
        withdrawn += [published.pop(vid) for vid in changes.gone]
        day += timedelta(days=1)
    for arrives, frames in files:  # the statements of the last day arrive after it
        if arrives > batch.as_of:
            flow.add(**frames)
    final = flow.advance(batch.as_of)
    published.update(zip(final.new["variance_id"], zip(final.new["category"], final.new["reference"])))
    withdrawn += [published.pop(vid) for vid in final.gone]

    assert final.result.variances.equals(batch.variances)
    assert set(published) == set(batch.variances["variance_id"])
    # a line called missing once its deadline passed, then reported late: a late settlement now
    late = set(batch.variances.filter(pl.col("category") == "late_settlement")["reference"])
    assert all(category == "missing_at_processor" and reference in late for category, reference in withdrawn), withdrawn
