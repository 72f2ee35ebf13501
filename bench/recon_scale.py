"""Benchmark: a batch three-way reconciliation at 10 million lines, beside datacompy and a
bare DuckDB join of the ledger/processor pair.

Synthesises, straight into Parquet in the matcher's input schemas (the generator's
simulation would take a quarter of an hour to make 10 M settlement lines, and the point
here is the matcher, not the simulation):

* the ledger's expected settlements (one per processor line it expects) and expected bank
  movements (one per payout batch: the sum of its lines' net),
* the processors' lines: the same lines with a small share of breaks planted — net
  amount, fee, presentment currency (an FX mismatch), value date changed; lines missing;
  lines the ledger never saw; lines reported twice,
* the bank's lines: one credit per payout batch, some missing, some nobody expected.

Each planted break's variance id is worked out from what was planted, the way
`recon/matching/variance.py` documents ids (category and what the break is about, never
the matcher's output), and the three-way run must find exactly that set of ids, no more
and no fewer; otherwise the benchmark names the difference, prints no timing and exits 1.

Then, timed, in one process run:

1. the three-way run: the four Parquet inputs handed in as scans,
   `clearline.recon.matching.reconcile.reconcile`, the variances written to Parquet — with the
   process's peak RSS at its end (before any baseline runs);
2. baseline A: datacompy's Polars comparison of the ledger/processor pair (join on the
   line id, compare net, fee, value date);
3. baseline B: a bare DuckDB full outer join of the same pair from the same Parquet files,
   counting rows that differ or lack a partner.

datacompy pins Polars below 1.45 while the project runs on the newest Polars, so the
benchmark runs in its own virtual environment:

    make bench-recon                                    # 10 M lines
    .venv-bench/bin/python bench/recon_scale.py --lines 1000000 [--json]
    .venv-bench/bin/python bench/recon_scale.py --sizes 1,10,30 --no-datacompy

`--sizes` (millions of lines) shows how the cost grows: each size runs in a fresh
process (this script with `--lines`), so each peak RSS is that size's own, and a table
gives time, CPU and memory per size with the ratio to DuckDB's bare join at each.

Each run is timed in wall and CPU seconds (this process, all threads) and the load
average is printed: the machine is shared, and under load the CPU time is the steadier
measure of the code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from clearline.recon import BANK_SCHEMA, SETTLEMENT_SCHEMA, Inputs, Tolerances, expectations, reconcile

PROCESSORS = ("adyen", "stripe", "checkoutcom")
CURRENCIES = ("EUR", "USD", "GBP")
START = date(2026, 1, 1)
BREAK_RATE = 0.0002  # per planted category: 2,000 breaks of each kind at 10 M lines
AS_OF = datetime(2027, 3, 1, tzinfo=timezone.utc)  # every deadline has passed: breaks, not "not arrived yet"


def _ids(prefix: str, n: int, start: int = 0) -> pl.Expr:
    return pl.format(f"{prefix}{{}}", pl.int_range(start, start + n, dtype=pl.Int64).cast(pl.String).str.zfill(10))


def variance_id(category: str, key: str) -> str:
    """A variance's id as recon/matching/variance.py defines it, written out again here so
    the expected ids do not come from the code under test."""
    return "var_" + hashlib.sha256(f"{category}|{key}".encode()).hexdigest()[:20]


PART = 10_000_000  # lines synthesised at once: 10 M take ~7 GiB here, 30 M in one go over 18 GiB
INPUTS = ("expected_settlements", "expected_movements", "settlement_lines", "bank_lines")


def synthesise(n: int, seed: int, folder: Path) -> dict[str, int]:
    """Write the four inputs under `folder`, and beside them `planted.parquet`: the
    category and variance id of every break planted; return how many of each kind.

    As in a generated world, each side is internally consistent: a changed line changes
    its batch's bank credit, so line breaks are found on the lines, not again on payouts.
    Above `PART` lines the files are written a part at a time (row groups appended), each
    part a year of its own payout batches, statements and ids, so memory stays that of one
    part; up to `PART` the files are exactly those of one part."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    sizes = [min(PART, n - start) for start in range(0, n, PART)]
    writers: dict[str, pq.ParquetWriter] = {}
    planted = []
    for i, size in enumerate(sizes):
        frames, marks = _part(size, rng, f"_p{i}" if len(sizes) > 1 else "", i * PART)
        for name, frame in zip(INPUTS, frames):
            table = frame.to_arrow()
            if name not in writers:
                writers[name] = pq.ParquetWriter(folder / f"{name}.parquet", table.schema)
            writers[name].write_table(table)
        planted.append(marks)
        del frames
    for writer in writers.values():
        writer.close()
    kinds = pl.concat(planted)
    kinds.write_parquet(folder / "planted.parquet")
    return dict(sorted(kinds.group_by("category").len().iter_rows()))


def _part(n: int, rng: np.random.Generator, tag: str, start: int) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """One part of `synthesise`: its four input frames and its planted breaks; `tag` sets
    its payout batches, statements and bank references apart, `start` its ids."""
    proc = rng.integers(0, len(PROCESSORS), n)
    ccy = rng.integers(0, len(CURRENCIES), n)
    day = np.sort(rng.integers(0, 365, n))
    gross = rng.integers(500, 500_000, n)
    fee = gross * 29 // 1000 + 30
    base = pl.DataFrame(
        {
            "processor": np.array(PROCESSORS)[proc],
            "currency": np.array(CURRENCIES)[ccy],
            "available_on": pl.Series(day.astype("timedelta64[D]") + np.datetime64(START)).cast(pl.Date),
            "gross": gross,
            "fee": fee,
        }
    ).with_columns(
        settlement_id=_ids("stl_", n, start),
        payment_id=_ids("pay_", n, start),
        event_id=_ids("evt_", n, start),
        merchant_id=pl.format("m_{}", (pl.int_range(n) % 5000).cast(pl.String).str.zfill(5)),
        payout_id=pl.format(
            "po_{}_{}_{}" + tag,
            "processor",
            pl.col("currency").str.to_lowercase(),
            pl.col("available_on").dt.strftime("%Y%m%d"),
        ),
    )
    expected = base.select(
        "event_id",
        "processor",
        "settlement_id",
        "payout_id",
        record_type=pl.lit("charge"),
        payment_id="payment_id",
        merchant_id="merchant_id",
        gross_minor="gross",
        gross_currency="currency",
        fee_minor="fee",
        fee_currency="currency",
        net_minor=pl.col("gross") - pl.col("fee"),
        net_currency="currency",
        available_on="available_on",
        fx_rate=pl.lit(None, pl.String),
    ).cast(expectations.SETTLEMENT_SCHEMA)

    k = max(int(n * BREAK_RATE), 1)
    picks = rng.choice(n, size=6 * k, replace=False)
    amount_rows, fee_rows, late_rows, missing_rows, dup_rows, fx_rows = np.split(picks, 6)
    other_currency = dict(zip(CURRENCIES, CURRENCIES[1:] + CURRENCIES[:1]))
    lines = expected.with_row_index("i").with_columns(
        net_minor=pl.when(pl.col("i").is_in(amount_rows)).then(pl.col("net_minor") - 777).otherwise("net_minor"),
        # charged in another currency than the ledger's order: the net (what is paid out) as expected
        gross_currency=pl.when(pl.col("i").is_in(fx_rows))
        .then(pl.col("gross_currency").replace_strict(other_currency))
        .otherwise("gross_currency"),
        fee_minor=pl.when(pl.col("i").is_in(fee_rows)).then(pl.col("fee_minor") + 55).otherwise("fee_minor"),
        value_date=pl.when(pl.col("i").is_in(late_rows))
        .then(pl.col("available_on") + pl.duration(days=9))
        .otherwise("available_on"),
    )
    lines = lines.with_columns(
        net_minor=pl.when(pl.col("i").is_in(fee_rows))
        .then(pl.col("gross_minor") - pl.col("fee_minor"))
        .otherwise("net_minor")
    )
    unknown = lines.head(k).with_columns(
        settlement_id=pl.format("stx_{}", "settlement_id"), payment_id=pl.format("payx_{}", "payment_id")
    )
    reported = pl.concat(
        [lines.filter(~pl.col("i").is_in(missing_rows)), lines.filter(pl.col("i").is_in(dup_rows)), unknown]
    )
    reported = reported.select(
        "processor",
        line_id="settlement_id",
        payment_id="payment_id",
        payout_id="payout_id",
        record_type="record_type",
        merchant_id="merchant_id",
        gross_minor="gross_minor",
        gross_currency="gross_currency",
        fee_minor="fee_minor",
        fee_currency="fee_currency",
        net_minor="net_minor",
        net_currency="net_currency",
        fx_rate="fx_rate",
        created_at=pl.col("available_on").cast(pl.Datetime("us", "UTC")) - pl.duration(days=2),
        value_date="value_date",
        source_file=pl.format("{}_{}.csv", "processor", "payout_id"),
        line_no=pl.int_range(pl.len()) + 2,
        source_type="record_type",
        raw=pl.lit(None, pl.String),
    ).cast(SETTLEMENT_SCHEMA)

    payouts = (
        expected.group_by("processor", "payout_id", "net_currency")
        .agg(amount_minor=pl.col("net_minor").sum(), day=pl.col("available_on").max())
        .sort("payout_id")
    )
    movements = payouts.select(
        event_id=pl.format("evt_po_{}", "payout_id"),
        kind=pl.lit("processor_payout"),
        processor="processor",
        reference="payout_id",
        amount_minor="amount_minor",
        amount_currency="net_currency",
        expected_on=pl.col("day") + pl.duration(days=1),
    ).cast(expectations.BANK_SCHEMA)
    # The bank credits what the processor paid: the sum of the lines it reported per batch
    # (a processor's report and its payout agree with each other, not with the ledger).
    paid = reported.group_by("payout_id").agg(paid_minor=pl.col("net_minor").sum())
    unbanked = max(payouts.height // 500, 1)
    bank = (
        movements.join(paid, left_on="reference", right_on="payout_id")
        .sort("reference")
        .slice(unbanked)
        .select(
            format=pl.lit("camt053"),
            account=pl.format("ACCT-{}", "amount_currency"),
            bank_ref=pl.format("BR" + tag + "{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(9)),
            reference="reference",
            text=pl.format("{} PAYOUT {}", pl.col("processor").str.to_uppercase(), "reference"),
            amount_minor="paid_minor",
            amount_currency="amount_currency",
            booking_date="expected_on",
            value_date="expected_on",
            source_file=pl.format("stmt_{}" + tag + ".xml", "amount_currency"),
            line_no=pl.lit(0),
            # no statement identity: these lines stand for the bank side alone (no
            # statements, so no continuity or balance rule runs here)
            statement_id=pl.lit(""),
            sequence=pl.lit(None, pl.String),
        )
    )
    stray = bank.head(unbanked).with_columns(
        reference=pl.lit(None, pl.String),
        text=pl.lit("INCOMING WIRE"),
        bank_ref=pl.format("BX{}", "bank_ref"),
        amount_minor=pl.col("amount_minor") // 7,
    )
    bank = (
        pl.concat([bank, stray])
        .sort("account", "booking_date", "bank_ref")
        .with_columns(line_no=pl.int_range(pl.len()).over("source_file") + 1)
        .cast(BANK_SCHEMA)
    )

    # What each planted break is about (the key its variance id hashes): a changed or
    # missing line by processor and line id; a second copy by its line id and where it
    # was reported (`reported` is the n - k lines kept, then the k second copies, then the
    # k unknown lines); a payout by kind and reference; a stray bank line by account, bank
    # reference and booking day.
    line_key = pl.concat_str("processor", pl.lit("|"), "settlement_id")
    at = pl.concat_str("source_file", pl.lit(":"), pl.col("line_no").cast(pl.String))
    picked = lambda rows: expected.with_row_index("i").filter(pl.col("i").is_in(rows)).select(key=line_key)  # noqa: E731
    planted = pl.concat(
        [
            picked(amount_rows).with_columns(category=pl.lit("amount_mismatch")),
            picked(fee_rows).with_columns(category=pl.lit("fee_mismatch")),
            picked(late_rows).with_columns(category=pl.lit("late_settlement")),
            picked(missing_rows).with_columns(category=pl.lit("missing_at_processor")),
            picked(fx_rows).with_columns(category=pl.lit("currency_fx_mismatch")),
            reported.slice(n - k, k).select(
                key=pl.concat_str("processor", pl.lit("|"), "line_id", pl.lit("|"), at), category=pl.lit("duplicate")
            ),
            reported.slice(n, k).select(
                key=pl.concat_str("processor", pl.lit("|"), "line_id"), category=pl.lit("missing_in_ledger")
            ),
            movements.join(paid, left_on="reference", right_on="payout_id")
            .sort("reference")
            .head(unbanked)
            .select(key=pl.concat_str("kind", pl.lit("|"), "reference"), category=pl.lit("payout_not_in_bank")),
            stray.select(
                key=pl.concat_str(
                    "account", pl.lit("|"), "bank_ref", pl.lit("|"), pl.col("booking_date").cast(pl.String)
                ),
                category=pl.lit("unexplained_bank_line"),
            ),
        ]
    )
    planted = planted.with_columns(
        variance_id=pl.Series([variance_id(c, key) for c, key in planted.select("category", "key").iter_rows()])
    )
    return [expected, movements, reported, bank], planted


def _cpu() -> float:
    """This process's CPU seconds (user + system, all threads): on a machine shared with
    other work the wall time says more about the machine, the CPU time about the code."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run, *args) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of `run(*args)`."""
    wall, cpu = time.perf_counter(), _cpu()
    result = run(*args)
    return time.perf_counter() - wall, _cpu() - cpu, result


def pair_part(folder: Path, tol: Tolerances) -> None:
    """The ledger/processor part alone, from the same two Parquet files datacompy reads."""
    from clearline.recon import match_settlements

    match_settlements(
        pl.scan_parquet(folder / "expected_settlements.parquet"),
        pl.scan_parquet(folder / "settlement_lines.parquet"),
        tol,
        AS_OF.date(),
    )


def three_way(folder: Path, tol: Tolerances) -> pl.DataFrame:
    """Parquet scans in (the matcher reads each in parts, only what it needs), variances out."""
    inputs = Inputs(*(pl.scan_parquet(folder / f"{name}.parquet") for name in INPUTS))
    result = reconcile(inputs, tol, AS_OF)
    result.variances.write_parquet(folder / "variances.parquet")
    return result.variances


def datacompy_pair(folder: Path) -> None:
    import datacompy

    ledger = pl.read_parquet(
        folder / "expected_settlements.parquet", columns=["settlement_id", "net_minor", "fee_minor", "available_on"]
    )
    lines = pl.read_parquet(
        folder / "settlement_lines.parquet", columns=["line_id", "net_minor", "fee_minor", "value_date"]
    )
    compare = datacompy.PolarsCompare(
        ledger.rename({"settlement_id": "line_id", "available_on": "value_date"}),
        lines,
        join_columns=["line_id"],
        df1_name="ledger",
        df2_name="processor",
    )
    compare.report()


def duckdb_pair(folder: Path) -> int:
    con = duckdb.connect()
    differing = con.execute(f"""
        SELECT count(*) FROM read_parquet('{folder / "expected_settlements.parquet"}') e
        FULL OUTER JOIN read_parquet('{folder / "settlement_lines.parquet"}') l ON e.settlement_id = l.line_id
        WHERE e.settlement_id IS NULL OR l.line_id IS NULL OR e.net_minor <> l.net_minor
           OR e.fee_minor <> l.fee_minor OR e.available_on <> l.value_date""").fetchone()[0]
    con.close()
    return differing


def id_differences(planted: pl.DataFrame, variances: pl.DataFrame) -> list[str]:
    """What differs between the planted variance ids and the ids found, per category and
    with an example of each; empty when the two sets of ids are the same."""
    said = []
    for name, left, right in (("planted, not found", planted, variances), ("found, not planted", variances, planted)):
        odd = left.join(right.select("variance_id"), on="variance_id", how="anti")
        for category, ids in odd.group_by("category").agg("variance_id").sort("category").iter_rows():
            said.append(f"{len(ids)} {category} {name} (e.g. {ids[0]})")
    repeated = variances.height - variances["variance_id"].n_unique()
    if repeated:
        said.append(f"{repeated} variance ids found more than once")
    return said


def run(lines: int, seed: int, with_datacompy: bool) -> dict:
    """One size: synthesise, then time the three-way run and the baselines (the report)."""
    from clearline import config

    tol = Tolerances.from_config(config.load("recon")["matching"])
    with tempfile.TemporaryDirectory(prefix="recon-scale-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        # In a child process, so this process's peak RSS is the three-way run's own.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            planted = pool.submit(synthesise, lines, seed, folder).result()
        made = time.perf_counter() - t0
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        load_before = os.getloadavg()[0]
        elapsed, cpu, variances = timed(three_way, folder, tol)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        found = dict(sorted(variances.group_by("category").len().iter_rows()))
        wrong = id_differences(pl.read_parquet(folder / "planted.parquet"), variances)
        if wrong:
            raise SystemExit(
                f"error: no timings: the three-way run at {lines:,} lines did not find exactly the "
                f"planted variances: {'; '.join(wrong)}"
            )
        del variances
        pair, pair_cpu, _ = timed(pair_part, folder, tol)
        dc, dc_cpu, _ = timed(datacompy_pair, folder) if with_datacompy else (None, None, None)
        db, db_cpu, differing = timed(duckdb_pair, folder)
    return {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Polars {pl.__version__}, DuckDB {duckdb.__version__}",
        "lines": lines,
        "synthesise_s": round(made, 2),
        "three_way_s": round(elapsed, 2),
        "three_way_cpu_s": round(cpu, 2),
        "peak_rss_mib": round(peak_mib),
        "rss_before_run_mib": round(rss_before / 1024),
        "planted": planted,
        "found": found,
        "found_equals_planted": found == planted,
        "found_ids_equal_planted_ids": True,  # checked above: no timing is printed otherwise
        "ledger_processor_part_s": round(pair, 2),
        "ledger_processor_part_cpu_s": round(pair_cpu, 2),
        "datacompy_pair_s": dc and round(dc, 2),
        "datacompy_pair_cpu_s": dc_cpu and round(dc_cpu, 1),
        "duckdb_pair_s": round(db, 2),
        "duckdb_pair_cpu_s": round(db_cpu, 2),
        "duckdb_pair_differing": differing,
        "ratio_datacompy_over_pair_part": dc and round(dc / pair, 2),
        "ratio_pair_part_over_duckdb": round(pair / db, 2),
        "ratio_pair_part_over_duckdb_cpu": round(pair_cpu / db_cpu, 2),
        "ratio_duckdb_over_three_way": round(db / elapsed, 2),
        "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def sizes(millions: list[float], seed: int, with_datacompy: bool) -> list[dict]:
    """`run` at each size, each in a fresh process so that its peak RSS is its own."""
    reports = []
    for m in millions:
        cmd = [sys.executable, __file__, "--lines", str(round(m * 1_000_000)), "--seed", str(seed), "--json"]
        done = subprocess.run(cmd + ([] if with_datacompy else ["--no-datacompy"]), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"error: the run at {m:g} M lines failed:\n{done.stderr.strip() or done.stdout.strip()}")
        reports.append(json.loads(done.stdout))
    return reports


def table(reports: list[dict]) -> str:
    """Time, CPU and memory per size, per million lines, and the ratio to DuckDB's bare join."""
    head = (
        "| lines | three-way wall / CPU s | peak RSS MiB (before the run) | CPU s per M lines | run's MiB per M lines "
        "| pair part wall / CPU s | DuckDB bare join wall / CPU s | pair / DuckDB wall (CPU) | load |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        m, before = r["lines"] / 1_000_000, r["rss_before_run_mib"]
        rows.append(
            f"| {r['lines']:,} | {r['three_way_s']} / {r['three_way_cpu_s']} | {r['peak_rss_mib']:,} ({before:,}) "
            f"| {r['three_way_cpu_s'] / m:.2f} | {(r['peak_rss_mib'] - before) / m:.0f} "
            f"| {r['ledger_processor_part_s']} / {r['ledger_processor_part_cpu_s']} "
            f"| {r['duckdb_pair_s']} / {r['duckdb_pair_cpu_s']} "
            f"| {r['ratio_pair_part_over_duckdb']} ({r['ratio_pair_part_over_duckdb_cpu']}) "
            f"| {r['load_average_before_after'][0]} -> {r['load_average_before_after'][1]} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=10_000_000, help="Processor lines (and ledger expectations).")
    ap.add_argument("--sizes", help="Millions of lines, comma-separated (e.g. 1,10,30): one fresh process each.")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-datacompy", action="store_true", help="Skip the datacompy baseline (slow at 30 M).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.sizes:
        try:
            millions = [float(part) for part in args.sizes.split(",")]
        except ValueError:
            raise SystemExit(f"error: --sizes takes millions of lines, comma-separated, got {args.sizes!r}") from None
        reports = sizes(millions, args.seed, not args.no_datacompy)
        print(json.dumps(reports, indent=2) if args.json else table(reports))
        return
    report = run(args.lines, args.seed, not args.no_datacompy)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
