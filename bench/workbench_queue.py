"""Benchmark: the workbench's queue page at 100,000 open variances, beside a bare DuckDB
query over the same Parquet file.

Writes a published variances snapshot of `--variances` rows (the recon flow's columns:
categories, processors, currencies, 300 merchants of three resellers, ages 0-30 days,
statuses mostly open) and an event-archive-shaped file naming each merchant's reseller,
then times, each `--repeat` times (median reported):

1. the query builder alone (`clearline.pipelines.workbench.queue.run`: the page's rows and
   the per-currency counts and amounts, two queries) for four views of the queue: the
   first page sorted by age, a deep page (page 1000), a reseller's filtered view (category,
   currency, sorted by amount), and a sort on the SLA tier;
2. the whole page over HTTP: the real app under uvicorn on 127.0.0.1, logged in, GET /queue
   with the same filters (templates, session, the owners lookup and all);
3. the baseline: a bare DuckDB query over the same file that any queue page needs at least
   (WHERE status <> 'resolved' ORDER BY age_days DESC LIMIT 50, plus count(*) and the sum
   per currency), with no SLA tier, no tenant and no page.

    .venv/bin/python bench/workbench_queue.py [--variances 100000] [--repeat 7] [--json]

The machine is shared: the load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import requests
import uvicorn

from clearline import config
from clearline.pipelines.workbench import queue
from clearline.pipelines.workbench.app import create_app
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.workbench.sources import Sources
from clearline.pipelines.workbench.state import WorkbenchState
from clearline.recon import PUBLISHED_VARIANCE_SCHEMA, PUBLISHED_VARIANCES, ReportRules

MERCHANTS = {f"m_{i:05d}": f"rs_00{1 + i % 3}" for i in range(300)}
VIEWS = {
    "first page by age": ({"sort": "age"}, None),
    "page 1000": ({"page": "1000", "page_size": "50"}, None),
    "reseller, category+currency, by amount": (
        {"category": "fee_mismatch", "currency": "EUR", "sort": "amount"},
        "rs_002",
    ),
    "sorted by SLA tier": ({"sort": "tier", "dir": "asc"}, None),
}


def synthesise(n: int, recon: Path, ledger: Path, seed: int = 1) -> Path:
    rng = random.Random(seed)
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    categories = ["fee_mismatch", "amount_mismatch", "missing_at_processor", "late_settlement", "duplicate"]
    ages = [rng.randrange(0, 31) for _ in range(n)]
    frame = pl.DataFrame(
        {
            "variance_id": [f"var_{i:020x}" for i in range(n)],
            "category": [rng.choice(categories) for _ in range(n)],
            "processor": [rng.choice(["adyen", "stripe", "checkoutcom"]) for _ in range(n)],
            "merchant_id": [rng.choice(list(MERCHANTS)) for _ in range(n)],
            "reference": [f"ref_{i}" for i in range(n)],
            "payout_id": [f"po_{i // 40}" for i in range(n)],
            "amount_minor": [rng.randrange(1, 5_000_000) for _ in range(n)],
            "currency": [rng.choice(["EUR", "USD", "GBP", "JPY"]) for _ in range(n)],
            "field": ["fee"] * n,
            "expected": ["2.90 EUR"] * n,
            "actual": ["3.10 EUR"] * n,
            "since": [date(2026, 6, 1) - timedelta(days=a) for a in ages],
            "age_days": ages,
            "ledger_event_ids": [[f"evt_{i}"] for i in range(n)],
            "evidence": [[f"report_{i // 1000}.csv:{i % 1000 + 2}"] for i in range(n)],
            "status": [rng.choice(["open"] * 8 + ["assigned", "resolved"]) for _ in range(n)],
            "assignee": [None] * n,
            "note": [None] * n,
            "first_seen": [now] * n,
            "last_seen": [now] * n,
            "code": [None] * n,
            "watch_until": [None] * n,
        },
        schema=PUBLISHED_VARIANCE_SCHEMA,
    )
    path = recon / PUBLISHED_VARIANCES
    path.parent.mkdir(parents=True)
    frame.write_parquet(path)
    archive = ledger / "archive" / "event_date=2026-06-01"
    archive.mkdir(parents=True)
    pl.DataFrame({"merchant_id": list(MERCHANTS), "reseller_id": list(MERCHANTS.values())}).write_parquet(
        archive / "owners.parquet"
    )
    return path


def median_s(work, repeat: int) -> float:
    work()  # warm: the first read of the file
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rules = ReportRules.from_config(config.load("reports"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = synthesise(args.variances, root / "recon", root / "ledger")
        settings = WorkbenchSettings.from_config(root / "workbench", root / "recon", root / "ledger")
        sources = Sources(settings)

        bare = duckdb.connect()
        source = f"read_parquet('{path}')"

        def baseline() -> None:
            bare.sql(
                f"SELECT * FROM {source} WHERE status <> 'resolved' ORDER BY age_days DESC, variance_id LIMIT 50"
            ).fetchall()
            bare.sql(
                f"SELECT currency, count(*), sum(abs(amount_minor)) FROM {source} WHERE status <> 'resolved'"
                " GROUP BY currency"
            ).fetchall()

        base_s = median_s(baseline, args.repeat)
        results: dict[str, dict] = {}
        for name, (query, tenant) in VIEWS.items():
            filters = queue.Filters.from_query(query, 50, 500)

            def builder(filters=filters, tenant=tenant) -> None:
                queue.run(sources.cursor(), filters, tenant, rules)

            results[name] = {"builder_s": median_s(builder, args.repeat)}

        state = WorkbenchState(settings.state_dir)
        state.add_user("bench", "viewer", "platform", "bench-password")
        state.add_user("bench2", "viewer", "rs_002", "bench-password")
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        sessions = {}
        for name, tenant in (("bench", None), ("bench2", "rs_002")):
            http = requests.Session()
            token = http.get(f"{base}/login").text.split('name="csrf_token" value="')[1].split('"')[0]
            http.post(f"{base}/login", data={"name": name, "password": "bench-password", "csrf_token": token})
            sessions[tenant] = http
        for name, (query, tenant) in VIEWS.items():
            http = sessions[tenant]

            def page(http=http, query=query) -> None:
                r = http.get(f"{base}/queue", params=query)
                assert r.status_code == 200 and "variance(s) match" in r.text, r.text[:300]

            results[name]["http_s"] = median_s(page, args.repeat)
        server.should_exit = True
        thread.join(10)

    report = {
        "variances": args.variances,
        "repeat": args.repeat,
        "baseline_bare_duckdb_s": round(base_s, 4),
        "views": {
            name: {
                "builder_s": round(r["builder_s"], 4),
                "http_page_s": round(r["http_s"], 4),
                "builder_vs_baseline": round(r["builder_s"] / base_s, 2),
                "http_vs_baseline": round(r["http_s"] / base_s, 2),
            }
            for name, r in results.items()
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.variances:,} published variances; baseline (bare DuckDB page + totals): {base_s * 1000:.1f} ms")
    for name, r in report["views"].items():
        print(
            f"  {name:<40} builder {r['builder_s'] * 1000:7.1f} ms ({r['builder_vs_baseline']:.2f}x)"
            f"   whole page over HTTP {r['http_page_s'] * 1000:7.1f} ms ({r['http_vs_baseline']:.2f}x)"
        )
    print(f"load average {report['load_average']}")


if __name__ == "__main__":
    main()
