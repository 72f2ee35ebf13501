"""The ledger's expectations read three ways — one decoded event at a time (a stream),
a world's events as columns, the ledger's event archive — come out identical; typed
expectations flattened into frames (money as minor/currency columns) read back whole."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import date, datetime, timedelta, timezone

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from clearline import events, freezes
from clearline.events import Money
from clearline.ledger import archive
from clearline.ledger.model import Source
from clearline.recon.matching import expectations as ex


def _typed(world) -> tuple[pl.DataFrame, pl.DataFrame]:
    lines = (world / "events" / "events.jsonl").read_text().splitlines()
    found = [ex.expectation(events.decode(line)) for line in lines]
    return ex.frames([f for f in found if f is not None])


def test_a_stream_and_a_batch_read_the_same_expectations(small_world):
    world, manifest = small_world
    settle, moves = ex.from_events(pl.scan_parquet(world / "events" / "events.parquet"))
    typed_settle, typed_moves = _typed(world)
    assert settle.height == manifest["events_by_type"]["processor.settlement"]
    assert moves.height == sum(manifest["events_by_type"].get(t, 0) for t in ex.BANK_KINDS)
    assert settle.sort("event_id").equals(typed_settle.sort("event_id"))
    assert moves.sort("event_id").equals(typed_moves.sort("event_id"))


def test_a_held_payout_expects_nothing_at_the_bank_and_its_release_a_debit_on_its_day(small_world):
    world, manifest = small_world
    held = [
        e
        for e in map(events.decode, (world / "events" / "events.jsonl").read_text().splitlines())
        if e.event_type == "payout.held"
    ]
    assert len(held) == manifest["events_by_type"]["payout.held"] > 0
    assert [ex.expectation(e) for e in held] == [None] * len(held)
    release = freezes.release_of(held[0], "amy", datetime(2026, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))))
    expected = ex.expectation(release)
    p = held[0].payload
    assert (expected.kind, expected.reference) == ("merchant_payout", p.payout_id)
    assert expected.expected_on == date(2026, 6, 2)  # the UTC day of the release
    assert expected.amount == Money(-p.amount.minor, p.amount.currency)
    as_columns = pl.LazyFrame(
        {
            "event_id": [release.event_id],
            "event_type": [release.event_type],
            "occurred_at": [release.occurred_at],
            "merchant_id": [release.merchant_id],
            "payload": [json.dumps(json.loads(events.encode(release))["payload"])],
        }
    )
    assert ex.from_events(as_columns)[1].equals(ex.frames([expected])[1])


def test_signs_follow_the_platforms_point_of_view(small_world):
    world, _ = small_world
    settle, moves = ex.from_events(pl.scan_parquet(world / "events" / "events.parquet"))
    signs = settle.group_by("record_type").agg(net=pl.col("net_minor").sign().unique())
    assert dict((r, s) for r, s in signs.iter_rows()) == {
        "charge": [1],
        "chargeback_reversal": [1],
        "refund": [-1],
        "chargeback": [-1],
        "fee": [-1],
    }
    direction = moves.group_by("kind").agg(pl.col("amount_minor").sign().unique())
    assert dict(direction.iter_rows()) == {"processor_payout": [1], "merchant_payout": [-1], "buyer_repayment": [1]}


def test_the_archive_gives_the_same_expectations_as_the_world(small_world, tmp_path):
    world, _ = small_world
    bodies = (world / "events" / "events.jsonl").read_bytes().splitlines()[:3000]
    rows = [(events.decode(b), Source("payments.events", 0, n), b) for n, b in enumerate(bodies)]
    rows += rows[:50]  # the same events consumed twice count once
    archive.write_batch(tmp_path / "archive", 0, rows)
    from_archive = ex.from_archive(archive.scan(tmp_path / "archive"))
    ids = [e.event_id for e, _, _ in rows]
    from_world = ex.from_events(
        pl.scan_parquet(world / "events" / "events.parquet").filter(pl.col("event_id").is_in(ids))
    )
    for got, want in zip(from_archive, from_world):
        assert got.height > 0
        assert got.sort("event_id").equals(want.sort("event_id"))


_money = st.builds(Money, st.integers(-(10**15), 10**15), st.sampled_from(["EUR", "GBP", "JPY", "KWD", "USD"]))
_text = st.text("abcdefgh0123456789_", min_size=1, max_size=12)
_day = st.dates(date(2020, 1, 1), date(2030, 12, 31))
_settlement = st.builds(
    ex.ExpectedSettlement,
    _text,
    _text,
    _text,
    _text,
    st.sampled_from(sorted(ex.LINE_SIGN)),
    _text,
    _text,
    _money,
    _money,
    _money,
    _day,
    st.none() | st.just("1.0842"),
)
_movement = st.builds(
    ex.ExpectedBankMovement,
    _text,
    st.sampled_from(sorted(ex.BANK_KINDS.values())),
    st.none() | _text,
    _text,
    _money,
    _day,
    st.none() | _text,
)


@given(st.lists(st.one_of(_settlement, _movement), max_size=20))
def test_typed_expectations_flatten_to_frames_that_read_back_to_the_same_records(records):
    settle, moves = ex.frames(records)
    assert settle.schema == ex.SETTLEMENT_SCHEMA and moves.schema == ex.BANK_WITH_MERCHANT

    def unflat(row: dict, record: type):
        kw = {
            f.name: Money(row[f"{f.name}_minor"], row[f"{f.name}_currency"]) if f.type == "Money" else row[f.name]
            for f in fields(record)
        }
        return record(**kw)

    back = [unflat(r, ex.ExpectedSettlement) for r in settle.iter_rows(named=True)] + [
        unflat(r, ex.ExpectedBankMovement) for r in moves.iter_rows(named=True)
    ]
    assert back == [r for r in records if isinstance(r, ex.ExpectedSettlement)] + [
        r for r in records if isinstance(r, ex.ExpectedBankMovement)
    ]
