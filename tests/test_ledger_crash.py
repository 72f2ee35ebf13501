"""Crash safety: the ledger flow SIGKILLed at random points over 200,000+ events, restarted
each time, posts every event exactly once — no duplicate, nothing missing — and the
invariants, the hash chain and the archive all agree afterwards."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines import archive
from pipelines.produce import produce_world
from pipelines.world.generate import WorldOptions, generate
from recon.ledger.snapshot import read_snapshot

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
FLOW = [sys.executable, "-m", "pipelines.cli", "ledger", "run", "--metrics-port", "0"]


def _cli(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_sigkill_at_random_points_loses_and_duplicates_nothing(kafka_bootstrap, tmp_path):
    world = tmp_path / "world"
    manifest = generate(WorldOptions(days=120, merchants=100, seed=21), world)
    assert manifest["events"] >= 200_000
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic, dlq = f"test.crash.{uuid.uuid4().hex[:8]}", f"test.crashdlq.{uuid.uuid4().hex[:8]}"
    for name in (topic, dlq):
        admin.create_topics([NewTopic(name, 4, 1)])[name].result(30)
    try:
        assert produce_world(world, topic=topic).delivered == manifest["events"]
        state = tmp_path / "state"
        args = ["--topic", topic, "--deadletter-topic", dlq, "--state-dir", str(state)]
        rng = random.Random(5)
        progress = []
        for _ in range(5):
            flow = subprocess.Popen(FLOW + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(3.0, 7.0))  # start-up takes ~2 s; then it is mid-batch somewhere
            assert flow.poll() is None, flow.stderr.read().decode()[-3000:]
            os.kill(flow.pid, signal.SIGKILL)
            flow.wait()
            flow.stderr.close()
            progress.append(_posted(state, topic))
        assert progress[-1] > progress[0], f"the flow must make progress between kills: {progress}"
        assert progress[-1] < manifest["events"], "the kills must land before the end"
        done = subprocess.run(FLOW + ["--once"] + args, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]

        parts = [p for p in read_snapshot(state / "snapshots").stats()["partitions"] if p["topic"] == topic]
        totals = {k: sum(p[k] for p in parts) for k in ("consumed", "posted", "duplicate", "dead_lettered")}
        events = manifest["events"]
        assert totals == {"consumed": events, "posted": events, "duplicate": 0, "dead_lettered": 0}
        assert _cli("ledger", "check", "--state-dir", str(state), "--json")["ok"]
        assert _cli("ledger", "verify", "--state-dir", str(state), "--json")["ok"]
        archived = archive.scan(state / "archive").select("event_id").collect()["event_id"]
        assert archived.len() == events and archived.n_unique() == events
    finally:
        for name in (topic, dlq):
            admin.delete_topics([name])[name].result(30)


def _posted(state, topic) -> int:
    try:
        parts = read_snapshot(state / "snapshots").stats()["partitions"]
    except FileNotFoundError:
        return 0
    return sum(p["posted"] for p in parts if p["topic"] == topic)
