"""Shared machinery for the ledger resilience tests (tests/pipelines/test_ledger_resilience.py).

Everything here drives the real thing: `clearline ledger …` as child processes, a real
Kafka broker (the shared one, or a private one started from a copy of configs/), real
DuckDB stores and Parquet snapshots. Nothing is mocked.

Each test gets its own copy of configs/ (CLEARLINE_CONFIG_DIR) with the metrics server
off, so flows running side by side — ours, or another engineer's on the same machine —
never fight over the Prometheus port, and a private broker's ports live only there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearline import config, events
from clearline.ledger import archive
from clearline.ledger.snapshot import read_snapshot
from clearline.pipelines.connectors.ledger_sink import GENESIS_TOPIC
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, sign
from tests import REPO_ROOT

# librdkafka logs every refused connection to stderr unless given a logger; while a
# private broker is down on purpose those lines are noise, so they go to logging.
_kafka_log = logging.getLogger("ledger_harness.kafka")
_kafka_log.addHandler(logging.NullHandler())
_kafka_log.propagate = False
COUNTERS = ("consumed", "posted", "duplicate", "dead_lettered")


# ------------------------------------------------------------------------------ configs


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def rewrite_yaml(path: Path, **changes) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def private_configs(dest: Path, **ledger_changes) -> Path:
    """A copy of configs/ with the ledger's metrics server off (and any other change)."""
    shutil.copytree(config.config_dir(), dest)
    rewrite_yaml(dest / "ledger.yaml", metrics_port=0, **ledger_changes)
    return dest


def child_env(configs: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, CLEARLINE_CONFIG_DIR=str(configs), PYTHONUNBUFFERED="1", RUST_BACKTRACE="0")
    env.update(extra)
    return env


# ------------------------------------------------------------------------------- topics


@contextmanager
def fresh_topics(
    bootstrap: str, prefix: str, partitions: int = 4, configs: tuple[dict, dict] = ({}, {})
) -> Iterator[tuple[str, str]]:
    """(events topic, dead-letter topic), created for the test (each with its topic
    `configs`, e.g. max.message.bytes) and deleted after it."""
    tag = uuid.uuid4().hex[:8]
    names = (f"{prefix}.events.{tag}", f"{prefix}.dlq.{tag}")
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _kafka_log})
    new = [NewTopic(n, partitions, 1, config={k: str(v) for k, v in c.items()}) for n, c in zip(names, configs)]
    for future in admin.create_topics(new).values():
        future.result(30)
    wait_for_topics(bootstrap, names, partitions)
    try:
        yield names
    finally:
        try:
            for future in admin.delete_topics(list(names), operation_timeout=30).values():
                future.result(30)
        except Exception as exc:  # a dead private broker cannot delete; its data dir goes with tmp
            print(f"[harness] could not delete topics {names} at {bootstrap}: {exc}")


def wait_for_topics(bootstrap: str, names, partitions: int, timeout: float = 30) -> None:
    """Topic creation is asynchronous in the metadata: wait until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _kafka_log})
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=10)
        ready = all(
            n in meta.topics
            and len(meta.topics[n].partitions) == partitions
            and all(p.leader >= 0 for p in meta.topics[n].partitions.values())
            for n in names
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"topics {names} not ready at {bootstrap} within {timeout} s")
        time.sleep(0.2)


def end_offsets(bootstrap: str, topic: str, partitions: int = 4) -> dict[int, int]:
    """The high watermark of each partition: how many messages it holds."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"resilience-{uuid.uuid4().hex[:8]}", "logger": _kafka_log}
    )
    try:
        return {p: _high_watermark(consumer, TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()


_LEADER_MOVING = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)


def _high_watermark(consumer: Consumer, tp: TopicPartition, timeout: float = 30) -> int:
    """A partition's high watermark, asked again while its leader is still being chosen (a
    topic just made, a broker under load): the broker then says "Not leader for partition"
    for a moment (seen once in CI, reading a dead-letter topic made a moment before)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=timeout)[1]
        except KafkaException as exc:
            if exc.args[0].code() not in _LEADER_MOVING or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def produce_raw(bootstrap: str, topic: str, messages: list[tuple], **producer_config) -> None:
    """Produce (value, key, headers[, partition]) messages as they are, every one acknowledged."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "logger": _kafka_log, **producer_config}
    )
    failed: list[str] = []
    for value, key, headers, *partition in messages:
        extra = {"partition": partition[0]} if partition else {}
        producer.produce(
            topic, value, key, headers=headers, on_delivery=lambda e, _m: e and failed.append(e.str()), **extra
        )
        producer.poll(0)
    assert producer.flush(60) == 0 and not failed, failed


def read_topic(bootstrap: str, topic: str, partitions: int = 4) -> list:
    """Every message of `topic`, read from offset 0 to the end each partition has now."""
    ends = end_offsets(bootstrap, topic, partitions)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "logger": _kafka_log,
            "fetch.message.max.bytes": 16 * 1024 * 1024,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p]])
    out, deadline = [], time.monotonic() + 60
    try:
        while len(out) < sum(ends.values()):
            assert time.monotonic() < deadline, f"read {len(out)} of {sum(ends.values())} messages of {topic}"
            out += [m for m in consumer.consume(500, timeout=1) if m.error() is None]
    finally:
        consumer.close()
    return out


# ----------------------------------------------------------------------- hand-made events

TENANT, MERCHANT, PROCESSOR = "rs_001", "m_00001", "adyen"


def signed(body: bytes, tenant: str = TENANT, key_tenant: str | None = None) -> list[tuple[str, bytes]]:
    """The headers of `body` signed for `tenant` (with `key_tenant`'s key: a wrong signature)."""
    keys = TenantKeys.from_config()
    return [(TENANT_HEADER, tenant.encode()), (SIGNATURE_HEADER, sign(body, keys.key(key_tenant or tenant)).encode())]


def authorization(event_id: str, minor: int = 1999, token: str = "tok_x") -> bytes:
    """A payment.authorized of `minor` EUR by MERCHANT; its legs are the amount itself."""
    n = event_id.rsplit("_", 1)[-1]
    return events.encode(
        events.Event(
            event_id,
            "payment.authorized",
            datetime(2026, 1, 5, 10, tzinfo=timezone.utc),
            MERCHANT,
            TENANT,
            events.PaymentAuthorized(
                f"pay_{n}", f"ord_{n}", "b_1", PROCESSOR, "card", events.Money(minor, "EUR"), token
            ),
        )
    )


# ------------------------------------------------------------------------------- worlds


def event_ids(world: Path) -> list[str]:
    return pl.read_parquet(world / "events/events.parquet", columns=["event_id"])["event_id"].to_list()


def split_world(world: Path, parts: list[Path], cuts: list[int]) -> list[int]:
    """Worlds that `produce_world` accepts, each a consecutive slice of `world`'s events in
    arrival order, cut before each index in `cuts`; returns each slice's size."""
    table = pl.read_parquet(world / "events/events.parquet")
    with open(world / "events/events.jsonl", "rb") as fh:
        lines = fh.readlines()
    assert len(lines) == table.height and len(parts) == len(cuts) + 1
    bounds = [0, *cuts, len(lines)]
    sizes = []
    for out, lo, hi in zip(parts, bounds, bounds[1:]):
        (out / "events").mkdir(parents=True)
        (out / "events/events.jsonl").write_bytes(b"".join(lines[lo:hi]))
        table.slice(lo, hi - lo).write_parquet(out / "events/events.parquet")
        sizes.append(hi - lo)
    return sizes


# ------------------------------------------------------------------------------- flows


@dataclass
class Flow:
    """One `clearline ledger run` child process (or another flow's `command`), its output in
    files (never a full pipe)."""

    args: list[str]
    env: dict[str, str]
    logs: Path
    name: str = "flow"
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    _out: object = None
    _err: object = None
    runs: int = field(default=0)
    command: tuple[str, ...] = ("ledger", "run")

    def start(self) -> "Flow":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        self._close_files()
        self._out = open(self.logs / f"{self.name}.{self.runs}.out", "wb")
        self._err = open(self.logs / f"{self.name}.{self.runs}.err", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clearline.pipelines.cli", *self.command, *self.args],
            env=self.env,
            stdout=self._out,
            stderr=self._err,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL: no handler, no cleanup, like a power cut for this process."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout} s of SIGTERM\n{self.tail()}") from None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s\n{self.tail()}") from None

    def stop_quietly(self) -> None:
        if self.alive():
            self.kill()
        self._close_files()

    def stderr(self, run: int | None = None) -> str:
        path = self.logs / f"{self.name}.{run or self.runs}.err"
        return path.read_text(errors="replace") if path.exists() else ""

    def stacks(self, settle_s: float = 1.0) -> str:
        """Every thread's Python stack, as the running flow prints it on SIGUSR1 (the CLI
        registers faulthandler for it): where a flow that makes no progress waits."""
        if not self.alive():
            return ""
        before = len(self.stderr())
        os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(settle_s)
        return f"--- {self.name} run {self.runs}: Python stacks on SIGUSR1 ---\n" + self.stderr()[before:]

    def tail(self, lines: int = 40, run: int | None = None) -> str:
        text = self.stderr(run)
        # drop the Rust backtrace frames, keep the Python traceback and the messages
        kept = [line for line in text.splitlines() if not line.lstrip()[:1].isdigit() or "|" in line]
        return f"--- {self.name} run {run or self.runs} stderr (tail) ---\n" + "\n".join(kept[-lines:])

    def _close_files(self) -> None:
        for fh in (self._out, self._err):
            if fh is not None:
                fh.close()
        self._out = self._err = None


def flow_args(topic: str, dlq: str, state: Path, *extra: str, once: bool = False) -> list[str]:
    return [
        *(["--once"] if once else []),
        "--topic",
        topic,
        "--deadletter-topic",
        dlq,
        "--state-dir",
        str(state),
        *extra,
    ]


def run_once(args: list[str], env: dict[str, str], logs: Path, name: str, timeout: float = 300) -> float:
    """`ledger run --once …` to completion; returns its wall time. Fails with its stderr."""
    flow = Flow(args if "--once" in args else ["--once", *args], env, logs, name).start()
    try:
        rc = flow.wait(timeout)
        assert rc == 0, f"{name} exited {rc}\n{flow.tail()}"
        return time.monotonic() - flow.started_at
    finally:
        flow.stop_quietly()


def start_cluster(
    args: list[str], env: dict, logs: Path, state: Path, name: str, command: tuple[str, ...] = ("ledger", "run")
) -> list[Flow]:
    """Two processes of one flow, -i 0 and -i 1, one state folder (`state`: the folder that
    holds the flow's `recovery`). Process 1 starts once process 0 has initialised Bytewax
    recovery (a simultaneous first start races)."""
    p0, p1 = free_ports(2)
    addresses = ["-a", f"127.0.0.1:{p0}", "-a", f"127.0.0.1:{p1}"]
    flows = [Flow([*args, "-i", str(i), *addresses], env, logs, f"{name}-p{i}", command=command) for i in (0, 1)]
    flows[0].start()
    try:
        wait_until(lambda: recovery_initialised(state), 60, "process 0 to initialise recovery", flows[:1], poll=0.05)
    except AssertionError:
        flows[0].stop_quietly()
        raise
    flows[1].start()
    return flows


def run_cluster(
    args: list[str],
    env: dict,
    logs: Path,
    state: Path,
    name: str,
    timeout: float = 300,
    command: tuple[str, ...] = ("ledger", "run"),
) -> float:
    """A two-process cluster (`start_cluster`) run to completion; returns its wall time."""
    t = time.monotonic()
    flows = start_cluster(args, env, logs, state, name, command)
    try:
        for flow in flows:
            rc = flow.wait(timeout)
            assert rc == 0, f"{flow.name} exited {rc}\n" + "\n".join(f.tail() for f in flows)
        return time.monotonic() - t
    finally:
        for flow in flows:
            flow.stop_quietly()


def clearline_json(env: dict[str, str], *args: str) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "clearline.pipelines.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"clearline {' '.join(args)} exited {done.returncode} without JSON:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        ) from None


# ----------------------------------------------------------------------- reading state


def published_counts(state: Path, topic: str) -> dict[str, int] | None:
    """Counters of `topic` in the latest published snapshots (all shards), read from the
    manifests alone (cheap enough to poll); None before the first publication."""
    totals = dict.fromkeys(COUNTERS, 0)
    found = False
    for current in sorted((state / "snapshots").glob("shard-*/CURRENT")):
        for _ in range(20):  # CURRENT can move on between the two reads
            try:
                manifest = json.loads((current.parent / "manifests" / current.read_text().strip()).read_text())
                break
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.02)
        else:
            continue
        found = True
        for row in manifest["offsets"]:
            if row["topic"] == topic:
                for k in COUNTERS:
                    totals[k] += row[k]
    return totals if found else None


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, flows: list[Flow] = (), poll: float = 0.2
) -> float:
    """Poll until `predicate()`; fail naming `what` (with the flows' stderr) on timeout or
    if a flow died meanwhile. Returns the seconds waited."""
    start = time.monotonic()
    while not predicate():
        for flow in flows:
            if not flow.alive():
                raise AssertionError(
                    f"{flow.name} exited {flow.proc.returncode} while waiting for {what}\n{flow.tail()}"
                )
        if time.monotonic() - start > timeout:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}\n"
                + "\n".join(f"{f.tail()}\n{f.stacks()}" for f in flows)
            )
        time.sleep(poll)
    return time.monotonic() - start


def topic_stats(state: Path, topic: str) -> tuple[dict[str, int], dict[int, dict], dict]:
    """(topic totals, per-partition rows of the topic, the whole stats) from the snapshot."""
    with read_snapshot(state / "snapshots") as snap:
        stats = snap.stats()
    rows = [p for p in stats["partitions"] if p["topic"] == topic]
    parts = {p["partition"]: p for p in rows}
    assert len(parts) == len(rows), (
        "a partition has offsets rows in more than one shard (its chain and counters forked)",
        [(p["partition"], p["next_offset"], p["consumed"]) for p in rows],
    )
    totals = {k: sum(p[k] for p in parts.values()) for k in COUNTERS}
    return totals, parts, stats


def balances(state: Path) -> dict[tuple[str, str], int]:
    with read_snapshot(state / "snapshots") as snap:
        frame = snap.balances()
    return {(r["account"], r["currency"]): r["balance"] for r in frame.iter_rows(named=True)}


def recovery_initialised(state: Path) -> bool:
    """Whether the flow has created and initialised its Bytewax recovery partition(s)."""
    parts = sorted((state / "recovery").glob("part-*.sqlite3"))
    if not parts:
        return False
    try:
        con = sqlite3.connect(f"file:{parts[0]}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM parts").fetchone()[0] > 0
        finally:
            con.close()
    except sqlite3.Error:
        return False


# ----------------------------------------------------------------------- the verdict


def assert_exactly_once(
    state: Path,
    topic: str,
    dlq: str,
    bootstrap: str,
    produced: list[str],
    env: dict[str, str],
    opening_accounts: int,
    resent: bool = False,
) -> dict:
    """Every produced event posted exactly once, nothing else: the counters of the topic,
    the offsets against the broker's, the genesis, `ledger check`, `ledger verify`, the
    archive and the dead-letter topic. Returns the topic's totals.

    `resent`: the topic may hold some events twice (an idempotent producer re-sends what a
    broker killed mid-write had not acknowledged, and the restarted broker has lost the
    producer's sequence state): each extra copy must be consumed and counted a duplicate,
    never posted."""
    n = len(produced)
    assert len(set(produced)) == n, "the produced world has repeated event ids; the test assumes none"
    totals, parts, stats = topic_stats(state, topic)
    dups = totals["duplicate"] if resent else 0
    assert totals == {"consumed": n + dups, "posted": n, "duplicate": dups, "dead_lettered": 0}, totals

    ends = end_offsets(bootstrap, topic)
    assert {p: parts[p]["next_offset"] for p in parts} == ends, (
        "committed offsets differ from the topic's ends",
        {p: parts[p]["next_offset"] for p in parts},
        ends,
    )
    assert {p: parts[p]["consumed"] for p in parts} == ends

    genesis = [p for p in stats["partitions"] if p["topic"] == GENESIS_TOPIC]
    assert [(g["consumed"], g["posted"], g["duplicate"]) for g in genesis] == [
        (opening_accounts, opening_accounts, 0)
    ], genesis
    all_topics = {p["topic"] for p in stats["partitions"]}
    assert all_topics == {topic, GENESIS_TOPIC}, all_topics
    t = stats["totals"]
    assert sum(ends.values()) == n + dups, (ends, n, dups)
    assert (t["events"], t["events_posted"], t["events_rejected"], t["rejections"]) == (
        n + opening_accounts,
        n + opening_accounts,
        0,
        0,
    ), t
    assert t["postings"] == t["chain_length"], t

    rc, check = clearline_json(env, "ledger", "check", "--state-dir", str(state))
    assert rc == 0 and check["ok"], check
    assert {k: check[k] for k in COUNTERS} == {
        "consumed": n + opening_accounts + dups,
        "posted": n + opening_accounts,
        "duplicate": dups,
        "dead_lettered": 0,
    }, check
    rc, verify = clearline_json(env, "ledger", "verify", "--state-dir", str(state))
    assert rc == 0 and verify["ok"] and verify["source"] == "store", verify
    assert verify["postings"] == t["postings"], (verify, t)

    frame = archive.scan(state / "archive").collect()
    ids = frame["event_id"]
    assert frame.height == n and ids.n_unique() == n, (frame.height, ids.n_unique(), n)
    assert set(ids) == set(produced)
    assert frame.select("partition", "offset").n_unique() == n
    assert set(frame["topic"].unique()) == {topic}
    by_partition = dict(frame.group_by("partition").len().iter_rows())
    if dups:  # a partition's copies are in its offsets but not in the archive
        assert all(by_partition.get(p, 0) <= c for p, c in ends.items()), (by_partition, ends)
    else:
        assert by_partition == {p: c for p, c in ends.items() if c}, (by_partition, ends)

    assert sum(end_offsets(bootstrap, dlq).values()) == 0, "dead letters were sent for a clean world"
    return totals
