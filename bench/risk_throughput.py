"""Benchmark: the risk flow's events per second against the raw consume rate, and feature
freshness (event produced → visible in Feast's online store) under a steady load.

In one run, with a real broker, a real MLflow registry and Feast SQLite store in a tmp
folder:

* a champion and challenger are trained (`clearline train`) on a small 300-day world;
* throughput: a world is produced to a fresh topic; baseline, a raw confluent-kafka
  consumer reads it all; then `clearline risk run --once` over the same topic (features,
  Feast pushes online and offline, decisions to a fresh decisions topic and the log) by
  one process and, with `--processes 2`, by a two-process cluster (-i/-a). Start-up
  (process start → first event handed on) is stated apart from the steady rate after it;
  the CPU seconds and events per CPU-second are printed beside the wall figures, with the
  1-minute load average before and after each run;
* freshness: `clearline risk run` (not --once) on another fresh topic while the world is
  produced at a steady `--rate` events/s; every `--marker-ms` (20 ms: 1,000 markers in
  20 s of load) a marker buyer places an order on terms and, two hours of event time
  later, another order — the event that makes the first order's features final (allowed
  lateness 1 h). The latency is from producing that second event to the marker buyer's
  row being readable from the online store (Feast's SQLite table, read directly, polled
  every 5 ms); p50/p95/p99/max and the number of markers are printed.

    python bench/risk_throughput.py --days 120 --merchants 60 --freshness-days 120 [--processes 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from google.protobuf.message import DecodeError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import pct  # noqa: E402
from ledger_throughput import raw_consume  # noqa: E402  (the same baseline as the ledger's)

from clearline import config  # noqa: E402
from clearline.features import (
    SqliteOnlineRead,  # noqa: E402
    store,  # noqa: E402
    view_name,  # noqa: E402
)
from clearline.pipelines import broker
from clearline.pipelines.connectors.produce import produce_world, world_messages  # noqa: E402
from clearline.pipelines.world.generate import WorldOptions, generate  # noqa: E402
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, sign  # noqa: E402

MARKER_MERCHANT = "m_bench_marker"  # markers' own merchant: its clock never touches the world's


def environment(tmp: Path, prefix: str, online_push_ms: int | None = None) -> dict[str, str]:
    """Configs with the Feast store under `tmp`, MLflow under `tmp`, topics under `prefix`
    (and the online push interval, when given, in place of configs/risk.yaml's)."""
    configs = tmp / "configs"
    shutil.copytree(config.config_dir(), configs)
    features = yaml.safe_load((configs / "features.yaml").read_text())
    features["feast"]["path"] = str(tmp / "feast")
    (configs / "features.yaml").write_text(yaml.safe_dump(features))
    if online_push_ms is not None:
        risk = yaml.safe_load((configs / "risk.yaml").read_text())
        risk["feast"]["online_push_ms"] = online_push_ms
        (configs / "risk.yaml").write_text(yaml.safe_dump(risk))
    return {
        **os.environ,
        "CLEARLINE_CONFIG_DIR": str(configs),
        "CLEARLINE_TOPIC_PREFIX": prefix,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def clearline(env: dict, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clearline.pipelines.cli", *args], env=env, check=True, **kw)


class Markers:
    """Marker buyers: an order on terms, then one two hours later that makes it final."""

    def __init__(self, bootstrap: str, topic: str, template: bytes, tenant: str):
        self.topic, self.tenant = topic, tenant
        self.template = json.loads(template)
        self.key = TenantKeys.from_config().key(tenant)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
        self.sent: dict[str, float] = {}  # buyer -> monotonic time the finalising event was produced
        self.at = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def _send(self, buyer: str, n: int, at: datetime) -> None:
        doc = json.loads(json.dumps(self.template))
        doc.update(
            event_id=f"evt_mark_{buyer}_{n}",
            occurred_at=at.isoformat().replace("+00:00", "Z"),
            merchant_id=MARKER_MERCHANT,
        )
        doc["payload"].update(order_id=f"ord_mark_{buyer}_{n}", buyer_id=buyer, payment_method="terms")
        body = json.dumps(doc).encode()
        self.producer.produce(
            self.topic,
            body,
            MARKER_MERCHANT.encode(),
            headers=[(TENANT_HEADER, self.tenant.encode()), (SIGNATURE_HEADER, sign(body, self.key).encode())],
        )
        self.producer.poll(0)

    def place(self) -> str:
        buyer = f"b_mark_{uuid.uuid4().hex[:10]}"
        self.at += timedelta(minutes=1)
        self._send(buyer, 1, self.at)
        self._send(buyer, 2, self.at + timedelta(hours=2))
        self.sent[buyer] = time.monotonic()
        return buyer


def wait_for_online(feast_dir: Path, flow: subprocess.Popen, within_s: float = 180) -> SqliteOnlineRead:
    """Feast's SQLite online table of the buyer view, read directly (`clearline.features.online_read`,
    held equal to `get_online_features` by its tests), once the flow has applied its views.
    Polling every 5 ms through Feast's Python layer would cost the poller about a core,
    taken from the flow it measures.

    The flow writes `feature_store.yaml` first and applies the views after (the first run
    of this benchmark opened the reader in between and crashed with
    `FeatureViewNotFoundException: buyer_features`), so the registry is asked, afresh each
    time, until it lists the view; a flow that exits or a deadline that passes first ends
    the run with a message saying which."""
    settings = store.FeastSettings("clearline", feast_dir)
    wanted = view_name("buyer")
    deadline = time.monotonic() + within_s
    listed: list[str] = []
    while time.monotonic() < deadline:
        if flow.poll() is not None:
            raise SystemExit(f"the risk flow exited ({flow.returncode}) before applying its Feast views in {feast_dir}")
        if settings.yaml_path.exists():
            try:
                listed = [v.name for v in store.open_store(settings).list_feature_views()]
            except DecodeError:  # Feast rewrites registry.db in place: read mid-write, it is cut short
                listed = []
            if wanted in listed:
                reader = SqliteOnlineRead.of(store.open_store(settings), {wanted: ("buyer_orders_30d",)})
                if reader is None:
                    raise SystemExit("the freshness run needs the SQLite online store")
                return reader
        time.sleep(0.1)
    state = f"views listed: {listed or 'none'}" if settings.yaml_path.exists() else "no feature_store.yaml yet"
    raise SystemExit(
        f"the risk flow had not applied the Feast view {wanted} in {feast_dir} within {within_s:.0f} s ({state})"
    )


def visible(online: SqliteOnlineRead, buyer: str) -> bool:
    return online.read({view_name("buyer"): buyer})[view_name("buyer")]["buyer_orders_30d"] is not None


def freshness(
    env: dict, bootstrap: str, topic: str, world: Path, rate: float, state: Path, feast_dir: Path, marker_s: float
) -> dict:
    """p50/p95/p99/max of produced → visible online, under `rate` events/s of world traffic,
    a marker every `marker_s` while the world is produced."""
    body, _, tenant = next(m for m in world_messages(world) if b'"payment_method":"terms"' in m[0])
    markers = Markers(bootstrap, topic, body, tenant)
    flow = subprocess.Popen(
        [sys.executable, "-m", "clearline.pipelines.cli", "risk", "run", "--topic", topic, "--state-dir", str(state)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    latencies: list[float] = []
    try:
        warm = markers.place()  # the flow is ready once the first marker is online
        online = wait_for_online(feast_dir, flow)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if visible(online, warm):
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the risk flow did not make the warm-up marker visible within 180 s")
        markers.sent.clear()
        produced: dict[str, float] = {}

        def produce() -> None:
            began = time.monotonic()
            report = produce_world(world=world, rate=rate, topic=topic)
            produced.update(events=report.delivered, seconds=time.monotonic() - began)

        load = threading.Thread(target=produce)
        load_before = os.getloadavg()[0]
        load.start()
        pending: dict[str, float] = {}  # in the order placed
        next_marker = time.monotonic()
        while load.is_alive() or pending:
            now = time.monotonic()
            while load.is_alive() and now >= next_marker:  # on schedule, whatever the polling costs
                buyer = markers.place()
                pending[buyer] = markers.sent[buyer]
                next_marker += marker_s
            # markers reach the store in the order placed (one reader, pushes in order), so
            # polling stops at the first not there yet: one read per marker, not per pending one
            for buyer in list(pending):
                if not visible(online, buyer):
                    if now - pending[buyer] > 60:
                        raise SystemExit(f"marker {buyer} not visible after 60 s")
                    break
                latencies.append(time.monotonic() - pending.pop(buyer))
            time.sleep(0.005)
        load.join()
    finally:
        flow.send_signal(signal.SIGTERM)
        flow.wait(120)
    return {
        "markers": len(latencies),
        "rate_events_per_second": rate,
        "marker_every_ms": round(marker_s * 1000),
        "load_seconds": round(produced["seconds"], 1),
        "produced_events_per_second": round(produced["events"] / produced["seconds"]),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        **pct(latencies, (50, 95, 99), digits=1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--merchants", type=int, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=5000, help="events/s of load during the freshness run")
    ap.add_argument("--freshness-days", type=int, default=20, help="length of the world produced during freshness")
    ap.add_argument("--marker-ms", type=float, default=20, help="a freshness marker every this many ms (1,000+ wanted)")
    ap.add_argument("--online-push-ms", type=int, default=None, help="in place of configs/risk.yaml's (freshness)")
    ap.add_argument("--freshness-only", action="store_true", help="skip the throughput run")
    ap.add_argument(
        "--processes", type=int, default=1, choices=(1, 2), help="2: also run the flow as a 2-process cluster"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    broker.up()
    bootstrap = config.bootstrap_servers()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    prefix = f"bench.risk.{uuid.uuid4().hex[:8]}."
    topics = [prefix + n for n in ("events", "events-fresh", "payments.decisions")]
    for name in topics:
        admin.create_topics([NewTopic(name, 4, 1)])[name].result(30)
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            env = environment(tmp, prefix, args.online_push_ms)
            generate(WorldOptions(300, 4, 7, 0.0), tmp / "model-world")
            clearline(env, "train", "--world", str(tmp / "model-world"), "--json", stdout=subprocess.DEVNULL)
            result = {} if args.freshness_only else throughput(env, bootstrap, topics[0], tmp, args)
            shutil.rmtree(tmp / "feast", ignore_errors=True)
            fresh_world = tmp / "fresh-world"
            generate(WorldOptions(args.freshness_days, args.merchants, args.seed + 1), fresh_world)
            fresh = freshness(
                env,
                bootstrap,
                topics[1],
                fresh_world,
                args.rate,
                tmp / "state-fresh",
                tmp / "feast",
                args.marker_ms / 1000,
            )
    finally:
        for name in topics:
            admin.delete_topics([name])[name].result(30)
    result["freshness"] = {
        **fresh,
        "online_push_ms": args.online_push_ms or config.load("risk")["feast"]["online_push_ms"],
    }
    result["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    )
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>32}: {v}" for k, v in result.items()))


def run_flow(env: dict, topic: str, state: Path, processes: int) -> dict:
    """`clearline risk run --once` over `topic` by `processes` processes (a cluster: -i/-a,
    one state folder, process 1 started once process 0 has made the recovery folder);
    each process's summary and CPU (user + system, with its Feast writer children) and
    peak RSS, and the wall time from start to the last exit."""
    ports = [str(free_port()) for _ in range(processes)]
    addresses = [a for p in ports for a in ("-a", f"127.0.0.1:{p}")] if processes > 1 else []
    start = time.monotonic()
    procs = []
    for i in range(processes):
        cluster = ["-i", str(i), *addresses] if processes > 1 else []
        cmd = ["risk", "run", "--once", "--json", "--topic", topic, "--state-dir", str(state), *cluster]
        procs.append(
            subprocess.Popen([sys.executable, "-m", "clearline.pipelines.cli", *cmd], env=env, stdout=subprocess.PIPE)
        )
        while i == 0 and processes > 1 and not (state / "recovery").exists():
            time.sleep(0.05)
    runs = []
    for proc in procs:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"risk run exited {proc.returncode}")
        runs.append(
            {
                "summary": summary_of(out),
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": round(usage.ru_maxrss / 1024),
            }
        )
    return {"wall_seconds": time.monotonic() - start, "processes": runs}


def summary_of(out: bytes) -> dict:
    """A `risk run --json` summary; in a cluster Bytewax writes its connection retries to
    stdout before it ("worker 1: error connecting to worker 0 … retrying")."""
    return json.loads(out[out.index(b"{") :])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def flow_figures(n: int, base_s: float, run: dict) -> dict:
    """What a run of `n` events says: start-up apart (process start -> first event handed
    on, by the process holding the reader), the steady rate after it, CPU per event."""
    summaries = [p["summary"] for p in run["processes"]]
    reader = max(summaries, key=lambda s: s["consumed"])  # the merged source is one partition: one reader
    steady = max(s["steady_seconds"] for s in summaries if s["startup_seconds"] is not None)
    cpu = sum(p["cpu_seconds"] for p in run["processes"])
    return {
        "processes": len(summaries),
        "requests": sum(s["requests"] for s in summaries),
        "decisions": sum(s["decisions"] for s in summaries),
        "late_events": sum(s["late_events"] for s in summaries),
        "startup_seconds": reader["startup_seconds"],
        "steady_seconds": round(steady, 2),
        "steady_events_per_second": round(n / steady),
        "ratio_steady_to_raw": round((n / steady) / (n / base_s), 3),
        "steady_cpu_seconds_reader": reader["steady_cpu_seconds"],
        "events_per_cpu_second_reader": round(n / reader["steady_cpu_seconds"]),
        "flow_wall_seconds": round(run["wall_seconds"], 2),
        "flow_events_per_second_from_start": round(n / run["wall_seconds"]),
        "cpu_seconds_all_processes": round(cpu, 2),
        "peak_rss_mib_per_process": [p["peak_rss_mib"] for p in run["processes"]],
        "consumed_per_process": [s["consumed"] for s in summaries],
        "decisions_per_process": [s["decisions"] for s in summaries],
    }


def throughput(env: dict, bootstrap: str, topic: str, tmp: Path, args) -> dict:
    """Raw consume of a produced world, then `clearline risk run --once` over it, by one
    process and (`--processes 2`) by a two-process cluster, each into a fresh state folder."""
    world = tmp / "world"
    manifest = generate(WorldOptions(args.days, args.merchants, args.seed), world)
    produced = produce_world(world, topic=topic)
    assert produced.failed == 0
    n = produced.delivered
    base_s = raw_consume(bootstrap, topic, n)
    out = {
        "events": n,
        "world_events": manifest["events"],
        "raw_consume_seconds": round(base_s, 2),
        "raw_consume_events_per_second": round(n / base_s),
    }
    for processes in range(1, args.processes + 1):
        load = os.getloadavg()[0]
        run = run_flow(env, topic, tmp / f"state-{processes}", processes)
        out[f"{processes}_process"] = {
            "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
            **flow_figures(n, base_s, run),
        }
    if args.processes > 1:
        one, two = out["1_process"], out[f"{args.processes}_process"]
        out["scaling_steady"] = round(two["steady_events_per_second"] / one["steady_events_per_second"], 2)
    return out


if __name__ == "__main__":
    main()
