"""`gathered` holds lists and lets their items go together: nothing lost or repeated, in
arrival order, sooner once `most` items are held, and a resumed snapshot lets go what
was held."""

from __future__ import annotations

from datetime import timedelta

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.pipelines.connectors.gather import _Gather, gathered


def run(lists: list[list[int]], every: timedelta, most: int) -> list[list[int]]:
    out: list[list[int]] = []
    flow = Dataflow("gather_test")
    op.output("out", gathered("g", op.input("in", flow, TestingSource(lists)), every, most), TestingSink(out))
    run_main(flow)
    return out


@settings(max_examples=30, deadline=None)
@given(lists=st.lists(st.lists(st.integers(), max_size=5), max_size=30), most=st.integers(1, 20))
def test_every_item_once_in_order_and_never_more_than_most_plus_a_list(lists, most):
    out = run(lists, timedelta(hours=1), most)  # only `most` and the end of input let go
    assert [x for batch in out for x in batch] == [x for batch in lists for x in batch]
    assert all(batch for batch in out)  # no empty lists go out
    assert all(len(batch) < most + 5 for batch in out)
    assert all(len(batch) >= most for batch in out[:-1])


def test_a_resumed_snapshot_lets_go_what_was_held():
    first = _Gather(timedelta(hours=1), 100, None)
    assert first.on_item([1, 2])[0] == [] and first.on_item([])[0] == []
    resumed = _Gather(timedelta(hours=1), 100, first.snapshot())
    assert resumed.notify_at() is not None  # due at once
    assert list(resumed.on_notify()[0]) == [[1, 2]] and resumed.notify_at() is None
