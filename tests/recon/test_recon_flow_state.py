"""The reconciliation flow's matcher state without Kafka: however the inputs are split
into poll batches, in whatever order, with messages read twice, the end of input gives
exactly the batch's variances; a `--once` matcher never reconciles before the end; a
snapshot does not change when the matcher goes on."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline import config, events
from clearline.pipelines.cli.recon import parse_all, report_files, tolerances
from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon.arrivals import Arrivals
from clearline.recon.matching import expectations
from clearline.recon.matching.continuity import bank_books
from clearline.recon.matching.reconcile import Inputs, input_watermark, reconcile, watermark
from clearline.recon.streaming import builder

BOOKS = bank_books(config.load("platform"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(every input as one Arrivals item per record, the batch's result) for a 30-day world."""
    world = tmp_path_factory.mktemp("recon-state-world")
    generate(WorldOptions(days=30, merchants=4, seed=31), world)
    items, batch_inputs, as_of = world_inputs(world)
    batch = reconcile(batch_inputs, tolerances(), as_of)
    assert batch.variances.height > 0
    return items, batch


def world_inputs(world) -> tuple[list[Arrivals], Inputs, datetime]:
    """A generated world's inputs as one Arrivals item per record, the same as a batch's
    Inputs, and the batch's watermark."""
    items: list[Arrivals] = []
    for raw in (world / "events" / "events.jsonl").read_bytes().splitlines():
        event = events.decode(raw)
        got = Arrivals(consumed=1)
        expected = expectations.expectation(event)
        if expected is not None:
            got.expected[event.event_id] = expected
        got.saw(event.occurred_at)
        items.append(got)
    settle, bank, statements = parse_all(report_files(world / "settlements") + report_files(world / "bank"), quiet=True)
    for kind, frame, day in (
        ("processor", settle, "value_date"),
        ("bank", bank, "booking_date"),
        ("statement", statements, "closing_date"),
    ):
        for row in frame.iter_rows(named=True):
            got = Arrivals(consumed=1)
            file = row["source_file"] + (":statement" if kind == "statement" else "")
            got.lines[(file, row["line_no"])] = (kind, row)
            got.saw(watermark(row[day]))  # a line's day counts as its midnight, as in the batch
            items.append(got)
    expected = expectations.from_events(pl.scan_parquet(world / "events" / "events.parquet"))
    batch_inputs = Inputs(expected[0], expected[1], settle, bank, statements, BOOKS)
    latest_event = max(i.latest for i in items if not i.lines)
    return items, batch_inputs, input_watermark(batch_inputs, latest_event)


def merged(items: list[Arrivals]) -> Arrivals:
    """One poll batch of several messages."""
    out = Arrivals()
    for item in items:
        out.expected.update(item.expected)
        out.lines.update(item.lines)
        out.consumed += item.consumed
        if item.latest is not None:
            out.saw(item.latest)
    return out


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), batches=st.integers(1, 40), resent=st.floats(0, 0.2))
def test_any_split_order_and_replay_ends_with_the_batchs_variances(inputs, seed, batches, resent) -> None:
    items, batch = inputs
    rng = random.Random(seed)
    shuffled = items + rng.sample(items, int(len(items) * resent))  # some messages read twice
    rng.shuffle(shuffled)
    matcher = builder(tolerances(), timedelta(seconds=5), once=True, books=BOOKS)(None)
    size = -(-len(shuffled) // batches)
    for start in range(0, len(shuffled), size):
        assert matcher.on_item(merged(shuffled[start : start + size]))[0] == []
        assert matcher.on_notify()[0][0].changes is None, "a --once matcher waits for the end of its backlog"
    (end,), _ = matcher.on_eof()
    assert end.changes.result.variances.equals(batch.variances)
    assert end.changes.new.equals(batch.variances) and end.changes.gone == []
    held = sum(1 for i in items if i.expected) + sum(1 for i in items if i.lines)
    assert end.counts["expectations"] + end.counts["lines"] == held, "a message read twice is held once"


def test_a_snapshot_stays_as_it_was_when_the_matcher_goes_on(inputs) -> None:
    items, _ = inputs
    matcher = builder(tolerances(), timedelta(seconds=5), once=False)(None)
    matcher.on_item(merged(items[: len(items) // 2]))
    snap = matcher.snapshot()
    before = (len(snap.events), len(snap.lines), snap.watermark, dict(snap.counts))
    matcher.on_item(merged(items[len(items) // 2 :]))
    assert (len(snap.events), len(snap.lines), snap.watermark, dict(snap.counts)) == before
    resumed = builder(tolerances(), timedelta(seconds=5), once=False)(snap)
    resumed.on_item(merged(items[len(items) // 2 :]))
    (mine,), _ = matcher.on_eof()
    (theirs,), _ = resumed.on_eof()
    assert mine.changes.result.variances.equals(theirs.changes.result.variances)
