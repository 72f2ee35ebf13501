"""Benchmark: the decision API's durable record when its workers write at once.

The API runs one process per core, and every worker's decision is fsynced into the one
store before its answer (`clearline.models.api_store`). This times `add_durably` the way
the server uses it: open-loop, record i due at i/rate and its latency counted from when
it was due, 900-byte records, in the same run:

* baseline: ONE process adding at the whole rate alone (no other writer to wait for);
* the API's case: TWO processes each adding at half the rate into the same store, a
  writer that finds the other's commit in progress waiting in SQLite's busy handler.

The ratio of their p99s is what two writers cost over one. (Session 22 tried turns at a
kernel lock instead: under load, p99 90-500 ms fell to 11-22 ms, but on the quiet machine
every group shrank to one record, an fsync each, and the API over HTTP answered slower:
p99 5.5-6.4 ms at 500 req/s against 3.5 with SQLite's waits. It was taken out.)

    python bench/decision_store.py [--rate 1000] [--seconds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path

from clearline.models import DecisionStore

RECORD = {"decision": "approve", "reasons": ["x" * 40] * 16, "score": 0.5}  # about 900 bytes as JSON


def _writer(path: str, name: str, rate: float, seconds: float, start, out) -> None:
    """One worker: `rate` records a second for `seconds`, open loop; its latencies and CPU."""
    store = DecisionStore(Path(path))
    latencies: list[float] = []

    async def one(i: int, due: float) -> None:
        await store.add_durably(f"{name}-{i}", "rs_001", f"{name}-{i}", "h", RECORD)
        latencies.append(time.perf_counter() - due)

    async def load() -> None:
        tasks, begin = [], time.perf_counter()
        for i in range(int(rate * seconds)):
            due = begin + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.ensure_future(one(i, due)))
        await asyncio.gather(*tasks)

    start.wait()
    cpu = time.process_time()
    asyncio.run(load())
    out.put((latencies, store.commits, time.process_time() - cpu))
    store.close()


def run(writers: int, rate: float, seconds: float, folder: Path) -> dict:
    """`writers` processes sharing `rate` records a second into one fresh store."""
    from _stats import pct  # here, not at the top: the spawned writers import this file and need no numpy

    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(writers), ctx.Queue()
    path = folder / f"decisions-{writers}.sqlite"
    procs = [
        ctx.Process(target=_writer, args=(str(path), f"w{i}", rate / writers, seconds, start, out))
        for i in range(writers)
    ]
    load_before = os.getloadavg()[0]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    lat = [x for r in results for x in r[0]]
    records = len(lat)
    return {
        "writers": writers,
        "records": records,
        **pct(lat, (50, 99), digits=2),
        "records_per_commit": round(records / sum(r[1] for r in results), 2),
        "cpu_ms_per_record": round(sum(r[2] for r in results) / records * 1000, 3),
        "load_1m": f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="records a second, all writers together")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clearline-store-bench-") as tmp:
        alone, shared = run(1, args.rate, args.seconds, Path(tmp)), run(2, args.rate, args.seconds, Path(tmp))
    result = {
        "rate": args.rate,
        "one_writer": alone,
        "two_writers": shared,
        "p99_two_over_one": round(shared["p99_ms"] / alone["p99_ms"], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for row in (alone, shared):
        print(
            f"{row['writers']} writer(s): {row['records']:,} records, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"max {row['max_ms']} ms, {row['records_per_commit']} a commit, {row['cpu_ms_per_record']} CPU ms each, "
            f"load {row['load_1m']}"
        )
    print(f"p99 two writers / one: {result['p99_two_over_one']}")


if __name__ == "__main__":
    main()
