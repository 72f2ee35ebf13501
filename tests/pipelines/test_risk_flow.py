"""The risk flow end to end through the real broker, a real Feast SQLite store and a real
MLflow registry in tmp folders: one decision per order on terms, on the topic and in the
log; model version and reason codes; the kill switch; buyers without history; Feast
online features equal to the batch runtime's; a SIGKILL mid-run and a restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearline.features import FEATURE_EVENTS
from clearline.features.batch import order_features, read_events
from clearline.features.definitions import buyer_feature_names
from clearline.models.decision_journal import read_log
from clearline.pipelines.connectors.produce import produce_world
from clearline.pipelines.world.generate import WorldOptions, generate
from tests.contract.schemas import assert_valid

pytestmark = pytest.mark.kafka
STREAM_WORLD = WorldOptions(days=60, merchants=4, seed=5)  # ~4,500 events, streamed
MODEL_WORLD = WorldOptions(days=300, merchants=4, seed=7, discrepancy_rate=0.0)  # enough defaults to train on


def _train(world: Path, tracking_uri: str) -> dict[str, dict]:
    """Fit both models on the model world and register them: the better one champion."""
    from clearline import config
    from clearline.features.batch import MODEL_FEATURES
    from clearline.models import labels, training_set
    from clearline.models.registry import Registry, RegistrySettings
    from clearline.models.train import fit_all

    facts = read_events(world)
    ts = training_set.build(
        order_features(facts),
        labels.outcomes(facts, 65),
        tuple(MODEL_FEATURES),
        facts["occurred_at"].max(),
        {"evaluation_share": 0.3, "min_orders": 50, "min_defaults": 3},
    )
    registry = Registry(RegistrySettings(tracking_uri, None, "risk-test"))
    logged = sorted(
        (registry.log(m, ts, {"source": "test"}) for m in fit_all(ts, config.load("models")["models"], None, 1)),
        key=lambda v: -v.metrics["auc"],
    )
    for alias, v in zip(("champion", "challenger"), logged):
        registry.promote(v.name, v.version, alias)
    return {alias: {"name": v.name, "version": v.version} for alias, v in zip(("champion", "challenger"), logged)}


def _configs(root: Path, feast_dir: Path, **policy) -> Path:
    """A copy of configs/ with the Feast store in a tmp folder (and policy changes)."""
    from clearline import config

    out = root / "configs"
    shutil.copytree(config.config_dir(), out)
    features = yaml.safe_load((out / "features.yaml").read_text())
    features["feast"]["path"] = str(feast_dir)
    (out / "features.yaml").write_text(yaml.safe_dump(features))
    risk = yaml.safe_load((out / "risk.yaml").read_text())
    risk["recovery"]["snapshot_interval_s"] = 0.5
    (out / "risk.yaml").write_text(yaml.safe_dump(risk))
    pol = yaml.safe_load((out / "policy.yaml").read_text())
    (out / "policy.yaml").write_text(yaml.safe_dump({**pol, **policy}))
    return out


class Env:
    """One run's environment: its configs, decisions topic (through a topic prefix) and state."""

    def __init__(self, root: Path, base: dict, events_topic: str, admin: AdminClient, **policy):
        self.prefix = f"test.risk.{uuid.uuid4().hex[:8]}."
        self.decisions_topic = self.prefix + "payments.decisions"
        admin.create_topics([NewTopic(self.decisions_topic, 4, 1)])[self.decisions_topic].result(30)
        self.state = root / "state"
        self.env = {
            **base,
            "CLEARLINE_CONFIG_DIR": str(_configs(root, root / "feast", **policy)),
            "CLEARLINE_TOPIC_PREFIX": self.prefix,
        }
        self.events_topic, self.feast = events_topic, root / "feast"

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "clearline.pipelines.cli", "risk", *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        got = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=600, env=self.env)
        if check and got.returncode != 0:
            raise AssertionError(f"clearline risk {' '.join(args)} exited {got.returncode}:\n{got.stderr[-3000:]}")
        return got

    def flow(self, *extra: str) -> dict:
        out = self.run("run", "--once", "--json", "--topic", self.events_topic, "--state-dir", str(self.state), *extra)
        return json.loads(out.stdout)


def _topic_decisions(bootstrap: str, topic: str) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    got, eof = [], set()
    while len(eof) < 4:
        for msg in consumer.consume(1000, 1.0):
            if msg.error() is None:
                got.append((msg.key().decode(), json.loads(msg.value())))
                assert_valid("decision", got[-1][1])  # as the exported contract says
                assert_valid("decision-headers", {k: v.decode() for k, v in msg.headers()})
            else:
                eof.add(msg.partition())
    consumer.close()
    assert all(key == record["merchant_id"] for key, record in got)
    return [record for _, record in got]


@pytest.fixture(scope="module")
def setup(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("risk")
    stream, model_world = root / "stream-world", root / "model-world"
    generate(STREAM_WORLD, stream)
    generate(MODEL_WORLD, model_world)
    tracking = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    (root / "mlflow").mkdir()
    models = _train(model_world, tracking)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = f"test.risk.events.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    produced = produce_world(stream, topic=topic)
    assert produced.failed == 0
    events = pl.read_parquet(stream / "events" / "events.parquet")
    orders = events.filter(pl.col("event_type") == "order.created").with_columns(
        pl.col("payload").str.json_path_match("$.payment_method").alias("method"),
        pl.col("payload").str.json_path_match("$.order_id").alias("order_id"),
        pl.col("payload").str.json_path_match("$.buyer_id").alias("buyer_id"),
    )
    base = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "COLUMNS": "250",
    }  # tables for people: wide enough that ids are not cut
    made: list[str] = [topic]

    def env(name: str, **policy) -> Env:
        e = Env(root / name, base, topic, admin, **policy)
        made.append(e.decisions_topic)
        return e

    yield {
        "stream": stream,
        "models": models,
        "terms": orders.filter(pl.col("method") == "terms"),
        "events": events,
        "env": env,
        "bootstrap": kafka_bootstrap,
        "produced": produced.delivered,
    }
    for name in made:
        admin.delete_topics([name])[name].result(30)


@pytest.fixture(scope="module")
def main_run(setup):
    env = setup["env"]("main")
    summary = env.flow()
    return env, summary, read_log(env.state, "decisions"), _topic_decisions(setup["bootstrap"], env.decisions_topic)


def test_every_order_on_terms_gets_exactly_one_decision_on_the_topic_and_in_the_log(setup, main_run):
    env, summary, log, topic = main_run
    expected = set(setup["terms"]["event_id"])
    assert log.height == len(expected) and set(log["event_id"]) == expected
    assert len(topic) == len(expected) and {r["event_id"] for r in topic} == expected
    assert {r["decision_id"] for r in topic} == set(log["decision_id"])
    assert summary["consumed"] == setup["produced"] and summary["requests"] == len(expected)
    assert summary["decisions"] == len(expected) and sum(summary["by_outcome"].values()) == len(expected)
    assert summary["feature_rows_pushed"] > 0 and summary["refused_skipped"] == 0
    unread = setup["events"].filter(~pl.col("event_type").is_in(sorted(FEATURE_EVENTS))).height
    assert 0 < summary["passed_over"] == unread  # of types no feature reads: not decoded, still counted


def test_decisions_carry_model_version_inputs_and_reason_codes(setup, main_run):
    _, summary, log, topic = main_run
    champion, challenger = setup["models"]["champion"], setup["models"]["challenger"]
    scored = [r for r in topic if r["model"] is not None]
    assert len(scored) > len(topic) // 2
    for r in scored:
        assert r["model"] == champion and 0.0 <= r["score"] <= 1.0 and r["band"]
        assert r["reason_codes"] and all(c["feature"] in r["inputs"] for c in r["reason_codes"])
        assert r["challenger"]["model"] == challenger and r["decision"] in ("approve", "review", "decline")
    assert summary["by_model"][f"{champion['name']} v{champion['version']}"] == len(scored)
    by_id = {r["decision_id"]: r for r in topic}
    for row in log.iter_rows(named=True):  # the log holds the same full record as the topic
        assert json.loads(row["record"]) == by_id[row["decision_id"]]


def _first_events(events: pl.DataFrame) -> dict[str, object]:
    """Each buyer's first event time, from the events that name a buyer."""
    named = events.with_columns(pl.col("payload").str.json_path_match("$.buyer_id").alias("buyer_id")).drop_nulls(
        "buyer_id"
    )
    return dict(named.group_by("buyer_id").agg(pl.col("occurred_at").min()).iter_rows())


def test_a_buyer_without_history_is_decided_by_policy_with_features_unavailable(setup, main_run):
    _, summary, log, _ = main_run
    late = read_log(main_run[0].state, "late")
    late_requests = set(late.filter(pl.col("request"))["event_id"]) if late.height else set()
    first = _first_events(setup["events"])
    terms = setup["terms"].with_columns(pl.col("buyer_id").replace_strict(first).alias("first_seen"))
    new_buyers = set(terms.filter(pl.col("occurred_at") == pl.col("first_seen"))["event_id"])
    assert new_buyers, "the world should hold first orders on terms"
    unavailable = log.filter(pl.col("features_unavailable"))
    assert set(unavailable["event_id"]) == new_buyers | late_requests
    assert summary["features_unavailable"] == unavailable.height
    assert unavailable["model_name"].is_null().all() and unavailable["score"].is_null().all()
    assert set(unavailable["decision"]) <= {"approve", "review"}  # the conservative rules, by amount
    for r in unavailable.iter_rows(named=True):
        assert r["policy_reasons"].startswith("features_unavailable,")
        assert (r["decision"] == "approve") == (r["amount_minor"] <= r["credit_limit_minor"])


def test_feast_online_features_equal_the_batch_runtime_as_of_each_buyers_last_order(main_run, setup):
    from clearline.features import store

    env = main_run[0]
    batch = order_features(read_events(setup["stream"])).sort("decision_time")
    late = read_log(env.state, "late")
    # a buyer with a late event: the stream's reads in its past missed it (by design), the batch's did not
    late_buyers = set(late.filter(pl.col("entity") == "buyer")["entity_id"]) if late.height else set()
    last = batch.filter(~pl.col("buyer_id").is_in(list(late_buyers))).group_by("buyer_id").last()
    fs = store.open_store(store.FeastSettings("clearline", env.feast))
    names = buyer_feature_names()
    assert last.height > 10
    for row in last.iter_rows(named=True):
        online = store.online_features(fs, "buyer", row["buyer_id"])
        assert online["currency"] == row["currency"]
        assert {n: online[n] for n in names} == pytest.approx({n: row[n] for n in names}, nan_ok=True), row["buyer_id"]


@pytest.mark.slow
def test_the_kill_switch_makes_every_decision_conservative(setup):
    env = setup["env"]("killed", kill_switch=True)
    summary = env.flow()
    topic = _topic_decisions(setup["bootstrap"], env.decisions_topic)
    assert {r["event_id"] for r in topic} == set(setup["terms"]["event_id"]) and len(topic) == setup["terms"].height
    assert all(
        r["kill_switch"]
        and r["model"] is None
        and r["score"] is None
        and not r["reason_codes"]
        and r["policy_reasons"][0] == "kill_switch"
        and r["challenger"] is None
        for r in topic
    )
    assert summary["by_model"] == {"rules": len(topic)}


def test_decisions_command_reads_the_log_for_people(setup, main_run):
    env, _, log, _ = main_run
    order = log["order_id"][0]
    record = json.loads(env.run("decisions", "--order", order, "--json", "--state-dir", str(env.state)).stdout)
    assert record["order_id"] == order and record["decision_id"] == log["decision_id"][0]
    listed = json.loads(env.run("decisions", "--json", "--limit", "5", "--state-dir", str(env.state)).stdout)
    assert listed["decisions"] == log.height and len(listed["latest"]) == 5
    assert sum(listed["by_outcome"].values()) == log.height
    table = env.run("decisions", "--state-dir", str(env.state)).stdout
    assert "latest 20 of" in table and log["order_id"][-1] in table
    missing = env.run("decisions", "--order", "ord_nope", "--state-dir", str(env.state), check=False)
    assert missing.returncode == 2 and "error: ord_nope: no decision for this order" in missing.stderr
    empty = env.run("decisions", "--state-dir", str(env.state / "nope"), check=False)
    assert empty.returncode == 2 and "no decision log" in empty.stderr and "Traceback" not in empty.stderr


def test_a_missing_topic_is_an_error_line(setup):
    env = setup["env"]("no-topic")
    got = env.run("run", "--once", "--topic", "test.risk.nope", "--state-dir", str(env.state), check=False)
    assert got.returncode == 2 and "topic 'test.risk.nope' not found" in got.stderr and "Traceback" not in got.stderr


def _journal_count(state: Path) -> int:
    try:
        with sqlite3.connect(state / "journal.sqlite", timeout=5) as con:
            return con.execute("SELECT count(*) FROM entries WHERE kind = 'decisions'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _publish(world: Path, topic: str, start: int, stop: int, per_second: float | None, sent: dict) -> None:
    """Messages [start, stop) of the world in its arrival order, keyed by merchant and signed
    as `clearline produce` sends them, at most `per_second`; `sent` counts them as they go
    ("sent") and, at the end, the broker's acknowledgements ("acked")."""
    from itertools import islice

    from confluent_kafka import Producer

    from clearline import config
    from clearline.pipelines.connectors.produce import world_messages
    from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, sign

    keys, acked = TenantKeys.from_config(), []
    producer = Producer({"bootstrap.servers": config.bootstrap_servers(), "enable.idempotence": True, "acks": "all"})
    began = time.monotonic()
    for i, (body, merchant, tenant) in enumerate(islice(world_messages(world), start, stop)):
        headers = [(TENANT_HEADER, tenant.encode()), (SIGNATURE_HEADER, sign(body, keys.key(tenant)).encode())]
        producer.produce(topic, body, merchant.encode(), headers=headers, on_delivery=lambda e, _m: acked.append(e))
        producer.poll(0)
        sent["sent"] = i + 1
        if per_second:
            time.sleep(max(0.0, (i + 1) / per_second - (time.monotonic() - began)))
    producer.flush(60)
    sent["acked"] = sum(e is None for e in acked)


@pytest.mark.slow
def test_a_sigkill_mid_run_and_a_restart_still_give_one_decision_per_request(setup, tmp_path):
    """The kill lands mid-work by construction: the flow starts on the first third of the
    requests, and once it has logged a decision the rest are still being published (slowly)
    when it is killed, so the decision journal holds some requests' decisions, never all."""
    import threading

    env = setup["env"]("crash")
    risk_yaml = Path(env.env["CLEARLINE_CONFIG_DIR"]) / "risk.yaml"
    risk = yaml.safe_load(risk_yaml.read_text())
    risk["batch_size"] = 20  # many small steps
    risk_yaml.write_text(yaml.safe_dump(risk))
    admin = AdminClient({"bootstrap.servers": setup["bootstrap"]})
    env.events_topic = f"test.risk.crash.{uuid.uuid4().hex[:8]}"  # a topic of its own, filled as the test goes
    admin.create_topics([NewTopic(env.events_topic, 4, 1)])[env.events_topic].result(30)
    events = setup["events"].with_row_index("at")  # the world's arrival order, as published
    arrival = events.filter(pl.col("event_id").is_in(setup["terms"]["event_id"].implode()))["at"].sort()
    total, messages = arrival.len(), setup["events"].height
    cut, last_request = arrival[total // 3], arrival.max()  # the first third of the requests, then the rest
    first, rest = {}, {}
    log_file = tmp_path / "killed-flow.log"
    try:
        _publish(setup["stream"], env.events_topic, 0, cut, None, first)
        assert first["acked"] == cut, first
        with log_file.open("w") as said:
            flow = subprocess.Popen(
                env.cmd("run", "--topic", env.events_topic, "--state-dir", str(env.state)),
                env=env.env,
                stdout=said,
                stderr=said,
            )
            deadline = time.monotonic() + 300  # loading MLflow models on a busy CI machine takes a while
            while _journal_count(env.state) == 0 and time.monotonic() < deadline and flow.poll() is None:
                time.sleep(0.05)
            assert flow.poll() is None, f"the flow stopped before the kill:\n{log_file.read_text()[-3000:]}"
            assert _journal_count(env.state) > 0, "no decision logged in 300 s"
            # the rest of the requests arrive over several seconds while the flow works
            late = threading.Thread(
                target=_publish, args=(setup["stream"], env.events_topic, cut, messages, 400, rest), daemon=True
            )
            late.start()
            time.sleep(0.6)  # past a snapshot (every 0.5 s here), so the restart resumes mid-topic and replays
            os.kill(flow.pid, signal.SIGKILL)
            flow.wait()
            published = cut + rest.get("sent", 0)  # read after the kill: at least what it had been sent
        assert published <= last_request, ("the last request was published before the kill", published, last_request)
        before = _journal_count(env.state)  # the flow's durable record of the requests it decided
        late.join(120)
        assert not late.is_alive() and rest["acked"] == messages - cut, rest
        print(f"\n[risk kill] {before} of {total} requests decided; {published} of {messages} events published")
        assert 0 < before < total, ("the kill should land while requests are left", before, total)
        summary = env.flow()
    finally:
        admin.delete_topics([env.events_topic])[env.events_topic].result(30)
    expected = set(setup["terms"]["event_id"])
    log, topic = read_log(env.state, "decisions"), _topic_decisions(setup["bootstrap"], env.decisions_topic)
    assert log.height == len(expected) and set(log["event_id"]) == expected
    assert len(topic) == len(expected) and {r["event_id"] for r in topic} == expected
    assert summary["decisions"] == len(expected) - before
