"""The ledger flow end to end through the real broker: a world with re-sent duplicates
and every kind of bad input, posted exactly once, dead letters with reasons, invariants,
the hash chain, the archive, a rebuild with the same head, and tampering caught."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import polars as pl
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearline.ledger import archive
from clearline.ledger.snapshot import read_snapshot
from clearline.pipelines.connectors.produce import world_messages
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, sign
from tests.pipelines.ledger_harness import free_ports

pytestmark = pytest.mark.kafka
KEYS = TenantKeys.from_config()
PAN = "4111111111111111"


def clearline(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "clearline.pipelines.cli", *args], capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"clearline {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def _signed(body: bytes, tenant: str = "rs_001", key_tenant: str | None = None) -> list:
    return [(TENANT_HEADER, tenant.encode()), (SIGNATURE_HEADER, sign(body, KEYS.key(key_tenant or tenant)).encode())]


def bad_messages(good: bytes) -> list[tuple[str, bytes, list]]:
    """(expected reason, body, headers) for every kind of bad input."""
    doc = json.loads(good)
    tenant = doc["reseller_id"]

    def variant(change) -> bytes:
        d = json.loads(good)
        d["event_id"] = "evt_bad_" + uuid.uuid4().hex[:10]
        change(d)
        return json.dumps(d).encode()

    missing = variant(lambda d: d["payload"].pop(next(iter(d["payload"]))))
    wrong_type = variant(lambda d: d.update(schema_version="one"))
    unknown = variant(lambda d: d.update(event_type="payment.teleported"))
    pan = variant(lambda d: d["payload"].update(note=f"card {PAN}"))
    oversize = variant(lambda d: d["payload"].update(padding="x" * 70_000))
    malformed = good[: len(good) // 2]
    tampered = variant(lambda d: None)
    return [
        ("contract:json", malformed, _signed(malformed, tenant)),
        ("contract:missing", missing, _signed(missing, tenant)),
        ("contract:type", wrong_type, _signed(wrong_type, tenant)),
        ("contract:unknown", unknown, _signed(unknown, tenant)),
        ("contract:pan", pan, _signed(pan, tenant)),
        ("contract:oversize", oversize, _signed(oversize, tenant)),
        ("signature", good, _signed(good, tenant, key_tenant="rs_002" if tenant != "rs_002" else "rs_003")),
        ("signature", tampered.replace(b'"minor":', b'"minor": 1'), _signed(tampered, tenant)),
        ("tenant", good, []),
        ("contract:missing", missing, _signed(missing, tenant)),  # the same bad event retried
    ]


@pytest.fixture(scope="module")
def run(small_world, kafka_bootstrap, tmp_path_factory):
    """Produce the world, 10 % of it again, and the bad messages; run the flow --once."""
    world, manifest = small_world
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic, dlq = f"test.ledger.{uuid.uuid4().hex[:8]}", f"test.dlq.{uuid.uuid4().hex[:8]}"
    for name in (topic, dlq):
        admin.create_topics([NewTopic(name, 4, 1)])[name].result(30)
    messages = list(world_messages(world))
    rng = random.Random(7)
    resent = rng.sample(messages, len(messages) // 10)
    bad = bad_messages(messages[0][0])
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "message.max.bytes": 2_000_000}
    )
    for body, merchant, tenant in messages + resent:
        producer.produce(topic, body, merchant.encode(), headers=_signed(body, tenant))
        producer.poll(0)
    for _, body, headers in bad:
        producer.produce(topic, body, b"m_bad", headers=headers)
    assert producer.flush(60) == 0
    state = tmp_path_factory.mktemp("ledger") / "state"
    clearline(
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
    )
    yield {
        "state": state,
        "topic": topic,
        "dlq": dlq,
        "manifest": manifest,
        "resent": len(resent),
        "bad": bad,
        "event_ids": {json.loads(b)["event_id"] for b, _, _ in messages},
        "bootstrap": kafka_bootstrap,
    }
    for name in (topic, dlq):
        admin.delete_topics([name])[name].result(30)


def _topic_totals(state: Path, topic: str) -> dict:
    parts = [p for p in read_snapshot(state / "snapshots").stats()["partitions"] if p["topic"] == topic]
    return {k: sum(p[k] for p in parts) for k in ("consumed", "posted", "duplicate", "dead_lettered")}


def test_every_message_is_accounted_for_exactly(run):
    totals = _topic_totals(run["state"], run["topic"])
    events = run["manifest"]["events"]
    assert totals == {
        "consumed": events + run["resent"] + len(run["bad"]),
        "posted": events,
        "duplicate": run["resent"],
        "dead_lettered": len(run["bad"]),
    }


def test_bad_input_is_dead_lettered_with_its_reason(run):
    consumer = Consumer({"bootstrap.servers": run["bootstrap"], "group.id": uuid.uuid4().hex})
    consumer.assign([TopicPartition(run["dlq"], p, 0) for p in range(4)])
    letters, idle = [], 0
    while len(letters) < len(run["bad"]) and idle < 20:
        batch = consumer.consume(100, timeout=0.5)
        idle = 0 if batch else idle + 1
        letters += batch
    consumer.close()
    reasons = sorted(dict(m.headers())["reason"].decode() for m in letters)
    assert reasons == sorted(reason for reason, _, _ in run["bad"])
    for m in letters:
        headers = dict(m.headers())
        assert headers["origin-topic"].decode() == run["topic"] and int(headers["origin-offset"]) >= 0
        assert len(headers["detail"]) > 20
        assert PAN.encode() not in (m.value() or b"")


def test_invariants_hold_and_the_chain_verifies(run):
    check = json.loads(clearline("ledger", "check", "--state-dir", str(run["state"]), "--json").stdout)
    assert check["ok"], check["violations"]
    verify = json.loads(clearline("ledger", "verify", "--state-dir", str(run["state"]), "--json").stdout)
    assert verify["ok"] and verify["source"] == "store" and verify["postings"] > run["manifest"]["events"]


def test_archive_holds_every_posted_event_once(run):
    frame = archive.scan(run["state"] / "archive").collect()
    assert frame.height == len(run["event_ids"])
    assert set(frame["event_id"]) == run["event_ids"]
    for path in (run["state"] / "archive").glob("event_date=*/*.parquet"):
        day = path.parent.name.removeprefix("event_date=")
        dates = pl.read_parquet(path)["occurred_at"].dt.date().cast(pl.String).unique().to_list()
        assert dates == [day], path


def test_rebuild_from_offset_zero_gives_the_same_head(run):
    report = json.loads(
        clearline("ledger", "rebuild", "--state-dir", str(run["state"]), "--topic", run["topic"], "--json").stdout
    )
    assert report["identical"] and report["consumed"] == report["rebuilt_consumed"]


def test_a_changed_posting_fails_verify_and_is_named(run, tmp_path):
    copy = tmp_path / "state"
    shutil.copytree(run["state"], copy)
    store = copy / "shards/shard-0/ledger.duckdb"
    con = duckdb.connect(str(store))
    event_id, offset = con.execute(
        'SELECT event_id, "offset" FROM postings WHERE topic = ? ORDER BY partition, "offset" LIMIT 1 OFFSET 500',
        [run["topic"]],
    ).fetchone()
    con.execute("UPDATE postings SET amount_minor = amount_minor + 1 WHERE event_id = ? AND seq = 0", [event_id])
    con.close()
    result = clearline("ledger", "verify", "--state-dir", str(copy), "--json", check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["ok"] and any(event_id in link for link in report["first_bad_links"])


def test_metrics_while_running_and_a_clean_stop_on_sigterm(small_world, kafka_bootstrap, tmp_path):
    import signal
    import time
    import urllib.request

    from clearline.pipelines.connectors.produce import produce_world

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = f"test.metrics.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    try:
        world, manifest = small_world
        produce_world(world, topic=topic)
        (port,) = free_ports(1)
        flow = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clearline.pipelines.cli",
                "ledger",
                "run",
                "--topic",
                topic,
                "--state-dir",
                str(tmp_path / "state"),
                "--metrics-port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        posted, deadline = 0.0, time.monotonic() + 120
        while posted < manifest["events"] and time.monotonic() < deadline and flow.poll() is None:
            time.sleep(1)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith('clearline_ledger_messages_total{outcome="posted"}'):
                    posted = float(line.split()[-1])
        assert posted == manifest["events"], flow.stderr.read() if flow.poll() is not None else posted
        assert "clearline_ledger_offset_accounting_ok 1.0" in text
        flow.send_signal(signal.SIGTERM)
        _, err = flow.communicate(timeout=60)
        assert flow.returncode == 0, err[-2000:]
        assert "Traceback" not in err and "stopped" in err
        assert _topic_totals(tmp_path / "state", topic)["posted"] == manifest["events"]
    finally:
        admin.delete_topics([topic])[topic].result(30)
