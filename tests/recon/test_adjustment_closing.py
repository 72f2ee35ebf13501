"""Reconciliation sees a break closed by its adjusting entry: in a batch `reconcile` and in
the continuous matcher alike (however the inputs are split and ordered), the variance an
`adjustment.posted` names leaves the open variances and is listed as closed by that entry;
an entry for another merchant's variance closes nothing."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline import config, events
from clearline.pipelines.cli.recon import tolerances
from clearline.pipelines.connectors.adjustments import Approval, adjustment_event
from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon import propose_adjustment
from clearline.recon.arrivals import Arrivals
from clearline.recon.matching import adjusted
from clearline.recon.matching.continuity import bank_books
from clearline.recon.matching.reconcile import Inputs, reconcile
from clearline.recon.matching.variance import SCHEMA
from clearline.recon.streaming import builder
from tests.recon.test_recon_flow_state import world_inputs

BOOKS = bank_books(config.load("platform"))
AT = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)


def entry(row: dict, approver: str = "bob", at: datetime = AT) -> events.Event:
    proposal = propose_adjustment(row)
    return adjustment_event(proposal, Approval("rs_001", "alice", approver, "our_error", "ok"), approved_at=at)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(Arrivals per record, batch inputs, the batch's variances without entries, the entries)."""
    folder = tmp_path_factory.mktemp("adjusted-world")
    generate(WorldOptions(days=30, merchants=4, seed=31), folder)
    items, inputs, as_of = world_inputs(folder)
    before = reconcile(inputs, tolerances(), as_of).variances
    proposable = [r for r in before.iter_rows(named=True) if propose_adjustment(r) is not None and r["merchant_id"]]
    assert {r["category"] for r in proposable} >= {"fee_mismatch", "amount_mismatch"}
    entries = [entry(r) for r in proposable]
    return items, inputs, as_of, before, entries


def arrivals(entry_events: list[events.Event]) -> list[Arrivals]:
    out = []
    for e in entry_events:
        got = Arrivals(consumed=1)
        got.adjustments[e.event_id] = adjusted.adjustment(e)  # a person's event does not move time (arrivals)
        out.append(got)
    return out


def merged(items: list[Arrivals]) -> Arrivals:
    out = Arrivals()
    for item in items:
        out.expected.update(item.expected)
        out.lines.update(item.lines)
        out.adjustments.update(item.adjustments)
        if item.latest is not None:
            out.saw(item.latest)
    return out


def streamed(everything: list[Arrivals], seed: int, batches: int):
    """The end of a stream (`builder`, once) fed `everything` shuffled by `seed`, in `batches` parts."""
    everything = list(everything)
    random.Random(seed).shuffle(everything)
    matcher = builder(tolerances(), timedelta(seconds=5), once=True, books=BOOKS)(None)
    size = -(-len(everything) // batches)
    for start in range(0, len(everything), size):
        matcher.on_item(merged(everything[start : start + size]))
    (end,), _ = matcher.on_eof()
    return end


def test_a_batch_closes_exactly_the_variances_the_entries_name(world):
    _, inputs, as_of, before, entries = world
    rows = [adjusted.adjustment(e) for e in entries]
    result = reconcile(Inputs(**{**inputs.__dict__, "adjustments": adjusted.frame(rows)}), tolerances(), as_of)
    named = {r["variance_id"] for r in rows}
    assert set(result.closed["variance_id"]) == named
    balance = pl.col("category") == "bank_balance_mismatch"
    kept = before.filter(~pl.col("variance_id").is_in(list(named)))
    # every other variance as it was; a balance mismatch the same difference on the same
    # day, naming as open only what is still open, the closed ones' share summed apart
    text = ["actual", "evidence"]
    assert result.variances.drop(text).equals(kept.drop(text))
    assert result.variances.filter(~balance).equals(kept.filter(~balance))
    for now, then in zip(
        result.variances.filter(balance).iter_rows(named=True), kept.filter(balance).iter_rows(named=True)
    ):
        assert now["evidence"] == [e for e in then["evidence"] if e not in named]
        worked = " in variances closed by adjusting entries" in now["actual"]
        assert worked == (now["evidence"] != then["evidence"]), (now["actual"], then["actual"])
    assert kept.filter(balance)["evidence"].explode().is_in(list(named)).any(), (
        "an entry closes a variance a mismatch named"
    )
    facts = result.closed.select(list(SCHEMA)).sort("variance_id")
    assert facts.equals(before.filter(pl.col("variance_id").is_in(list(named))).sort("variance_id"))
    by_id = {r["variance_id"]: r for r in result.closed.iter_rows(named=True)}
    for e in entries:
        got = by_id[e.payload.variance_id]
        assert (got["event_id"], got["approved_by"], got["code"]) == (e.event_id, "bob", "our_error")


def test_an_entry_closes_only_its_own_merchants_variance_and_the_first_approved_wins(world):
    _, inputs, as_of, before, entries = world
    first = entries[0]
    stranger = events.Event(
        "adj_stranger", first.event_type, first.occurred_at, "m_09999", first.reseller_id, first.payload
    )
    later = adjusted.adjustment(first) | {"event_id": "adj_later", "approved_at": AT + timedelta(hours=1)}
    frame = adjusted.frame([adjusted.adjustment(stranger)])
    result = reconcile(Inputs(**{**inputs.__dict__, "adjustments": frame}), tolerances(), as_of)
    assert result.closed.is_empty() and result.variances.equals(before)
    both = adjusted.frame([later, adjusted.adjustment(first)])
    closed = reconcile(Inputs(**{**inputs.__dict__, "adjustments": both}), tolerances(), as_of).closed
    assert closed["event_id"].to_list() == [first.event_id]


def test_entries_read_from_event_columns_are_the_entries(world):
    *_, entries = world
    table = pl.DataFrame(
        {
            "event_id": [e.event_id for e in entries] * 2,  # an event seen twice counts once
            "event_type": [e.event_type for e in entries] * 2,
            "merchant_id": [e.merchant_id for e in entries] * 2,
            "payload": [json.dumps(events.to_dict(e)["payload"]) for e in entries] * 2,
        }
    )
    got = adjusted.from_events(table.lazy()).sort("event_id")
    assert got.equals(adjusted.frame([adjusted.adjustment(e) for e in entries]).sort("event_id"))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), batches=st.integers(1, 30))
def test_the_stream_closes_the_same_variances_as_the_batch_in_any_order(world, seed, batches):
    items, inputs, as_of, _, entries = world
    rows = [adjusted.adjustment(e) for e in entries]
    batch = reconcile(Inputs(**{**inputs.__dict__, "adjustments": adjusted.frame(rows)}), tolerances(), as_of)
    end = streamed(items + arrivals(entries), seed, batches)
    # the entries' own time is later than the world's: the stream's watermark moved on, the
    # batch's is recomputed at it (ages aside, a later watermark only adds overdue items)
    again = reconcile(Inputs(**{**inputs.__dict__, "adjustments": adjusted.frame(rows)}), tolerances(), end.watermark)
    assert end.changes.result.variances.equals(again.variances)
    assert end.changes.result.closed.equals(again.closed)
    assert set(again.closed["variance_id"]) == set(batch.closed["variance_id"])


def test_an_entry_after_its_variance_was_published_takes_it_out_of_the_open_set(world):
    items, *_, entries = world
    matcher = builder(tolerances(), timedelta(seconds=5), once=False, books=BOOKS)(None)
    matcher.on_item(merged(items))
    first = matcher._advance()
    named = {e.payload.variance_id for e in entries}
    assert named <= set(first.changes.new["variance_id"])
    matcher.on_item(merged(arrivals(entries)))
    second = matcher._advance()
    # entries approved months after the traffic (AT) close what they name and bring nothing due
    assert second.watermark == first.watermark < AT
    assert set(second.changes.gone) == named and second.changes.new.is_empty()
    assert set(second.changes.result.closed["variance_id"]) == named


@pytest.fixture(scope="module")
def bank_entries(world) -> list[events.Event]:
    """The proposed entries for the world's breaks between the bank and the ledger, each
    approved three days after its break was counted: they move the ledger's bank cash."""
    *_, before, _ = world
    bank_side = before.filter(pl.col("category").is_in(["unexplained_bank_line", "payout_not_in_bank"]))
    assert set(bank_side["category"]) == {"unexplained_bank_line", "payout_not_in_bank"}
    return [
        entry(r, at=AT.replace(r["since"].year, r["since"].month, r["since"].day) + timedelta(days=3))
        for r in bank_side.iter_rows(named=True)
    ]


def test_an_entry_that_moves_the_bank_cash_takes_its_reference_off_every_later_balance(world, bank_entries):
    _, inputs, as_of, before, _ = world
    rows = [adjusted.adjustment(e) for e in bank_entries]
    assert all(len(r["bank"]) == 1 for r in rows)
    result = reconcile(Inputs(**{**inputs.__dict__, "adjustments": adjusted.frame(rows)}), tolerances(), as_of)
    assert set(result.closed["variance_id"]) == {r["variance_id"] for r in rows}
    mismatches = result.variances.filter(pl.col("category") == "bank_balance_mismatch")
    assert not mismatches.equals(before.filter(pl.col("category") == "bank_balance_mismatch"))
    for e in bank_entries:
        reference = before.filter(pl.col("variance_id") == e.payload.variance_id)["reference"].item()
        later = mismatches.filter(pl.col("since") >= e.payload.approved_at.date())
        assert not later["actual"].str.contains(f" {reference} ", literal=True).any(), reference


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), batches=st.integers(1, 30))
def test_the_stream_ties_balances_to_the_entries_bank_cash_as_the_batch_does(world, bank_entries, seed, batches):
    items, inputs, *_ = world
    rows = [adjusted.adjustment(e) for e in bank_entries]
    end = streamed(items + arrivals(bank_entries), seed, batches)
    batch = reconcile(Inputs(**{**inputs.__dict__, "adjustments": adjusted.frame(rows)}), tolerances(), end.watermark)
    assert end.changes.result.variances.equals(batch.variances)
    assert end.changes.result.closed.equals(batch.closed)
