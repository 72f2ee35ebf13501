"""Benchmark: how fast `clearline generate` writes a world, in events per minute.

Baseline, in the same run: the per-event path a non-vectorised generator would need just
to serialise the same events — building each typed `Event` and calling `events.encode` —
timed over every event of the generated world. The vectorised generator does all of its
simulation, settlement, files and serialisation in less time than that loop alone (issue 13
aims at 1.7x less, and at least 10 M events a minute).

    python bench/generate_throughput.py --days 120 --merchants 300 [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from clearline import events
from clearline.pipelines.world.generate import WorldOptions, generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--merchants", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side; the fastest counts")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    gen_runs, base_runs, gen_cpu, base_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "world"
        for _ in range(args.repeat):
            shutil.rmtree(out, ignore_errors=True)
            t0, c0 = time.perf_counter(), time.process_time()
            manifest = generate(WorldOptions(args.days, args.merchants, args.seed), out)
            gen_runs.append(time.perf_counter() - t0)
            gen_cpu.append(time.process_time() - c0)  # every thread of the process
        lines = (out / "events/events.jsonl").read_bytes().splitlines()
        typed = [events.decode(line) for line in lines]
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            encoded = [events.encode(e) for e in typed]
            base_runs.append(time.perf_counter() - t0)
            base_cpu.append(time.process_time() - c0)
            assert encoded == lines, "baseline must produce the same bytes"
    gen_s, base_s = min(gen_runs), min(base_runs)
    n = manifest["events"]
    result = {
        "events": n,
        "runs_each": args.repeat,
        "files": len(manifest["files"]),
        "generate_seconds": round(gen_s, 2),
        "events_per_minute": round(n / gen_s * 60),
        "generate_cpu_seconds": round(min(gen_cpu), 2),
        "baseline_encode_seconds": round(base_s, 2),
        "baseline_cpu_seconds": round(min(base_cpu), 2),
        "baseline_events_per_minute": round(n / base_s * 60),
        "ratio_vs_baseline": round(base_s / gen_s, 2),
        "cpu_ratio_vs_baseline": round(min(base_cpu) / min(gen_cpu), 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        # other work on the machine slows both sides; the ratio is the fairer figure then
        "load_average_1min": f"{load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v:,}" if isinstance(v, (int, float)) else f"{k:>28}: {v}")


if __name__ == "__main__":
    main()
