"""Benchmark: the risk flow's events per second against the raw consume rate, and feature
freshness (event produced → visible in Feast's online store) under a steady load.

In one run, with a real broker, a real MLflow registry and Feast SQLite store in a tmp
folder:

* a champion and challenger are trained (`clearline train`) on a small 300-day world;
* throughput: a world is produced to a fresh topic; baseline, a raw confluent-kafka
  consumer reads it all; then `clearline risk run --once` over the same topic (features,
  Feast pushes online and offline, decisions to a fresh decisions topic and the log),
  timed from start to exit; the ratio is printed;
* freshness: `clearline risk run` (not --once) on another fresh topic while the world is
  produced at `--rate` events/s; every 100 ms a marker buyer places an order on terms and,
  two hours of event time later, another order — the event that makes the first order's
  features final (allowed lateness 1 h). The latency is from producing that second event
  to the marker buyer's row being readable from the online store (Feast's SQLite table,
  read directly, polled every 5 ms).

    python bench/risk_throughput.py --days 120 --merchants 120 [--rate 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from google.protobuf.message import DecodeError

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def environment(tmp: Path, prefix: str) -> dict[str, str]:
    """Configs with the Feast store under `tmp`, MLflow under `tmp`, topics under `prefix`."""
    configs = tmp / "configs"
    shutil.copytree(config.config_dir(), configs)
    features = yaml.safe_load((configs / "features.yaml").read_text())
    features["feast"]["path"] = str(tmp / "feast")
    (configs / "features.yaml").write_text(yaml.safe_dump(features))
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


def freshness(env: dict, bootstrap: str, topic: str, world: Path, rate: float, state: Path, feast_dir: Path) -> dict:
    """p50/p99 of produced → visible online, under `rate` events/s of world traffic."""
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
        load = threading.Thread(target=produce_world, kwargs={"world": world, "rate": rate, "topic": topic})
        load.start()
        pending: dict[str, float] = {}
        next_marker = time.monotonic()
        while load.is_alive() or pending:
            now = time.monotonic()
            if load.is_alive() and now >= next_marker:
                buyer = markers.place()
                pending[buyer] = markers.sent[buyer]
                next_marker = now + 0.1
            for buyer in list(pending):
                if visible(online, buyer):
                    latencies.append(time.monotonic() - pending.pop(buyer))
                elif now - pending[buyer] > 60:
                    raise SystemExit(f"marker {buyer} not visible after 60 s")
            time.sleep(0.005)
        load.join()
    finally:
        flow.send_signal(signal.SIGTERM)
        flow.wait(120)
    ms = np.array(latencies) * 1000
    return {
        "markers": len(ms),
        "rate_events_per_second": rate,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--merchants", type=int, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=5000, help="events/s of load during the freshness run")
    ap.add_argument("--freshness-days", type=int, default=20, help="length of the world produced during freshness")
    ap.add_argument("--freshness-only", action="store_true", help="skip the throughput run")
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
            env = environment(tmp, prefix)
            generate(WorldOptions(300, 4, 7, 0.0), tmp / "model-world")
            clearline(env, "train", "--world", str(tmp / "model-world"), "--json", stdout=subprocess.DEVNULL)
            result = {} if args.freshness_only else throughput(env, bootstrap, topics[0], tmp, args)
            shutil.rmtree(tmp / "feast", ignore_errors=True)
            fresh_world = tmp / "fresh-world"
            generate(WorldOptions(args.freshness_days, args.merchants, args.seed + 1), fresh_world)
            fresh = freshness(env, bootstrap, topics[1], fresh_world, args.rate, tmp / "state-fresh", tmp / "feast")
    finally:
        for name in topics:
            admin.delete_topics([name])[name].result(30)
    result["freshness"] = fresh
    result["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    )
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>32}: {v}" for k, v in result.items()))


def throughput(env: dict, bootstrap: str, topic: str, tmp: Path, args) -> dict:
    """Raw consume of a produced world, then `clearline risk run --once` over it."""
    world = tmp / "world"
    manifest = generate(WorldOptions(args.days, args.merchants, args.seed), world)
    produced = produce_world(world, topic=topic)
    assert produced.failed == 0
    n = produced.delivered
    base_s = raw_consume(bootstrap, topic, n)
    start = time.perf_counter()
    got = clearline(
        env,
        "risk",
        "run",
        "--once",
        "--json",
        "--topic",
        topic,
        "--state-dir",
        str(tmp / "state"),
        stdout=subprocess.PIPE,
    )
    flow_s = time.perf_counter() - start
    summary = json.loads(got.stdout)
    return {
        "events": n,
        "world_events": manifest["events"],
        "requests": summary["requests"],
        "decisions": summary["decisions"],
        "late_events": summary["late_events"],
        "flow_seconds": round(flow_s, 2),
        "flow_events_per_second": round(n / flow_s),
        "dataflow_seconds": summary["flow_seconds"],
        "dataflow_events_per_second": round(n / summary["flow_seconds"]),
        "ratio_dataflow_to_raw": round((n / summary["flow_seconds"]) / (n / base_s), 3),
        "raw_consume_seconds": round(base_s, 2),
        "raw_consume_events_per_second": round(n / base_s),
        "ratio_flow_to_raw": round((n / flow_s) / (n / base_s), 3),
    }


if __name__ == "__main__":
    main()
