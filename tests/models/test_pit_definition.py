"""`clearline.models.pit.join` against Feast's rule read literally (Hypothesis), on the
cases the array join must get right: ties on event_timestamp and on created, rows known
exactly at the decision instant, backfills, whole ties (two rows alike in both times: the
one written last wins), nulls on either side, entities on one side only, decisions in
another time unit, and spans of time too wide for one 64-bit key (the join ranks the times
there). The views' ttl is 0 (no expiry), so a row never ages out. Parity with Feast itself
is tests/models/test_pit.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clearline.models import pit

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
KEYS = ["a", "a", "b", "b", "c", "d", None]  # "d": never decided on; None: no entity


def _definition(decisions, history) -> list[tuple[int | None, int | None]]:
    """For each decision, (value, instant usable) of the row Feast's rule picks: entity equal,
    event_timestamp <= t, created <= t, the greatest (event_timestamp, created) — the last
    written among whole ties."""
    out = []
    for key, t in decisions:
        usable = [
            (ts, created, i)
            for i, (k, ts, created, _) in enumerate(history)
            if key is not None and t is not None and k == key and ts is not None and created is not None
            if ts <= t and created <= t
        ]
        if not usable:
            out.append((None, None))
            continue
        ts, created, i = max(usable)
        out.append((history[i][3], max(ts, created)))
    return out


@st.composite
def _case(draw):
    """Times are small integers (steps of the test's scale), so ties are frequent; a row's
    created is near its event_timestamp, before it (on time) or after (a backfill)."""
    rows = []
    for _ in range(draw(st.integers(0, 30))):
        ts = draw(st.integers(0, 5))
        created = ts + draw(st.sampled_from([-2, -1, -1, 0, 0, 1, 3]))
        if draw(st.integers(0, 19)) == 0:  # now and then a null time
            ts, created = draw(st.sampled_from([(None, created), (ts, None)]))
        rows.append((draw(st.sampled_from(KEYS)), ts, created, draw(st.integers(0, 10**6))))
    decisions = draw(
        st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.integers(-3, 9) | st.none()), max_size=25)
    )
    return decisions, rows


def _frames(decisions, history, scale: int, decision_unit: str):
    at = lambda n: None if n is None else T0 + timedelta(microseconds=n * scale)  # noqa: E731
    ts_type = pl.Datetime("us", "UTC")
    left = pl.DataFrame(
        {"k": [k for k, _ in decisions], "event_timestamp": [at(t) for _, t in decisions]},
        schema={"k": pl.String, "event_timestamp": ts_type},
    ).with_columns(pl.col("event_timestamp").dt.cast_time_unit(decision_unit))
    right = pl.DataFrame(
        {
            "k": [r[0] for r in history],
            "event_timestamp": [at(r[1]) for r in history],
            "created": [at(r[2]) for r in history],
            "v": [r[3] for r in history],
        },
        schema={"k": pl.String, "event_timestamp": ts_type, "created": ts_type, "v": pl.Int64},
    )
    return left, right


def _check(decisions, history, scale: int = 1, decision_unit: str = "us"):
    left, right = _frames(decisions, history, scale, decision_unit)
    joined = pit.join(left, right, "k", ["v"])
    assert joined.select("k", "event_timestamp").equals(left)  # the decisions, as given, in their order
    expected = _definition(decisions, history)
    assert joined["v"].to_list() == [v for v, _ in expected]
    usable_at = [None if n is None else T0 + timedelta(microseconds=n * scale) for _, n in expected]
    assert joined[pit.AVAILABLE].to_list() == usable_at


@settings(max_examples=400, deadline=None)
@given(_case())
@example(([("a", 6)], [("a", 5, 3, 100), ("a", 5, 1, 200)]))  # a tie on event_timestamp: created decides
@example(([("a", 6), ("a", 9)], [("a", 5, 3, 100), ("a", 5, 3, 200), ("a", 2, 9, 300)]))  # whole tie; backfill
def test_the_join_is_the_rule_with_ties_backfills_and_nulls(case):
    _check(*case)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.just("a"), st.integers(0, 2), st.integers(-3, 2), st.integers(0, 99)), max_size=12),
    st.lists(st.tuples(st.just("a"), st.integers(0, 3)), min_size=1, max_size=4),
)
def test_among_rows_of_one_instant_the_later_created_wins(history, decisions):
    # one entity, few instants: most rows tie on event_timestamp (and some on created too)
    _check(decisions, history)


@settings(max_examples=100, deadline=None)
@given(_case())
def test_decisions_in_nanoseconds_meet_a_history_in_microseconds(case):
    _check(*case, scale=1000, decision_unit="ns")


@settings(max_examples=100, deadline=None)
@given(_case())
def test_spans_too_wide_for_one_integer_key_are_ranked(case):
    # steps of about 16 years in nanoseconds: 3 entities x 220 years is past 2**62, so times are ranked
    _check(*case, scale=5 * 10**14, decision_unit="ns")


def test_a_history_of_other_entities_gives_nulls():
    _check([("a", 3), ("b", 5)], [("d", 1, 1, 7), (None, 1, 1, 8)])
    _check([("a", 3)], [])
