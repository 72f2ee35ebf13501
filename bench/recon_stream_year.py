"""A year of simulated time through the streaming matcher's core, with retirement.

    .venv/bin/python bench/recon_stream_year.py --days 365 --merchants 300 --horizon 30

A generated world (`clearline generate`'s generator) is fed to `Continuous` in process,
no Kafka, the way the flow sees it: each day's ledger events that day, a processor report
the day after its last line, a bank statement file the morning after its closing day; the
matcher reconciles once a simulated day at the day's end (the event-time watermark), and
lets go of what has settled for `--horizon` days (configs/recon.yaml `flow:
retire_after_days`). Per simulated month it prints the lines held and those of them dated
before the horizon ("past hz": what history leaves behind; the rest is the horizon's own
volume, which follows the world's: buyers' repayments ramp up until March), the
expectations held, the time per advance (mean and max, wall and CPU), the matcher's
snapshot size (pickled, as Bytewax recovery stores it) and the memory it takes restored
in a fresh process ("state MiB"), the process RSS, the statements held and cut out, and
the variances open at the month's end (all of them, and those kept frozen with what was
cut out): what is left of the work per advance is bounded by the open ones. These stay
flat once the horizon has filled; the held inputs of the whole year, loaded up front to
feed the stream, are a constant part of the RSS, and what the allocator keeps of each
advance's frames a varying one.

With `--work-queue-days N` a finance team works the queue: every variance the stream
publishes gets the adjusting entry a person posts through the workbench N simulated days
after it was raised (`adjustment.posted` as `adjusted.from_events` reads it: the entry
`propose_adjustment` proposes, else "manual"), fed to the stream that morning, unless the
variance is gone by then; the batch gets the same entries. Per month it then also prints
the entries posted and the variances they keep closed. An entry closes a variance by its
id; one for a break between the bank and the ledger also moves the ledger's bank cash
(its proposal's `bank_cash` leg), so the reference nets from its day on and no later balance mismatch
lists it as open.

At the end it checks that the stream's variances equal one batch `reconcile` over the
same year, and times that whole-history reconciliation: what every advance cost before
retirement (each re-reconciled everything ever held). Its ratio to the last month's mean
advance is printed. CPU seconds and the 1-minute load average before and after are
printed too: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from clearline import config, events
from clearline.pipelines.cli.recon import parse_all, report_files, tolerances
from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon import (
    Continuous,
    Inputs,
    Retirement,
    adjusted,
    bank_books,
    expectations,
    input_watermark,
    propose_adjustment,
    reconcile,
)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


_STATE = """
import os, pickle, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
import polars as pl
import clearline.recon
# what restoring any frame costs once (the engine's pools), before the state is measured
pickle.loads(pickle.dumps(pl.DataFrame({"s": ["a"], "l": [[1]]}).with_columns(h=pl.col("s").hash())))
before = rss()
state = pickle.loads(sys.stdin.buffer.read())
print(rss() - before)
"""


def _state_mib(snapshot: bytes) -> float:
    """The matcher's state in memory: what a fresh process grows by restoring `snapshot`
    (this process's RSS also holds the year's inputs and what the allocator kept)."""
    out = subprocess.run([sys.executable, "-c", _STATE], input=snapshot, capture_output=True, check=True)
    return float(out.stdout)


def _past_horizon(flow: Continuous, cutoff: date) -> int:
    """Lines the matcher holds dated before `cutoff` (the horizon behind the day): what
    history leaves in the state, as against the horizon's own volume."""
    lines = flow.holding("settlement_lines").filter(pl.col("value_date") < cutoff).height
    return lines + flow.holding("bank_lines").filter(pl.col("booking_date") < cutoff).height


def _cpu() -> float:
    return time.process_time()  # every thread of the process


def world_arrivals(world: Path) -> tuple[dict[date, dict[str, list[pl.DataFrame]]], Inputs, datetime]:
    """(inputs by arrival day and input name, the batch's Inputs, the batch's watermark)."""
    ev = pl.read_parquet(
        world / "events" / "events.parquet", columns=["event_id", "event_type", "occurred_at", "merchant_id", "payload"]
    )
    settle_exp, moves = expectations.from_events(ev.lazy())
    entries = adjusted.from_events(ev.lazy())
    day_of = ev.select("event_id", _day=pl.col("occurred_at").dt.date())
    by_day: dict[date, dict[str, list[pl.DataFrame]]] = defaultdict(lambda: defaultdict(list))
    for name, frame in (("expected_settlements", settle_exp), ("expected_movements", moves), ("adjustments", entries)):
        for (day,), part in frame.join(day_of, on="event_id").partition_by("_day", as_dict=True).items():
            by_day[day][name].append(part.drop("_day"))
    all_settle, all_bank, all_statements = [], [], []
    for path in report_files(world / "settlements") + report_files(world / "bank"):
        settle, bank, statements = parse_all([path], quiet=True)
        if settle.height:
            by_day[settle["value_date"].max() + timedelta(days=1)]["settlement_lines"].append(settle)
            all_settle.append(settle)
        if statements.height:
            day = statements["closing_date"].max() + timedelta(days=1)
            by_day[day]["bank_lines"].append(bank)
            by_day[day]["statements"].append(statements)
            all_bank.append(bank)
            all_statements.append(statements)
    books = bank_books(config.load("platform"))
    inputs = Inputs(
        settle_exp, moves, pl.concat(all_settle), pl.concat(all_bank), pl.concat(all_statements), books, entries
    )
    return by_day, inputs, input_watermark(inputs, ev["occurred_at"].max())


def queue_entry(variance: dict, day: date) -> dict:
    """The adjusting entry (adjusted.ADJUSTMENT_SCHEMA) a finance user posts for `variance`
    on `day`: the one `propose_adjustment` proposes, legs and all (a break between the bank
    and the ledger moves the bank's cash), or "manual" with legs that move no bank cash."""
    proposal = propose_adjustment(variance)
    legs = [(g.account, g.side, g.amount.minor, g.amount.currency) for g in proposal.legs] if proposal else []
    kind = proposal.kind if proposal is not None else "manual"
    return {
        "event_id": f"adj_queue_{variance['variance_id']}",
        "variance_id": variance["variance_id"],
        "merchant_id": variance["merchant_id"] or events.PLATFORM,
        "kind": kind,
        "code": "written_off" if kind == "write_off" else "our_error",
        "approved_by": "finance_queue",
        "approved_at": datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=10),
        "bank": adjusted.bank_net(legs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--merchants", type=int, default=300)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--horizon", type=int, default=30, help="retire_after_days")
    ap.add_argument("--world", type=Path, default=None, help="a generated world to reuse (made there if absent)")
    ap.add_argument("--baseline-runs", type=int, default=2, help="whole-history reconciliations timed (best counts)")
    ap.add_argument(
        "--work-queue-days",
        type=int,
        default=None,
        help="post an adjusting entry for each published variance this many simulated days after it was raised",
    )
    args = ap.parse_args(argv)
    queue = args.work_queue_days
    load0 = os.getloadavg()[0]
    cpu0 = _cpu()
    world = args.world or Path(tempfile.mkdtemp(prefix="recon-year-")) / "world"
    if not (world / "events" / "events.parquet").exists():
        t = time.perf_counter()
        generate(WorldOptions(days=args.days, merchants=args.merchants, seed=args.seed), world)
        print(f"world: {args.days} days, {args.merchants} merchants, generated in {time.perf_counter() - t:.1f} s")
    by_day, inputs, as_of = world_arrivals(world)
    n_lines = inputs.settlement_lines.height + inputs.bank_lines.height
    n_exp = inputs.expected_settlements.height + inputs.expected_movements.height
    print(
        f"year: {inputs.settlement_lines.height:,} processor lines, {inputs.bank_lines.height:,} bank lines, "
        f"{inputs.statements.height:,} statements, {n_exp:,} expectations; watermark {as_of:%Y-%m-%d}"
    )
    print(f"RSS with the year's inputs loaded to feed the stream: {_rss_mib():,.0f} MiB")

    store = Path(tempfile.mkdtemp(prefix="recon-retired-"))
    flow = Continuous(tolerances(), inputs.bank_books, Retirement(args.horizon, store))
    months: dict[str, list] = defaultdict(list)
    published: set[str] = set()
    last = None
    header = (
        f"{'month':7} {'lines held':>11} {'past hz':>7} {'exp. held':>10} {'advances':>8} {'mean ms':>8} {'max ms':>8} "
        f"{'CPU ms':>7} {'snapshot KiB':>12} {'state MiB':>9} {'RSS MiB':>8} {'retired units':>13} {'back':>5} "
        f"{'stmts held':>10} {'stmts cut':>9} {'open var':>8} {'frozen':>6}"
        + (f" {'entries':>7} {'closed':>6}" if queue is not None else "")
    )
    due: dict[date, list[str]] = defaultdict(list)  # entry day -> variance ids raised N days before
    # variance id -> its row as published (the latest facts), until its entry's day: the
    # bench's own bookkeeping stays bounded too, so the RSS tells the matcher's
    raised: dict[str, dict] = {}
    queued: set[str] = set()  # every variance id given an entry's day
    posted: list[dict] = []
    print(header)
    day = min(by_day)
    end_day = as_of.date()
    while day <= end_day + timedelta(days=1):
        todays = {name: list(parts) for name, parts in by_day.get(day, {}).items()}
        rows = [raised.pop(v) for v in due.pop(day, [])]
        entries = [queue_entry(row, day) for row in rows if row["variance_id"] in published]
        if entries:
            todays.setdefault("adjustments", []).append(adjusted.frame(entries))
            posted += entries
        flow.add(**{name: pl.concat(parts) for name, parts in todays.items()})
        mark = min(datetime.combine(day, datetime.max.time(), timezone.utc), as_of)
        t, c = time.perf_counter(), _cpu()
        changes = flow.advance(mark)
        months[f"{day:%Y-%m}"].append((time.perf_counter() - t, _cpu() - c))
        published |= set(changes.new["variance_id"])
        published -= set(changes.gone)
        if queue is not None:
            for row in pl.concat([changes.new, changes.changed]).iter_rows(named=True):
                vid = row["variance_id"]
                if vid not in queued:
                    queued.add(vid)
                    due[day + timedelta(days=queue)].append(vid)
                    raised[vid] = row
                elif vid in raised:  # changed before its entry's day
                    raised[vid] = row
        last = changes
        month = f"{day:%Y-%m}"
        if (day + timedelta(days=1)).month != day.month or day > end_day:
            held = flow.held()
            snapshot = pickle.dumps(flow)
            walls = [w for w, _ in months[month]]
            cpus = [c for _, c in months[month]]
            print(
                f"{month:7} {held.get('settlement_lines', 0) + held.get('bank_lines', 0):>11,} "
                f"{_past_horizon(flow, day - timedelta(days=args.horizon)):>7,} "
                f"{held.get('expected_settlements', 0) + held.get('expected_movements', 0):>10,} {len(walls):>8} "
                f"{1000 * sum(walls) / len(walls):>8.1f} {1000 * max(walls):>8.1f} "
                f"{1000 * sum(cpus) / len(cpus):>7.1f} "
                f"{len(snapshot) / 1024:>12,.0f} {_state_mib(snapshot):>9,.0f} {_rss_mib():>8,.0f} "
                f"{flow.retired_units():>13,} {flow.units_back:>5} "
                f"{held.get('statements', 0):>10,} {flow.retired_statements():>9,} "
                f"{changes.result.variances.height:>8,} {flow.frozen():>6,}"
                + (f" {len(posted):>7,} {changes.result.closed.height:>6,}" if queue is not None else ""),
                flush=True,
            )
        day += timedelta(days=1)

    if queue is not None:
        inputs = Inputs(**{**inputs.__dict__, "adjustments": pl.concat([inputs.adjustments, adjusted.frame(posted)])})
        open_by = changes.result.variances.group_by("category").len().sort("len", descending=True)
        print(
            f"work queue, {queue} days: {len(posted):,} entries posted, {changes.result.closed.height:,} variances "
            f"closed by them; open at the end by category: " + ", ".join(f"{c} {n:,}" for c, n in open_by.iter_rows())
        )
    batch_times = []
    for _ in range(args.baseline_runs):
        t, c = time.perf_counter(), _cpu()
        batch = reconcile(inputs, tolerances(), as_of)
        batch_times.append((time.perf_counter() - t, _cpu() - c))
    same = (
        last.result.variances.equals(batch.variances)
        and last.result.closed.equals(batch.closed)
        and published == set(batch.variances["variance_id"])
    )
    final_month = months[max(months)]
    stream_mean = sum(w for w, _ in final_month) / len(final_month)
    stream_cpu = sum(c for _, c in final_month) / len(final_month)
    base_wall, base_cpu = min(batch_times)
    print(f"variances: stream {last.result.variances.height:,}, batch {batch.variances.height:,}, identical: {same}")
    print(
        f"whole-history reconcile (the old advance) over {n_lines:,} lines: {base_wall:.2f} s wall, "
        f"{base_cpu:.2f} s CPU (best of {args.baseline_runs})"
    )
    print(
        f"last month's advance: {1000 * stream_mean:.0f} ms wall, {1000 * stream_cpu:.0f} ms CPU; "
        f"old / new = {base_wall / stream_mean:.1f}x wall, {base_cpu / stream_cpu:.1f}x CPU"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process CPU {_cpu() - cpu0:.1f} s, peak RSS {peak:,.0f} MiB, load {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
