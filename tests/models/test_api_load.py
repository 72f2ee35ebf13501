"""The benchmark's load generator (`bench/decision_api.py`, `_load`) against a small real
HTTP server on loopback whose answers are known: latency counts from when a request was
due (a slow answer shows), every non-200 status is counted, a sampled body that is not
the order's decision is caught, and the pool holds the same number of connections to
each of the server's workers."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json

from tests import REPO_ROOT

spec = importlib.util.spec_from_file_location("decision_api_bench_load", REPO_ROOT / "bench" / "decision_api.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

ASKS = [
    {
        "buyer_id": "b1",
        "merchant_id": "m1",
        "tenant": "rs_001",
        "amount": {"minor": 100, "currency": "EUR"},
        "terms_days": 30,
    }
]


async def _server(slow: set[int], failing: set[int], wrong: set[int]):
    """Two 'workers' (pids 101, 102) by connection, as uvicorn's would look; a decision
    answered per order index, slowly, with 503 or with another order's body as told."""
    conns = itertools.count()
    seen: dict[int, int] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pid = 101 + next(conns) % 2
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the generator closed its connections
                break
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            body = await reader.readexactly(length)
            if head.startswith(b"GET /health"):
                status, out = 200, json.dumps({"worker": pid}).encode()
            else:
                order = json.loads(body)["order_id"]
                i = int(order.rsplit("-", 1)[1])
                seen[pid] = seen.get(pid, 0) + 1
                if i in slow:
                    await asyncio.sleep(0.2)
                status = 503 if i in failing else 200
                out = json.dumps(
                    {"order_id": "other" if i in wrong else order, "decision": "approve", "decision_id": f"dec_{i}"}
                ).encode()
            writer.write(
                b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (status, len(out), out)
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def test_the_generator_counts_statuses_checks_bodies_and_times_from_when_due():
    async def run():
        server, port, seen = await _server(slow={5}, failing={7, 8, 9}, wrong={40, 41})
        async with server:
            return await bench._load(port, ASKS, rate=100, duration=1, tag="t", workers=2, connections=8), seen

    got, seen = asyncio.run(run())
    assert got["requests"] == 100 and got["connections_per_worker"] == [4, 4]
    assert got["errors"] == {"503": 3, "wrong body": 1}  # order 41 is not a sampled body (every 20th is)
    assert got["bodies_checked"] == 100 // 20  # orders 0, 20, 40 (the wrong one), 60, 80
    assert got["max_ms"] >= 200 and got["p50_ms"] < 100  # the slow one shows, from when it was due
    assert seen[101] + seen[102] == 100 and min(seen.values()) >= 20  # both 'workers' got a share
