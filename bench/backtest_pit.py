"""Benchmark: a point-in-time training set — 1 million decisions over 10 million feature
rows — by the project's join (`clearline.models.pit.join` on `pl.scan_parquet` of Feast's
offline file), beside Feast's `get_historical_features` (DuckDB offline store,
`filter_by_created_timestamp=True`) on the same data and a bare DuckDB ASOF join (the floor:
no created filter, no tie-break, nothing but the join), checking that ours and Feast's give
the same training set row for row, and printing the ratios.

Each step runs in its own subprocess, so each peak RSS is its own (printed with the
process's RSS before the step: the imports); CPU seconds are the step's process time (all
threads), and the 1-minute load average is printed before and after each step — wall times
on a shared machine say as much about the machine as about the code. If Feast cannot hold
the full size (its step fails), the identity check is made at a tenth of it, and the output
says at which size it was made.

The inputs are synthesised straight into the merchant feature view's history schema
(`clearline.features.store.history_schema("merchant")`): generating 10 M decisions through the
world generator would take hours and the point here is the join. Ids are spread over
`--entities` merchants, timestamps over a year; a share of rows (`--backfill`) are
backfills, created days after the moment they describe (the case Feast's created filter
exists for); some values are null. Decisions pick an entity and an instant at random,
some before the entity's first row.

    .venv/bin/python bench/backtest_pit.py                       # 10 M rows, 1 M decisions
    .venv/bin/python bench/backtest_pit.py --rows 1000000 --decisions 100000 [--json]
    .venv/bin/python bench/backtest_pit.py --skip-feast          # the project's join and the floor
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from clearline.models import pit

# The steps' child processes import only what their step needs (Feast's imports alone are
# some 150 MiB, which would count in every step's peak); the parent writes what they need
# to know into step.json.

ENTITY = "merchant"
KEY = f"{ENTITY}_id"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
YEAR_US = 365 * 86_400 * 1_000_000


def synthesise(
    rows: int, decisions: int, entities: int, backfill: float, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    from clearline.features import feature_names
    from clearline.features.store import history_schema

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


STEPS = ("ours", "feast", "asof")


def _step(name: str, folder: Path) -> None:
    """One timed step, in this (child) process: reads the decisions, joins, writes the
    training set beside them (not timed) and prints its figures as one JSON line."""
    plan = json.loads((folder / "step.json").read_text())
    decisions = pl.read_parquet(folder / "decisions.parquet")
    names, history = plan["names"], plan["history"]
    rss_before = _peak_rss_mib()
    load_before = os.getloadavg()[0]
    wall, cpu, usage = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    if name == "ours":
        out = pit.join(decisions, pl.scan_parquet(history), KEY, names)
    elif name == "feast":
        from clearline.features.store import FeastSettings, open_store, point_in_time

        store = open_store(FeastSettings(project="bench_pit", data_dir=folder / "feast"))
        out = point_in_time(store, ENTITY, decisions)
    else:  # the floor: DuckDB's own ASOF join of the same file, the latest row at or before t, nothing else
        import duckdb

        con = duckdb.connect()
        con.register("decisions", decisions.to_arrow())
        out = pl.from_arrow(
            con.sql(
                f"SELECT d.{KEY}, d.event_timestamp, {', '.join('h.' + n for n in names)} FROM decisions d "
                f"ASOF LEFT JOIN read_parquet('{history}') h "
                f"ON d.{KEY} = h.{KEY} AND d.event_timestamp >= h.event_timestamp"
            ).fetch_arrow_table()
        )
    wall, cpu, used = time.perf_counter() - wall, time.process_time() - cpu, resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        # the CPU split, and the pages first touched: a run whose CPU doubles (the slow mode
        # of session 21) says here whether the kernel (page faults) or the join took it
        "user_s": round(used.ru_utime - usage.ru_utime, 2),
        "sys_s": round(used.ru_stime - usage.ru_stime, 2),
        "minor_faults": used.ru_minflt - usage.ru_minflt,
        "peak_rss_mib": round(_peak_rss_mib()),
        "rss_before_mib": round(rss_before),
        "load_1m": f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}",
        "rows_out": out.height,
    }
    if name != "asof":
        out.select(KEY, "event_timestamp", *names).write_parquet(folder / f"{name}.parquet")
    print(json.dumps(figures))


def _peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, not ru_maxrss, which Linux carries over from the
    parent through fork and exec (it would report the parent's synthesis)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_step(name: str, folder: Path) -> dict:
    env = dict(os.environ)
    if name == "ours":  # as `clearline` runs every command (clearline.pipelines.cli.main); Feast as it comes
        env.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    done = subprocess.run(
        [sys.executable, __file__, "--step", name, "--folder", str(folder)], capture_output=True, text=True, env=env
    )
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"failed": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _prepare(folder: Path, rows: int, decisions: int, args) -> float:
    """The history in Feast's offline file (after `feast apply`), the decisions beside it."""
    from clearline.features import history_path
    from clearline.features.store import FeastSettings, apply

    t = time.perf_counter()
    history, entity_rows = synthesise(rows, decisions, args.entities, args.backfill, args.seed)
    settings = FeastSettings(project="bench_pit", data_dir=folder / "feast")
    apply(settings)
    path = history_path(settings.data_dir, ENTITY)
    history.write_parquet(path)
    entity_rows.write_parquet(folder / "decisions.parquet")
    (folder / "step.json").write_text(json.dumps({"names": _names(), "history": str(path)}))
    return round(time.perf_counter() - t, 1)


def _names() -> list[str]:
    from clearline.features import feature_names

    return ["currency", *feature_names(ENTITY)]


def _identical(folder: Path) -> dict:
    ours, feast = (pl.read_parquet(folder / f"{n}.parquet") for n in ("ours", "feast"))
    return pit.compare(ours, feast, KEY, _names()).as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--backfill", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--skip-feast", action="store_true", help="time only the project's join and the floor")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # a child process: one step
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        _step(args.step, args.folder)
        return

    result: dict = {
        "rows": args.rows,
        "decisions": args.decisions,
        "entities": args.entities,
        "backfill_share": args.backfill,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_1m_at_start": round(os.getloadavg()[0], 1),
    }
    with tempfile.TemporaryDirectory(prefix="bench-pit-") as tmp:
        folder = Path(tmp)
        result["synthesis_s"] = _prepare(folder, args.rows, args.decisions, args)
        for name in STEPS:
            if name != "feast" or not args.skip_feast:
                result[name] = _run_step(name, folder)
        ours, floor = result["ours"], result["asof"]
        if "wall_s" in ours and "wall_s" in floor:
            result["ratio_ours_over_asof_wall"] = round(ours["wall_s"] / floor["wall_s"], 2)
            result["ratio_ours_over_asof_cpu"] = round(ours["cpu_s"] / floor["cpu_s"], 2)
        if not args.skip_feast:
            feast = result["feast"]
            if "wall_s" in feast and "wall_s" in ours:
                result["ratio_feast_over_ours_wall"] = round(feast["wall_s"] / ours["wall_s"], 1)
                result["ratio_feast_over_ours_cpu"] = round(feast["cpu_s"] / ours["cpu_s"], 1)
                result["identity_checked_at"] = f"{args.rows:,} rows x {args.decisions:,} decisions (full size)"
                result["difference"] = _identical(folder)
            else:  # Feast could not hold the full size: check identity where it can
                rows, decisions = args.rows // 10, args.decisions // 10
                small = folder / "small"
                _prepare(small, rows, decisions, args)
                result["small_ours"], result["small_feast"] = _run_step("ours", small), _run_step("feast", small)
                result["identity_checked_at"] = f"{rows:,} rows x {decisions:,} decisions (Feast failed at full size)"
                result["difference"] = _identical(small)
    result["load_1m_at_end"] = round(os.getloadavg()[0], 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")


if __name__ == "__main__":
    main()
