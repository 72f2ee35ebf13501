"""Parity: the streaming runtime (a real Bytewax dataflow) and the batch runtime (Polars)
give identical feature values for every underwriting request of a generated world,
with the world's own out-of-order arrival; and a late event comes out on the side output."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import polars as pl
import pytest

from clearline import events
from clearline.features import batch
from clearline.features.streaming import run_bounded


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_streaming_and_batch_agree_on_every_request_of_a_world(small_world, batch_size):
    """Also with the input fed a thousand events at a time, as Kafka polls do when
    catching up: no step may reorder a buyer's events by a batch."""
    world, manifest = small_world
    arrived = [events.decode(raw) for raw in (world / "events" / "events.jsonl").read_bytes().splitlines()]
    out_of_order = sum(1 for a, b in zip(arrived, arrived[1:]) if b.occurred_at < a.occurred_at)
    assert out_of_order > 0  # the world's late arrivals are exercised

    orders, entity_rows, late = run_bounded(arrived, batch_size=batch_size)

    expected = batch.order_features(batch.read_events(world))
    streamed = pl.DataFrame(orders, schema=expected.schema, orient="row").sort("decision_time", "event_id")
    assert late == []
    terms = pl.read_parquet(world / "truth" / "orders.parquet").filter(pl.col("payment_method") == "terms")
    assert expected.height == terms.height  # one row per underwriting request
    assert streamed.height == expected.height > 1000
    assert streamed.equals(expected)  # every value, floats and nulls included
    assert len(entity_rows) == 2 * expected.height


def test_a_request_beyond_the_allowed_lateness_comes_out_on_the_side_output(small_world):
    world, _ = small_world
    arrived = [events.decode(raw) for raw in (world / "events" / "events.jsonl").read_bytes().splitlines()[:3000]]
    request = next(e for e in arrived if e.event_type == "order.created" and e.payload.payment_method == "terms")
    copy = dataclasses.replace(
        request, event_id="evt_late_copy", payload=dataclasses.replace(request.payload, order_id="ord_late_copy")
    )
    buyer_events = [e for e in arrived if getattr(e.payload, "buyer_id", None) == request.payload.buyer_id]
    # arrives after the buyer's last event, more than the allowed hour after it happened
    assert buyer_events[-1].occurred_at - copy.occurred_at > timedelta(hours=2)
    where = arrived.index(buyer_events[-1]) + 1

    orders, _, late = run_bounded([*arrived[:where], copy, *arrived[where:]])
    on_time, _, _ = run_bounded(arrived)

    assert ("evt_late_copy", "buyer", True) in {(x.event_id, x.entity, x.request) for x in late}
    assert all(x.event_id == "evt_late_copy" and x.behind_s > 3600 for x in late)
    assert "evt_late_copy" not in {r["event_id"] for r in orders}  # no features that could hold its future
    assert len(orders) == len(on_time)
