"""Benchmark: a point-in-time training set — 1 million decisions over 10 million feature
rows — by the project's join (`clearline.models.pit.join`) beside Feast's `get_historical_features`
(DuckDB offline store, `filter_by_created_timestamp=True`) on the same data, checking
that both give the same training set, and printing the ratio.

The inputs are synthesised straight into the merchant feature view's history schema
(`clearline.features.store.history_schema("merchant")`): generating 10 M decisions through the
world generator would take hours and the point here is the join. Ids are spread over
`--entities` merchants, timestamps over a year; a share of rows (`--backfill`) are
backfills, created days after the moment they describe (the case Feast's created filter
exists for); some values are null. Decisions pick an entity and an instant at random,
some before the entity's first row.

    .venv/bin/python bench/backtest_pit.py                       # 10 M rows, 1 M decisions
    .venv/bin/python bench/backtest_pit.py --rows 1000000 --decisions 100000 [--json]
    .venv/bin/python bench/backtest_pit.py --skip-feast          # only the project's join
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from clearline.features import feature_names, history_path
from clearline.features.store import FeastSettings, apply, history_schema, open_store, point_in_time
from clearline.models import pit

ENTITY = "merchant"
KEY = f"{ENTITY}_id"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
YEAR_US = 365 * 86_400 * 1_000_000


def synthesise(
    rows: int, decisions: int, entities: int, backfill: float, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    start = int(START.timestamp() * 1_000_000)
    ts = start + rng.integers(0, YEAR_US, rows)
    late = rng.random(rows) < backfill
    created = ts + np.where(late, rng.integers(1, 7 * 86_400, rows) * 1_000_000, 0)
    schema = history_schema(ENTITY)
    columns: dict[str, object] = {
        KEY: pl.Series(rng.integers(0, entities, rows)).cast(pl.String).str.pad_start(7, "0"),
        "event_timestamp": pl.Series(ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "created": pl.Series(created).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "currency": pl.Series(rng.choice(["USD", "EUR", "GBP"], rows)),
    }
    for name in feature_names(ENTITY):
        if schema[name] == pl.Float64():
            values = pl.Series(name, rng.random(rows))
            columns[name] = values.set(pl.Series(rng.random(rows) < 0.1), None)  # rates without a denominator
        else:
            columns[name] = pl.Series(name, rng.integers(0, 1_000_000, rows))
    history = pl.DataFrame(columns).select(list(schema)).sort("event_timestamp")
    at = start - 86_400 * 1_000_000 * 7 + rng.integers(0, YEAR_US + 86_400 * 1_000_000 * 7, decisions)
    entity_rows = pl.DataFrame(
        {
            KEY: pl.Series(rng.integers(0, entities, decisions)).cast(pl.String).str.pad_start(7, "0"),
            "event_timestamp": pl.Series(at).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        }
    )
    return history, entity_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--backfill", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--skip-feast", action="store_true", help="time only the project's join")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    t = time.perf_counter()
    history, decisions = synthesise(args.rows, args.decisions, args.entities, args.backfill, args.seed)
    synth_s = time.perf_counter() - t
    names = ["currency", *feature_names(ENTITY)]
    with tempfile.TemporaryDirectory(prefix="bench-pit-") as tmp:
        settings = FeastSettings(project="bench_pit", data_dir=Path(tmp) / "feast")
        apply(settings)
        history.write_parquet(history_path(settings.data_dir, ENTITY))

        t = time.perf_counter()  # the project's path: read the same history file, join
        ours = pit.join(decisions, pl.read_parquet(history_path(settings.data_dir, ENTITY)), KEY, names)
        ours_s = time.perf_counter() - t
        ours_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        result = {
            "rows": args.rows,
            "decisions": args.decisions,
            "entities": args.entities,
            "backfill_share": args.backfill,
            "synthesis_s": round(synth_s, 1),
            "project_pit_join_s": round(ours_s, 2),
            "peak_rss_mib_after_project_join": round(ours_rss),
            "matched_rows": int(ours[names[1]].is_not_null().sum()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average_1m_after_project_join": round(os.getloadavg()[0], 1),
        }
        if not args.skip_feast:
            store = open_store(settings)
            t = time.perf_counter()
            feast = point_in_time(store, ENTITY, decisions)
            feast_s = time.perf_counter() - t
            difference = pit.compare(ours, feast, KEY, names)
            result.update(
                feast_get_historical_features_s=round(feast_s, 2),
                identical=difference.identical,
                difference=difference.as_dict(),
                ratio_feast_over_project=round(feast_s / ours_s, 1),
                load_average_1m_after_feast=round(os.getloadavg()[0], 1),
            )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>36}: {v}")


if __name__ == "__main__":
    main()
