"""The project's point-in-time join (`clearline.models.pit`) against real Feast
`get_historical_features` (DuckDB offline store in a tmp folder) on a generated world's
feature history, and the comparison of two training sets. Against the rule read literally
on random histories (Hypothesis): tests/models/test_pit_definition.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from clearline.features.batch import feature_history, order_features, read_events
from clearline.features.feast_repo import feature_names, history_path
from clearline.features.store import FeastSettings, apply, open_store, point_in_time
from clearline.models import pit
from clearline.pipelines.world.generate import WorldOptions, generate

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pl.Datetime("us", "UTC")


def test_compare_names_missing_rows_and_differing_cells():
    base = pl.DataFrame(
        {"k": ["a", "a", "b"], "event_timestamp": [T0, T0, T0], "x": [1.0, None, 2.0]},
        schema={"k": pl.String, "event_timestamp": TS, "x": pl.Float64},
    )
    assert pit.compare(base, base.reverse(), "k", ["x"]).identical  # order does not matter; nulls match
    changed = base.with_columns(pl.when(pl.col("k") == "b").then(None).otherwise(pl.col("x")).alias("x"))
    diff = pit.compare(base, changed, "k", ["x"])
    assert not diff.identical and diff.mismatched_cells == {"x": 1}
    shorter = pit.compare(base, base.head(2), "k", ["x"])
    assert (shorter.rows_only_ours, shorter.rows_only_theirs) == (1, 0)


# ---------------------------------------------------------------------------- parity with Feast


@pytest.fixture(scope="module")
def world_rows(tmp_path_factory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("pit-world")
    generate(WorldOptions(days=120, merchants=6, seed=21, discrepancy_rate=0.0), out)
    return order_features(read_events(out))


def _entity_rows(rows: pl.DataFrame, entity: str) -> pl.DataFrame:
    """Decisions at each order's time, an hour later, and a day before it (often before
    the entity's first row: all features null there)."""
    key = f"{entity}_id"
    t = pl.col("decision_time")
    return pl.concat(
        [
            rows.select(key, (t + shift).alias("event_timestamp"))
            for shift in (timedelta(0), timedelta(hours=1), timedelta(days=-1))
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("entity", ["buyer", "merchant"])
def test_the_pit_join_gives_feasts_training_set(world_rows, entity, tmp_path: Path):
    history = feature_history(world_rows, entity)
    # a backfill: rows about earlier moments written a week later must not reach the decisions in between
    backfill = history.sample(fraction=0.1, seed=3).with_columns(
        (pl.col("created") + timedelta(days=7)).alias("created"),
        *(pl.lit(-1, pl.Int64).cast(history.schema[n]).alias(n) for n in feature_names(entity)),
    )
    history = pl.concat([history, backfill])
    settings_ = FeastSettings(project="pit_parity", data_dir=tmp_path / "feast")
    apply(settings_)
    history.write_parquet(history_path(settings_.data_dir, entity))
    decisions = _entity_rows(world_rows, entity)
    names = ["currency", *feature_names(entity)]
    feast = point_in_time(open_store(settings_), entity, decisions)
    ours = pit.join(decisions, history, f"{entity}_id", names)
    assert feast.height == ours.height == decisions.height
    assert ours[names[1]].null_count() > 0 and ours[names[1]].null_count() < ours.height  # both cases occur
    if entity == "buyer":  # buyers order rarely: a backfilled row is the newest known somewhere
        assert ours.filter(pl.col(names[1]) == -1).height > 0
    difference = pit.compare(ours, feast, f"{entity}_id", names)
    assert difference.identical, difference.as_dict()
