"""Benchmark: decision API latency under open-loop load, beside the bare Feast lookup plus
model predict it is built on.

Sets up, in a tmp folder, a generated world, both models trained on it and registered in
a SQLite MLflow (gbm champion, scorecard challenger), and every buyer's and merchant's
latest features in a Feast SQLite online store. Then, in the same run:

* baseline (in this process): Feast's own `get_online_features` for the buyer and the
  merchant of a request (one call, both views) plus the champion pipeline's
  `predict_proba` on a one-row pandas DataFrame — the plain way to serve a model;
* the API's work without HTTP: `DecisionService.decide` (the buyer's and merchant's rows
  read straight from Feast's SQLite tables, the policy, champion score with reason codes
  — one `TreeTable` pass over d+1 rows —, the challenger's shadow score from its
  coefficients, the SQLite insert);
* the API: a real `clearline serve --workers N` on loopback, loaded by a separate
  client process at a fixed arrival rate — open loop: request i is due at i/rate and
  its latency is counted from when it was due, so a server falling behind shows up as
  queueing, not as a slower client. Every request is a new order (a new decision,
  stored); every status is counted and every 20th body checked (`_load`).

The client is a lean generator (uvloop, requests encoded before the run, a fixed pool of
keep-alive HTTP/1.1 connections, a minimal response reader) rather than aiohttp, whose
client took about twice the CPU per request (0.38 against 0.21 ms at 500 req/s, process
start-up included) on the same two cores the server runs on.

    python bench/decision_api.py [--rates 500,1000] [--duration 20] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded from its file (the tests)
from _stats import pct  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def prepare(root: Path) -> dict:
    """World, models in MLflow (gbm champion, scorecard challenger), every entity's
    latest features online; what the load needs to ask. tests/models/test_api.py sets up the
    same way (it imports this)."""
    import polars as pl

    from clearline import config
    from clearline.features import MODEL_FEATURES, feature_history, order_features, read_events
    from clearline.features import store as fstore
    from clearline.models import Registry, RegistrySettings, fit_all, labels, training_set
    from clearline.pipelines.world.generate import WorldOptions, generate

    generate(WorldOptions(days=240, merchants=6, seed=11, discrepancy_rate=0.0), root / "world")
    facts = read_events(root / "world")
    rows = order_features(facts)
    ts = training_set.build(
        rows,
        labels.outcomes(facts, 65),
        tuple(MODEL_FEATURES),
        facts["occurred_at"].max(),
        {"evaluation_share": 0.3, "min_orders": 50, "min_defaults": 5},
    )
    cfg = config.load("models")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry = Registry(RegistrySettings(uri, (root / "artifacts").as_uri(), "clearline-underwriting"))
    logged = {m.key: registry.log(m, ts, {"source": "bench"}) for m in fit_all(ts, cfg["models"], None, 1)}
    registry.promote(logged["gbm"].name, logged["gbm"].version, "champion")
    registry.promote(logged["scorecard"].name, logged["scorecard"].version, "challenger")
    feast = fstore.FeastSettings("clearline", root / "feast")
    fstore.apply(feast)
    fs = fstore.open_store(feast)
    for entity in ("buyer", "merchant"):
        fstore.push(fs, fstore.latest_rows(feature_history(rows, entity), entity), entity, offline=False)
    merchants = root / "world" / "entities" / "merchants.parquet"
    owners = dict(pl.read_parquet(merchants).select("merchant_id", "reseller_id").iter_rows())
    asks = [
        {
            "buyer_id": r["buyer_id"],
            "merchant_id": r["merchant_id"],
            "tenant": owners[r["merchant_id"]],
            "amount": {"minor": r["amount_minor"], "currency": r["currency"]},
            "terms_days": r["terms_days"],
        }
        for r in rows.iter_rows(named=True)
    ]
    return {
        "asks": asks,
        "feast_dir": str(feast.data_dir),
        "merchants": str(merchants),
        "uri": uri,
        "rows": rows,
        "owners": owners,
        "fs": fs,
        "champion": registry.load("champion"),
    }


def baselines(prep: dict, root: Path, n: int, inflight: int = 8) -> dict:
    """In-process, each over the same `n` requests: bare Feast + predict_proba; the API's
    decision without HTTP and without the store (`DecisionService.made`: features,
    policy, champion with reason codes, shadow challenger, the record); and the same with
    the durable record (`decide_durably`, `inflight` requests at a time sharing group
    commits, as the server's concurrent requests do). Latency per call, and CPU seconds
    (time.process_time: every thread of this process, the store's writer too) per decision."""
    import asyncio

    import pandas as pd

    from clearline.features import store as fstore
    from clearline.models import DecisionRequest
    from clearline.pipelines.cli.serve import build_service

    service = build_service(
        {"feast_dir": prep["feast_dir"], "merchants": prep["merchants"], "decisions": str(root / "inprocess.db")}
    )
    fs = fstore.open_store(fstore.FeastSettings("clearline", Path(prep["feast_dir"])))
    champion, plain = service.champion, prep["champion"].pipeline  # plain: as MLflow loaded it (DataFrame input)
    refs = service.features.refs
    rng = random.Random(1)
    asks = [rng.choice(prep["asks"]) for _ in range(n)]

    def body(ask: dict, order_id: str) -> DecisionRequest:
        return DecisionRequest.model_validate({**{k: v for k, v in ask.items() if k != "tenant"}, "order_id": order_id})

    def bare_one(ask: dict) -> None:
        got = fs.get_online_features(
            features=refs,
            entity_rows=[{"buyer_id": ask["buyer_id"], "merchant_id": ask["merchant_id"]}],
            full_feature_names=True,
        ).to_dict()
        row = {
            f: got.get(f"buyer_features__{f}", got.get(f"merchant_features__{f}", [None]))[0] for f in champion.features
        }
        row.update(amount_minor=ask["amount"]["minor"], terms_days=ask["terms_days"])
        champion_df = pd.DataFrame(
            [[np.nan if row[f] is None else row[f] for f in champion.features]], columns=list(champion.features)
        )
        plain.predict_proba(champion_df)

    def timed(calls: list[Callable[[], object]]) -> dict:
        lat = []
        cpu = time.process_time()
        for call in calls:
            t = time.perf_counter()
            call()
            lat.append(time.perf_counter() - t)
        cpu = time.process_time() - cpu
        return {**pct(lat[len(lat) // 10 :]), "cpu_ms_per_decision": round(cpu / len(calls) * 1000, 3)}

    out = {"bare_feast_plus_predict_proba": timed([lambda a=a: bare_one(a) for a in asks])}
    made = [body(a, f"made-{i}") for i, a in enumerate(asks)]
    out["api_decision_without_store"] = timed(
        [lambda a=a, b=b: service.made(a["tenant"], b) for a, b in zip(asks, made)]
    )

    async def durable() -> dict:
        bodies = [body(a, f"in-{i}") for i, a in enumerate(asks)]
        lat: list[float] = []

        async def one(i: int) -> None:
            t = time.perf_counter()
            await service.decide_durably(asks[i]["tenant"], bodies[i])
            lat.append(time.perf_counter() - t)

        commits, cpu = service.store.commits, time.process_time()
        for first in range(0, n, inflight):
            await asyncio.gather(*(one(i) for i in range(first, min(n, first + inflight))))
        cpu = time.process_time() - cpu
        return {
            **pct(lat[len(lat) // 10 :]),
            "cpu_ms_per_decision": round(cpu / n * 1000, 3),
            "inflight": inflight,
            "records_per_commit": round(n / max(1, service.store.commits - commits), 1),
        }

    out["api_decide_durably_in_process"] = asyncio.run(durable())
    service.store.close()
    return out


# --------------------------------------------------------------------------- load


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight: writes a
    pre-encoded request, reads the status line, the headers and a Content-Length body
    (the server answers every request with one), then reports the response."""

    def __init__(self, done: Callable):
        self.done, self.buf, self.transport, self.job, self.closed = done, b"", None, None, False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, request: bytes, job: int) -> None:
        self.job, self.buf = job, b""
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        length = 0
        for line in self.buf[:head_end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buf) < head_end + 4 + length:
            return
        job, self.job = self.job, None
        self.done(self, job, int(self.buf[9:12]), self.buf[head_end + 4 : head_end + 4 + length])

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.job is not None:
            job, self.job = self.job, None
            self.done(self, job, 0, b"")


def _requests(port: int, asks: list[dict], n: int, tag: str) -> list[tuple[bytes, str]]:
    """Every request of the run encoded before it starts (each a new order), and its order id."""
    out = []
    for i in range(n):
        ask = asks[i % len(asks)]
        body = json.dumps({**{k: v for k, v in ask.items() if k != "tenant"}, "order_id": f"{tag}-{i}"}).encode()
        out.append(
            (
                b"POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                b"X-API-Key: dev-api-key-%s\r\nContent-Length: %d\r\n\r\n%s"
                % (port, ask["tenant"].encode(), len(body), body),
                f"{tag}-{i}",
            )
        )
    return out


async def _balanced_pool(loop, port: int, connections: int, workers: int) -> tuple[list[_Conn], dict[int, int]]:
    """`connections` keep-alive connections, the same number to each server worker.

    Why: uvicorn's workers share one listening socket and whichever accepts first gets
    the connection; measured here, 43 of 64 went to one of two workers (64 of 64 while
    the second was still starting). With keep-alive the split is fixed for the run, so
    one worker would carry two thirds of the load. A deployment puts a balancer in front
    (or a socket per worker); this does what it would: it asks each new connection's
    worker (`/health` names its pid) and keeps a connection only while that worker has
    fewer than its share. Returns the pool and connections per worker pid."""
    share = -(-connections // workers)
    pool: list[_Conn] = []
    spread: dict[int, int] = {}
    for _ in range(connections * 20):
        if len(pool) == connections:
            break
        answered = loop.create_future()
        conn = (
            await loop.create_connection(
                lambda answered=answered: _Conn(lambda c, j, st, body: answered.set_result(body)), "127.0.0.1", port
            )
        )[1]
        conn.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port, 0)
        pid = json.loads(await asyncio.wait_for(answered, 30))["worker"]
        if spread.get(pid, 0) < share:
            spread[pid] = spread.get(pid, 0) + 1
            pool.append(conn)
        else:
            conn.transport.close()
    return pool, spread


async def _load(
    port: int,
    asks: list[dict],
    rate: float,
    duration: float,
    tag: str,
    workers: int = 1,
    connections: int = 64,
    timeout: float = 30.0,
    check_every: int = 20,
) -> dict:
    """Open loop at `rate` for `duration`: request i is due at start + i/rate and its
    latency counts from then, whether it waited for the server or for a free connection
    (no coordinated omission). Each request goes out on an idle keep-alive connection of
    a fixed pool, the longest idle first (so every connection, and the server worker
    behind it, shares the load); with none idle it waits in order for the next one that
    is (a new connection per request would only add work to a server that is behind;
    `connections` is far above what the server runs at once). Every status is counted (a lost
    connection too); every `check_every`-th body is parsed and checked to be this order's
    decision. A request unanswered `timeout` s after the last was sent is counted as a
    timeout, its latency as the time it had waited by then."""
    from collections import deque

    loop = asyncio.get_running_loop()
    requests = _requests(port, asks, int(rate * duration), tag)
    n = len(requests)
    due: list[float] = []
    lat: list[float | None] = [None] * n
    errors: dict[str, int] = {}
    answered, checked = [0], [0]
    idle: deque[_Conn] = deque()
    waiting: deque[int] = deque()  # due, no idle connection yet
    finished = loop.create_future()

    def count(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    def done(conn: _Conn, i: int, status: int, body: bytes) -> None:
        lat[i] = time.perf_counter() - due[i]
        answered[0] += 1
        if status == 0:
            count("connection lost")
        elif status != 200:
            count(str(status))
        elif i % check_every == 0:
            record = json.loads(body)
            if (
                record.get("order_id") != requests[i][1]
                or record.get("decision") not in ("approve", "review", "decline")
                or not str(record.get("decision_id", "")).startswith("dec_")
            ):
                count("wrong body")
            checked[0] += 1
        if not conn.closed:
            if waiting:
                conn.send(requests[waiting[0]][0], waiting.popleft())
            else:
                idle.append(conn)
        if answered[0] == n and not finished.done():
            finished.set_result(None)

    pool, spread = await _balanced_pool(loop, port, connections, workers)
    cpu = time.process_time()
    for conn in pool:
        conn.done = done
    idle.extend(pool)
    start = time.perf_counter() + 0.2
    due.extend(start + i / rate for i in range(n))
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and due[i] <= now:  # every request due by now goes out
            while idle and idle[0].closed:
                idle.popleft()
            if idle:
                idle.popleft().send(requests[i][0], i)
            else:
                waiting.append(i)
            i += 1
        if i < n:
            await asyncio.sleep(due[i] - time.perf_counter())
    issued_s = time.perf_counter() - start  # every request sent or queued, on schedule
    try:
        await asyncio.wait_for(asyncio.shield(finished), timeout)
    except asyncio.TimeoutError:
        errors["timeout"] = n - answered[0]
    total_s = time.perf_counter() - start
    cpu = time.process_time() - cpu
    for conn in pool:
        conn.transport.close()
    waited = [x if x is not None else time.perf_counter() - d for x, d in zip(lat, due)]
    return {
        "target_rps": rate,
        "requests": n,
        "answered": answered[0],
        "issued_rps": round(n / issued_s, 1),
        "completed_rps": round(answered[0] / total_s, 1),
        "client_cpu_ms_per_request": round(cpu / max(1, answered[0]) * 1000, 3),
        "errors": errors,
        "bodies_checked": checked[0],
        "connections_per_worker": sorted(spread.values(), reverse=True),
        **pct(waited),
    }


def load_main() -> None:
    """The client process: `decision_api.py --client PORT RATE DURATION TAG ASKS.json WORKERS`."""
    port, rate, duration, tag, asks, workers = sys.argv[2:8]
    import uvloop

    print(
        json.dumps(
            uvloop.run(
                _load(int(port), json.loads(Path(asks).read_text()), float(rate), float(duration), tag, int(workers))
            )
        )
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(prep: dict, root: Path, workers: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clearline.pipelines.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--feast-dir",
            prep["feast_dir"],
            "--merchants",
            prep["merchants"],
            "--decisions",
            str(root / "decisions.db"),
            "--json",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    import urllib.request

    deadline = time.monotonic() + 400  # each worker loads the models and Feast: minutes on a loaded machine
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"serve failed: {proc.stderr.read().decode()}") from None
            time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # the supervisor stops its workers
    proc.wait(60)
    raise SystemExit("serve did not start within 400 s")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its living descendants: the
    server's supervisor and its worker processes."""
    tick, total, todo = os.sysconf("SC_CLK_TCK"), 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


P99_LIMIT_MS = 10.0  # capacity: the highest rate held with p99 at or under this and no error


def sweep(client: list[str], asks_file: Path, rates: list[float], args, server_pid: int) -> list[dict]:
    """Each rate in turn for long enough to give `--min-requests` samples (and at least
    `--duration` s); the server's CPU per answered decision from /proc. Stops after a
    rate the server could not keep up with (answered under 90 % of the rate): higher
    ones only queue longer."""
    runs = []
    for rate in rates:
        duration = max(args.duration, args.min_requests / rate)
        cpu = _tree_cpu_s(server_pid)
        res = subprocess.run(
            client + [str(rate), str(duration), f"r{int(rate)}", str(asks_file), str(args.workers)],
            check=True,
            capture_output=True,
            text=True,
        )
        run = json.loads(res.stdout)
        run["duration_s"] = round(duration, 1)
        run["server_cpu_ms_per_decision"] = round((_tree_cpu_s(server_pid) - cpu) / max(1, run["answered"]) * 1000, 3)
        run["held"] = not run["errors"] and run["p99_ms"] <= P99_LIMIT_MS
        run["load_avg_after"] = round(os.getloadavg()[0], 2)
        runs.append(run)
        print(_row(run), file=sys.stderr, flush=True)
        if run["completed_rps"] < 0.9 * rate:
            break
    return runs


def _row(r: dict) -> str:
    return (
        f"| {r['target_rps']:,.0f} | {r['requests']:,} | {r['answered']:,} | {sum(r['errors'].values()):,} "
        f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['completed_rps']:,.0f} "
        f"| {r['server_cpu_ms_per_decision']:.3f} | {r['client_cpu_ms_per_request']:.3f} "
        f"| {'yes' if r['held'] else 'no'} | {r['load_avg_after']} |"
    )


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="500,1000,1500,2000,3000,4000")
    ap.add_argument("--duration", type=float, default=5.0, help="at least this many seconds per rate")
    ap.add_argument("--min-requests", type=int, default=5000, help="and at least this many requests per rate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline-n", type=int, default=3000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    prep = prepare(root)
    os.environ["MLFLOW_TRACKING_URI"] = prep["uri"]  # for the in-process baseline and the server
    base = baselines(prep, root, args.baseline_n)
    asks_file = root / "asks.json"
    asks_file.write_text(json.dumps(prep["asks"]))
    proc, port = serve(prep, root, args.workers)
    try:
        client = [sys.executable, __file__, "--client", str(port)]
        subprocess.run(
            client + ["200", "3", "warmup", str(asks_file), str(args.workers)], check=True, capture_output=True
        )
        runs = sweep(client, asks_file, [float(r) for r in args.rates.split(",")], args, proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    bare = base["bare_feast_plus_predict_proba"]
    held = [r["target_rps"] for r in runs if r["held"]]
    report = {
        "started": started,
        "commit": _git_commit(),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": load_at_start,
            "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
            "peak_rss_mib_bench_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
        "workers": args.workers,
        "baseline": base,
        "api": runs,
        "capacity_rps": max(held, default=0.0),
        "ratio_api_p99_to_bare_p99": {str(r["target_rps"]): round(r["p99_ms"] / bare["p99_ms"], 2) for r in runs},
        "ratio_cpu_per_decision_to_bare": {
            "without_store": round(
                base["api_decision_without_store"]["cpu_ms_per_decision"] / bare["cpu_ms_per_decision"], 2
            ),
            "durable_in_process": round(
                base["api_decide_durably_in_process"]["cpu_ms_per_decision"] / bare["cpu_ms_per_decision"], 2
            ),
            **{
                f"http_{r['target_rps']:.0f}": round(r["server_cpu_ms_per_decision"] / bare["cpu_ms_per_decision"], 2)
                for r in runs
            },
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"started {started}, commit {report['commit']}, {args.workers} workers")
    print("| in process | p50 ms | p99 ms | max ms | CPU ms per decision |\n|---|---|---|---|---|")
    for name, st in base.items():
        print(
            f"| {name} | {st['p50_ms']:.3f} | {st['p99_ms']:.3f} | {st['max_ms']:.3f} "
            f"| {st['cpu_ms_per_decision']:.3f} |"
        )
    print(
        "\n| rate req/s | sent | answered | errors | p50 ms | p99 ms | max ms | achieved /s "
        "| server CPU ms per decision | client CPU ms per request | p99 <= 10 ms, 0 errors | load after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(_row(r))
    print(f"\ncapacity (highest rate held): {report['capacity_rps']:,.0f} req/s")
    print(f"API p99 / bare p99 by rate: {report['ratio_api_p99_to_bare_p99']}")
    print(f"CPU per decision / bare: {report['ratio_cpu_per_decision_to_bare']}")
    print(f"load average at the start {load_at_start}, at the end {report['machine']['load_avg_at_end']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        load_main()
    else:
        main()
