"""Cluster mode: two Bytewax processes (-i 0/1 -a …) on a 4-partition topic, each owning
its partitions and its ledger shard, build the same ledger as one process."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.produce import produce_world
from recon.ledger import chain
from recon.ledger.snapshot import read_snapshot

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ledger(state) -> tuple[dict, dict, str]:
    snap = read_snapshot(state / "snapshots")
    balances = {(r["account"], r["currency"]): r["balance"] for r in snap.balances().iter_rows(named=True)}
    totals = snap.stats()["totals"]
    result = chain.verify(snap)
    assert result.ok, str(result)
    return balances, {k: totals[k] for k in ("consumed", "posted", "duplicate", "dead_lettered")}, result.head


def test_two_processes_build_the_same_ledger_as_one(small_world, kafka_bootstrap, tmp_path):
    world, manifest = small_world
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic, dlq = f"test.cluster.{uuid.uuid4().hex[:8]}", f"test.clusterdlq.{uuid.uuid4().hex[:8]}"
    for name in (topic, dlq):
        admin.create_topics([NewTopic(name, 4, 1)])[name].result(30)
    try:
        produce_world(world, topic=topic)
        base = [sys.executable, "-m", "pipelines.cli", "ledger", "run", "--once", "--topic", topic,
                "--deadletter-topic", dlq, "--metrics-port", "0"]
        addresses = [a for port in _free_ports(2) for a in ("-a", f"127.0.0.1:{port}")]
        cluster = [subprocess.Popen(base + ["--state-dir", str(tmp_path / "two"), "-i", str(i), *addresses],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
        for proc in cluster:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-3000:]
        single = subprocess.run(base + ["--state-dir", str(tmp_path / "one")], capture_output=True, text=True, timeout=600)
        assert single.returncode == 0, single.stderr[-3000:]

        assert len(list((tmp_path / "two/shards").glob("shard-*/ledger.duckdb"))) == 2
        two, one = _ledger(tmp_path / "two"), _ledger(tmp_path / "one")
        assert two[0] == one[0]                      # same balance in every account and currency
        assert two[1] == one[1]                      # same counts
        assert two[1]["posted"] == manifest["events"] + 3  # + the opening balances
        assert two[2] == one[2]                      # same chain head
    finally:
        for name in (topic, dlq):
            admin.delete_topics([name])[name].result(30)
