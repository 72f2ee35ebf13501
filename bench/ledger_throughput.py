"""Benchmark: events per second through the ledger flow, from the real broker into the store.

Generates a world, produces it to a fresh topic, then in the same run:

* baseline: a raw confluent-kafka consumer reads the whole topic (all partitions, no
  processing) — the ceiling the broker and client give this machine;
* the flow: `clearline ledger run --once` over the same topic into a fresh store
  (admission, signature, contract, posting rules, DuckDB commit, archive, snapshots),
  timed from start to exit, with its peak RSS and CPU time.

Whether memory grows with the number of events: run at two sizes, and read the flow's
RSS per quarter of one run (flat quarters = memory bounded, whatever the size). With
`--processes 2` the flow runs in Bytewax cluster mode (`-i/-a`), one process and one
store shard per core, the partitions split between them; peak RSS is then the largest
process's.

A rate counts only work the ledger accounted for: after the run the store's own counts
for the topic must say every produced event was consumed and each consumed one was
posted, a duplicate or dead-lettered, and `clearline ledger verify` must find the hash
chain intact; otherwise the benchmark names the figures, prints no rate and exits 1.

    python bench/ledger_throughput.py --merchants 450 --days 120 [--processes 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearline import config
from clearline.pipelines import broker
from clearline.pipelines.connectors.produce import produce_world
from clearline.pipelines.world.generate import WorldOptions, generate


def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    seen, eof, start = 0, 0, time.perf_counter()
    while eof < 4:
        for msg in consumer.consume(10_000, timeout=1.0):
            if msg.error() is None:
                seen += 1
            elif msg.error().code() == msg.error()._PARTITION_EOF:
                eof += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    assert seen == expected, (seen, expected)
    return elapsed


@dataclass
class FlowRun:
    seconds: float
    cpu_seconds: float  # user + system of every flow process
    peak_rss_mib: float  # the largest flow process's own peak (VmHWM)
    rss_by_quarter: list[float]  # the highest RSS (MiB, all processes) in each quarter of the run


def run_flow(topic: str, dlq: str, state: Path, processes: int) -> FlowRun:
    """`clearline ledger run --once` as one process, or as a cluster of `processes`.

    Peak memory is each process's VmHWM, sampled until it exits: the children's
    ru_maxrss would count this process's own pages (the generated world), which a child
    shares between fork and exec."""
    cmd = [
        sys.executable,
        "-m",
        "clearline.pipelines.cli",
        "ledger",
        "run",
        "--once",
        "--topic",
        topic,
        "--deadletter-topic",
        dlq,
        "--state-dir",
        str(state),
        "--metrics-port",
        "0",
    ]
    cluster: list[str] = []
    if processes > 1:
        socks = [socket.socket() for _ in range(processes)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        cluster = [a for sock in socks for a in ("-a", f"127.0.0.1:{sock.getsockname()[1]}")]
        for sock in socks:
            sock.close()
    start = time.perf_counter()
    flows = [subprocess.Popen([*cmd, *(["-i", str(i), *cluster] if cluster else [])]) for i in range(processes)]
    peak, cpu, alive, samples = 0, 0.0, list(flows), []
    while alive:
        rss = 0
        for flow in list(alive):
            peak = max(peak, _status_kib(flow.pid, "VmHWM"))
            rss += _status_kib(flow.pid, "VmRSS")
            done, status, usage = os.wait4(flow.pid, os.WNOHANG)
            if done:  # reaped here, for its rusage: tell the Popen
                alive.remove(flow)
                flow.returncode = os.waitstatus_to_exitcode(status)
                cpu += usage.ru_utime + usage.ru_stime
        samples.append((time.perf_counter() - start, rss))
        time.sleep(0.1)
    codes = [f.returncode for f in flows]
    seconds = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a flow process failed: exit codes {codes}")
    quarters = [
        max((kib for t, kib in samples if q * seconds / 4 <= t < (q + 1) * seconds / 4), default=0) / 1024
        for q in range(4)
    ]
    return FlowRun(seconds, cpu, peak / 1024, quarters)


def accounted(state: Path, topic: str, produced: int) -> tuple[dict[str, int], list[str]]:
    """(the store's counts for `topic`, what does not add up): every produced event
    consumed, consumed = posted + duplicate + dead-lettered, `ledger verify` intact.

    Read from the shard stores themselves (the flow has exited and released them), the
    genesis partition of opening balances left out: no event of the topic carries it."""
    from clearline.ledger import access

    with access.stores_if_free(state) as stores:
        if stores is None:
            return {}, [f"the stores in {state} are still held by a flow process"]
        parts = [p for store in stores for p in store.stats()["partitions"] if p["topic"] == topic]
    counts = {k: sum(p[k] for p in parts) for k in ("consumed", "posted", "duplicate", "dead_lettered")}
    problems = []
    if counts["consumed"] != produced:
        problems.append(f"consumed {counts['consumed']} != produced {produced}")
    if counts["consumed"] != counts["posted"] + counts["duplicate"] + counts["dead_lettered"]:
        problems.append(
            f"consumed {counts['consumed']} != posted {counts['posted']} + duplicate {counts['duplicate']} "
            f"+ dead-lettered {counts['dead_lettered']}"
        )
    verify = subprocess.run(
        [sys.executable, "-m", "clearline.pipelines.cli", "ledger", "verify", "--state-dir", str(state), "--json"],
        capture_output=True,
        text=True,
    )
    try:
        verdict = json.loads(verify.stdout)
    except json.JSONDecodeError:
        verdict = {"ok": False, "first_bad_links": [" ".join(verify.stderr.split())[-500:] or "no output"]}
    if verify.returncode != 0 or verdict.get("ok") is not True:
        problems.append(f"ledger verify (exit {verify.returncode}): first bad links {verdict.get('first_bad_links')}")
    else:
        counts["postings_verified"] = verdict["postings"]
    return counts, problems


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--merchants", type=int, default=450)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--processes", type=int, default=1, help="flow processes (Bytewax cluster mode)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    broker.up()
    bootstrap = config.bootstrap_servers()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic, dlq = f"bench.ledger.{uuid.uuid4().hex[:8]}", f"bench.dlq.{uuid.uuid4().hex[:8]}"
    for name in (topic, dlq):
        admin.create_topics([NewTopic(name, 4, 1)])[name].result(30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            world = Path(tmp) / "world"
            manifest = generate(WorldOptions(args.days, args.merchants, args.seed), world)
            produced = produce_world(world, topic=topic)
            assert produced.failed == 0
            n = produced.delivered
            base_s = raw_consume(bootstrap, topic, n)
            load_before = os.getloadavg()[0]
            flow = run_flow(topic, dlq, Path(tmp) / "state", args.processes)
            flow_s = flow.seconds
            counts, problems = accounted(Path(tmp) / "state", topic, n)
    finally:
        for name in (topic, dlq):
            admin.delete_topics([name])[name].result(30)
    if problems:
        raise SystemExit(
            f"error: no rate: the ledger did not account for the {n} events produced to {topic}: " + "; ".join(problems)
        )
    result = {
        "events": n,
        "world_events": manifest["events"],
        **{f"ledger_{k}": v for k, v in counts.items()},
        "flow_seconds": round(flow_s, 2),
        "flow_events_per_second": round(n / flow_s),
        "raw_consume_seconds": round(base_s, 2),
        "raw_consume_events_per_second": round(n / base_s),
        "ratio_flow_to_raw": round((n / flow_s) / (n / base_s), 3),
        "flow_processes": args.processes,
        "flow_peak_rss_mib": round(flow.peak_rss_mib),
        "flow_rss_mib_by_quarter_of_run": [round(q) for q in flow.rss_by_quarter],
        "flow_cpu_seconds": round(flow.cpu_seconds, 1),
        # what one core would do if the flow had it to itself: other work shares this machine
        "flow_events_per_cpu_second": round(n / flow.cpu_seconds),
        "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>32}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
