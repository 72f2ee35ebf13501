"""The pieces `clearline train`, `models decide` and `backtest` share: where events come
from, the world's truth, and how a time on the command line is read. Fast, no training:
the commands themselves run in test_models.py and test_backtest.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearline.pipelines.cli.model_sources import NoTrainingInput, events_source, instant, world_truth


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31)),
    st.sampled_from([None, timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
def test_an_iso_time_reads_back_as_the_same_instant_naive_ones_as_utc(moment, zone):
    text = moment.replace(tzinfo=zone).isoformat()
    got = instant(text.replace("+00:00", "Z") if zone is timezone.utc else text, "--from")
    assert got.tzinfo is not None
    assert got == moment.replace(tzinfo=zone or timezone.utc)


def test_a_date_is_midnight_utc_and_text_that_is_no_time_names_the_option():
    assert instant("2026-04-01", "--to") == datetime(2026, 4, 1, tzinfo=timezone.utc)
    with pytest.raises(click.BadParameter) as bad:
        instant("last tuesday", "--cutoff")
    assert bad.value.param_hint == "--cutoff" and "'last tuesday' is not an ISO 8601 timestamp or date" in str(
        bad.value
    )


def _world(root: Path, with_truth: bool) -> Path:
    (root / "events").mkdir(parents=True)
    pl.DataFrame({"event_id": ["e1"]}).write_parquet(root / "events" / "events.parquet")
    if with_truth:
        (root / "truth").mkdir()
        pl.DataFrame({"order_id": ["o1", "o2"], "defaulted": [True, False]}).write_parquet(
            root / "truth" / "orders.parquet"
        )
    return root


def test_the_source_is_the_world_or_the_ledger_archive_and_says_what_is_missing(tmp_path):
    world = _world(tmp_path / "world", with_truth=False)
    assert events_source(world, None) == world
    with pytest.raises(NoTrainingInput, match="not a generated world"):
        events_source(tmp_path / "nope", None)
    with pytest.raises(click.BadParameter, match="two different sources"):
        events_source(world, tmp_path / "ledger")
    state = tmp_path / "ledger"
    with pytest.raises(NoTrainingInput, match=f"no event archive at {state / 'archive'}"):
        events_source(None, state)
    day = state / "archive" / "event_date=2026-04-01"
    day.mkdir(parents=True)
    pl.DataFrame({"offset": [0]}).write_parquet(day / "s0-p0-o000000000000-o000000000000.parquet")
    assert events_source(None, state) == state / "archive"


def test_truth_comes_only_from_a_world_that_has_it(tmp_path):
    assert world_truth(None) is None
    assert world_truth(_world(tmp_path / "bare", with_truth=False)) is None
    truth = world_truth(_world(tmp_path / "full", with_truth=True))
    assert truth is not None and truth["order_id"].to_list() == ["o1", "o2"]
