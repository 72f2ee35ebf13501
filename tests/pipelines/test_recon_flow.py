"""The streaming reconciliation flow end to end on the real broker: a generated world's
events on a fresh topic, its reports and statements dropped into the flow's inbox, then
`clearline recon run --once`. The stream's variances are the batch's over the same stored
inputs (the ledger's archive and intake's Parquet store), score perfectly against the
world's truth, and a clean world gives none; files not yet arrived are pending, not
breaks; a SIGKILLed flow resumes without a second copy of any variance."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition

from clearline.pipelines.connectors.produce import produce_world
from clearline.pipelines.world.discrepancies import TRUTH_SCHEMA
from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon.matching.variance import CATEGORIES, SCHEMA
from clearline.recon.score import score
from tests.contract.schemas import assert_valid
from tests.pipelines.ledger_harness import fresh_topics

pytestmark = pytest.mark.kafka
FACTS = [c for c in SCHEMA if c != "age_days"]  # the age depends on when a variance was first published


def clearline(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "clearline.pipelines.cli", *args], capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"clearline {' '.join(args)} exited {result.returncode}:\n{result.stderr[:5000]}")
    return result


def world_files(world: Path) -> list[Path]:
    return sorted(p for sub in ("settlements", "bank") for p in (world / sub).rglob("*") if p.is_file())


def file_day(path: Path) -> date:
    """The day a generated report or statement is for: the last _YYYYMMDD (or _YYYY-MM-DD) in its name."""
    year, month, day = re.findall(r"_(\d{4})-?(\d{2})-?(\d{2})[_.]", path.name)[-1]
    return date(int(year), int(month), int(day))


def drop(files: list[Path], inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy(path, inbox / f"{path.parent.name}-{path.name}")


def consume_all(bootstrap: str, topic: str) -> list[dict]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"recon-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    got, deadline = [], time.monotonic() + 60
    while len(got) < sum(ends.values()) and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append(json.loads(msg.value()))
            assert_valid("variance", got[-1])  # as the exported contract says
    consumer.close()
    return got


def consumers_view(messages: list[dict]) -> pl.DataFrame:
    """What a consumer of payments.variances holds: the latest message per variance id,
    withdrawn ones removed."""
    latest = {m["variance_id"]: m for m in messages}
    rows = [{k: m[k] for k in SCHEMA} for m in latest.values() if m["message"] == "variance"]
    return pl.DataFrame(
        rows, schema={k: (pl.String() if v == pl.Date() else v) for k, v in SCHEMA.items()}, orient="row"
    ).with_columns(since=pl.col("since").str.to_date())


def facts(frame: pl.DataFrame) -> set[tuple]:
    return set(frame.select(FACTS).with_columns(pl.col("ledger_event_ids", "evidence").list.join("|")).iter_rows())


class Deployment:
    """Fresh topics and state folders for one world: events produced, the ledger flow run
    (its archive is the batch's input), files dropped into the recon flow's inbox."""

    def __init__(self, stack: ExitStack, bootstrap: str, root: Path):
        self.bootstrap, self.root = bootstrap, root
        self.events, self.dlq = stack.enter_context(fresh_topics(bootstrap, "test.recon"))
        self.lines, self.variances = stack.enter_context(fresh_topics(bootstrap, "test.reconout"))
        self.state, self.ledger, self.inbox = root / "recon", root / "ledger", root / "inbox"

    def produce(self, world: Path, ledger: bool = True) -> None:
        report = produce_world(world, topic=self.events)
        assert report.failed == 0
        if ledger:
            clearline(
                "ledger",
                "run",
                "--once",
                "--topic",
                self.events,
                "--deadletter-topic",
                self.dlq,
                "--state-dir",
                str(self.ledger),
                "--metrics-port",
                "0",
            )

    def run_args(self, *extra: str) -> list[str]:
        return [
            "recon",
            "run",
            "--inbox",
            str(self.inbox),
            "--state-dir",
            str(self.state),
            "--events-topic",
            self.events,
            "--settlements-topic",
            self.lines,
            "--variances-topic",
            self.variances,
            *extra,
        ]

    def run_once(self) -> dict:
        return json.loads(clearline(*self.run_args("--once", "--json")).stdout)

    def batch(self, *extra: str) -> pl.DataFrame:
        out = json.loads(
            clearline(
                "recon",
                "--archive",
                str(self.ledger / "archive"),
                "--state-dir",
                str(self.batch_state()),
                "--json",
                *extra,
            ).stdout
        )
        return pl.DataFrame(out["items"], schema=SCHEMA | {"since": pl.String()}, orient="row").with_columns(
            since=pl.col("since").str.to_date()
        )

    def batch_state(self) -> Path:
        """A copy of the stream's intake store (the same validated lines) with its own
        variance store, so the batch does not touch the stream's."""
        copy = self.root / "batch"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.state / "lines", copy / "lines")
        return copy

    def store(self) -> pl.DataFrame:
        with duckdb.connect(str(self.state / "variances.duckdb"), read_only=True) as con:
            return con.sql("SELECT * FROM variances").pl()

    def view(self) -> pl.DataFrame:
        return consumers_view(consume_all(self.bootstrap, self.variances))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """30 days, 4 merchants: 103 report and statement files and at least one injected
    break of every category."""
    out = tmp_path_factory.mktemp("recon-world")
    generate(WorldOptions(days=30, merchants=4, seed=31), out)
    return out


@pytest.fixture(scope="module")
def streamed(world, kafka_bootstrap, tmp_path_factory):
    with ExitStack() as stack:
        dep = Deployment(stack, kafka_bootstrap, tmp_path_factory.mktemp("recon-flow"))
        dep.produce(world)
        drop(world_files(world), dep.inbox)
        started = time.monotonic()
        summary = dep.run_once()
        summary["seconds"] = time.monotonic() - started
        print(f"[recon flow] {summary}")
        yield dep, world, summary


def test_every_inbox_file_is_taken_in_and_every_event_read(streamed) -> None:
    dep, world, summary = streamed
    assert summary["inbox_files"] == len(world_files(world)) and summary["inbox_quarantined"] == 0
    assert not [p for p in dep.inbox.iterdir() if p.is_file()], "the inbox is emptied into processed/"
    events = pl.scan_parquet(world / "events" / "events.parquet").select(pl.len()).collect().item()
    assert summary["consumed"] >= events and summary["refused"] == 0 and summary["bad_lines"] == 0


def test_batch_over_the_same_stored_inputs_gives_exactly_the_streams_variances(streamed) -> None:
    dep, _, _ = streamed
    view, stored, batch = dep.view(), dep.store(), dep.batch()
    assert batch.height > 0
    assert facts(view) == facts(batch), "the topic's consumers see the batch's variances"
    assert stored["variance_id"].n_unique() == stored.height == batch.height
    assert stored.select(list(SCHEMA)).sort("variance_id").equals(batch.sort("variance_id")), (
        "store rows, ages included"
    )


def test_a_date_range_re_run_gives_the_streams_variances_of_that_range(streamed) -> None:
    dep, _, _ = streamed
    days = sorted(dep.store()["since"].unique())
    start, end = days[len(days) // 4], days[3 * len(days) // 4]
    ranged = dep.batch("--from", start.isoformat(), "--to", end.isoformat())
    stream = dep.view().filter(pl.col("since").is_between(start, end))
    assert ranged.height > 0 and facts(ranged) == facts(stream)


def test_stream_scores_perfectly_against_the_worlds_truth(streamed) -> None:
    dep, world, _ = streamed
    truth = pl.read_csv(world / "truth" / "discrepancies.csv", schema=TRUTH_SCHEMA)
    scores = score(truth, dep.view())
    assert {s.category for s in scores} == set(CATEGORIES)
    assert [(s.category, s.precision, s.recall) for s in scores] == [(s.category, 1.0, 1.0) for s in scores]


def test_published_snapshot_is_the_store_and_resolve_moves_a_variance(streamed) -> None:
    dep, _, _ = streamed
    snapshot = pl.read_parquet(dep.state / "published" / "variances.parquet")
    shown = [*SCHEMA, "status", "assignee", "note"]
    assert snapshot.select(shown).sort("variance_id").equals(dep.store().select(shown).sort("variance_id"))
    assert pl.read_parquet(dep.state / "published" / "pending.parquet").columns[:2] == ["awaiting", "processor"]
    history = pl.read_parquet(dep.state / "published" / "history.parquet")  # the workbench's and KPIs' history
    with duckdb.connect(str(dep.state / "variances.duckdb"), read_only=True) as con:
        held = con.sql("SELECT * FROM history").pl()
    assert history.height == held.height >= snapshot.height, "every variance's 'found' row, at least"
    assert set(history["variance_id"]) == set(snapshot["variance_id"])
    target = snapshot["variance_id"][0]
    moved = json.loads(
        clearline("recon", "resolve", target, "--note", "checked", "--state-dir", str(dep.state), "--json").stdout
    )
    assert moved["status"] == "resolved" and moved["note"] == "checked"


@pytest.fixture(scope="module")
def clean(kafka_bootstrap, tmp_path_factory):
    world = tmp_path_factory.mktemp("recon-clean-world")
    generate(WorldOptions(days=30, merchants=4, seed=5, discrepancy_rate=0.0), world)
    with ExitStack() as stack:
        dep = Deployment(stack, kafka_bootstrap, tmp_path_factory.mktemp("recon-clean"))
        dep.produce(world, ledger=False)
        drop(world_files(world), dep.inbox)
        yield dep, dep.run_once()


def test_a_clean_world_gives_no_variance(clean) -> None:
    dep, summary = clean
    assert summary["lines"] > 0 and summary["expectations"] > 0
    assert dep.store().height == 0 and consume_all(dep.bootstrap, dep.variances) == []


def test_a_queued_resolution_is_applied_by_the_running_flow(clean) -> None:
    """While the flow runs it owns the store: resolve queues, the flow applies (or refuses
    with the reason kept)."""
    dep, _ = clean
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearline.pipelines.cli", *dep.run_args()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = clearline(
                "recon",
                "resolve",
                "var_00000000000000000000",
                "--note",
                "n/a",
                "--state-dir",
                str(dep.state),
                "--json",
                check=False,
            )
            if out.returncode == 0 and "queued" in json.loads(out.stdout):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("resolve never saw the running flow holding the store")
        refused = dep.state / "resolutions" / "refused"
        while time.monotonic() < deadline and not list(refused.glob("*.reason.txt")):
            time.sleep(0.5)
        reason = next(refused.glob("*.reason.txt")).read_text()
        assert "no variance 'var_00000000000000000000'" in reason
        listed = json.loads(clearline("recon", "list", "--state-dir", str(dep.state), "--json").stdout)
        shown = (listed["variances"], listed["items"])  # (the list also names quarantined files: none here)
        assert shown == (0, []), "list reads the flow's snapshot while it holds the store"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()[-6000:]


@pytest.mark.slow
def test_files_not_yet_arrived_are_pending_until_their_deadline(world, kafka_bootstrap, tmp_path) -> None:
    files = world_files(world)
    last = max(file_day(p) for p in files)
    early = [p for p in files if (last - file_day(p)).days >= 3]
    with ExitStack() as stack:
        dep = Deployment(stack, kafka_bootstrap, tmp_path / "dep")
        dep.produce(world)
        drop(early, dep.inbox)
        first = dep.run_once()
        pending = pl.read_parquet(dep.state / "published" / "pending.parquet")
        said_early = dep.view()
        watermark = date.fromisoformat(first["watermark"][:10])
        assert pending.height > 0 and (pending["due_on"] > watermark).all(), "not yet due: pending, not a break"
        drop([p for p in files if p not in early], dep.inbox)
        dep.run_once()
        messages = consume_all(dep.bootstrap, dep.variances)
        final = consumers_view(messages)
        assert facts(final) == facts(dep.batch())
        assert not [m for m in messages if m["message"] == "withdrawn"], "nothing was called a break too early"
        assert set(said_early["variance_id"]) <= set(final["variance_id"])


def _on_topic(bootstrap: str, topic: str) -> int:
    """How many messages the topic holds (the sum of its partitions' end offsets)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"recon-{uuid.uuid4().hex[:8]}"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    held = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    consumer.close()
    return held


@pytest.mark.slow
def test_sigkill_and_restart_do_not_duplicate_variances(world, kafka_bootstrap, tmp_path) -> None:
    """The kill lands mid-work by construction: the flow reconciles and publishes the events
    and the earlier files, then the last days' files arrive, and it is killed once intake
    has published their lines and before it reconciles them (it waits for its inputs to
    be quiet for advance_interval_s first): what it says it has read is some, never all."""
    files = world_files(world)
    days = sorted({file_day(p) for p in files})
    early = [p for p in files if file_day(p) < days[-3]]  # the last three days' files come later
    with ExitStack() as stack:
        dep = Deployment(stack, kafka_bootstrap, tmp_path)
        dep.produce(world)
        drop(early, dep.inbox)
        proc = subprocess.Popen(
            [sys.executable, "-m", "clearline.pipelines.cli", *dep.run_args()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ,
        )
        deadline = time.monotonic() + 120
        status = dep.state / "published" / "status.json"
        while time.monotonic() < deadline and not (status.exists() and json.loads(status.read_text())["advances"] >= 1):
            time.sleep(0.2)
        assert json.loads(status.read_text())["advances"] >= 1, "the flow published before it was killed"
        drop([p for p in files if p not in early], dep.inbox)
        while time.monotonic() < deadline and [p for p in dep.inbox.iterdir() if p.is_file()]:
            time.sleep(0.1)  # intake takes the files in and publishes their lines, which the flow reads
        assert not [p for p in dep.inbox.iterdir() if p.is_file()], "intake took in the last files before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        done_before = json.loads(status.read_text())["consumed"]  # what the flow said it had read and reconciled
        total = _on_topic(dep.bootstrap, dep.events) + _on_topic(dep.bootstrap, dep.lines)
        print(
            f"\n[recon kill] {done_before} of {total} messages read and reconciled before the kill ({len(early)} of "
            f"{len(files)} files in first)"
        )
        assert 0 < done_before < total, ("the kill should land while there is work left", done_before, total)
        finished = dep.run_once()
        assert finished["consumed"] == total, ("after the restart every message is read once", finished, total)
        stored, view, batch = dep.store(), dep.view(), dep.batch()
        assert stored["variance_id"].n_unique() == stored.height == batch.height
        assert facts(view) == facts(batch)
        sent = [m["variance_id"] for m in consume_all(dep.bootstrap, dep.variances)]
        assert len(sent) == len(set(sent)), "killed after its publication was stored: nothing is sent again"
