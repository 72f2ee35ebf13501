"""Intake end to end: the real broker, the inbox watcher, the command line.

A generated world's reports and statements go through `Intake` into a fresh topic and the
Parquet store: one message per validated line, keyed so a payout batch or a statement
stays in one partition, carrying the file hash and line number; the same files again
publish nothing. The inbox empties itself into processed/ and the quarantine and stops on
its event; `clearline ingest` reports, exits 1 on a quarantined file, and its watcher
stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from clearline.pipelines.cli.intake import ingest as ingest_command
from clearline.pipelines.connectors.produce import producer
from clearline.recon.intake.ingest import Intake, IntakeSettings
from clearline.recon.intake.parse import parse_file
from clearline.recon.intake.store import read_lines
from clearline.recon.intake.watch import watch
from tests import REPO_ROOT
from tests.pipelines.ledger_harness import fresh_topics
from tests.recon.test_intake_processor import intake_world  # noqa: F401 (fixture)
from tests.recon.test_intake_resent import same_layout_pair


def world_files(world: Path) -> list[Path]:
    return sorted(p for sub in ("settlements", "bank") for p in (world / sub).rglob("*") if p.is_file())


def settings(state: Path, topic: str = "unused", timeout: float = 30) -> IntakeSettings:
    return IntakeSettings(state, topic, poll_seconds=0.1, settle_seconds=0, delivery_timeout_seconds=timeout)


def consume_all(bootstrap: str, topic: str) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"intake-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    partitions = [TopicPartition(topic, p) for p in metadata.partitions]
    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    messages, deadline = [], time.monotonic() + 60
    while sum(1 for m in messages) < sum(ends.values()) and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            messages.append(message)
    consumer.close()
    return messages


@pytest.mark.kafka
@pytest.mark.slow
def test_world_files_reach_the_topic_and_the_store_once(intake_world, kafka_bootstrap, tmp_path) -> None:
    world, summary = intake_world
    with fresh_topics(kafka_bootstrap, "test.intake") as (topic, _):
        intake = Intake(settings(tmp_path / "state", topic), producer(30))
        files = world_files(world)
        outcomes = intake.ingest(files)
        assert {o.status for o in outcomes} == {"accepted"}, [o.reason for o in outcomes if o.status != "accepted"]
        messages = consume_all(kafka_bootstrap, topic)
        bodies = [json.loads(m.value()) for m in messages]
        statements = [b for b in bodies if b["kind"] == "statement"]  # a bank file's, after its lines
        # Adyen's balance transfers (a negative day carried to the next batch) are report rows, not world lines
        carried = sum(1 for b in bodies if b.get("record_type") == "balance_transfer")
        assert len(bodies) - len(statements) - carried == summary["settlement_lines"] + summary["bank_lines"]
        assert len(statements) == len([p for p in files if p.is_relative_to(world / "bank")])  # one per file here
        assert len({(b["kind"], b["file_sha256"], b["line_no"]) for b in bodies}) == len(bodies)
        assert {b["file_sha256"] for b in bodies} == {o.sha256 for o in outcomes}
        partitions = defaultdict(set)
        for message, body in zip(messages, bodies):
            key = body["payout_id"] if body["kind"] == "processor" else body["account"]
            assert message.key().decode() == key
            partitions[key].add(message.partition())
        assert all(len(p) == 1 for p in partitions.values()), "a batch or statement stays in one partition"
        processor, bank = read_lines(tmp_path / "state", "processor"), read_lines(tmp_path / "state", "bank")
        assert (processor.height - carried, bank.height) == (summary["settlement_lines"], summary["bank_lines"])
        charge = next(b for b in bodies if b["kind"] == "processor" and b["record_type"] == "charge")
        assert isinstance(charge["net_minor"], int) and charge["net_currency"] in ("USD", "EUR", "GBP")

        again = intake.ingest(files)
        assert {o.status for o in again} == {"received_again"}
        assert len(consume_all(kafka_bootstrap, topic)) == len(bodies), "the same files publish nothing"


@pytest.mark.kafka
def test_a_report_sent_again_publishes_only_the_lines_not_held(intake_world, kafka_bootstrap, tmp_path) -> None:
    """A copy with other bytes publishes nothing; a report that partly overlaps what was
    taken in publishes its new lines only, so the stream never sees a line twice."""
    world, _ = intake_world
    first, second = same_layout_pair(world / "settlements" / "stripe")
    header, *rows_first = first.read_text().splitlines(keepends=True)
    rows_second = second.read_text().splitlines(keepends=True)[1:]
    copy = tmp_path / "copy.csv"
    copy.write_bytes(first.read_bytes().replace(b"\n", b"\r\n"))
    both = tmp_path / "both.csv"
    both.write_text(header + "".join(rows_first + rows_second))
    with fresh_topics(kafka_bootstrap, "test.intake.resent") as (topic, _):
        intake = Intake(settings(tmp_path / "state", topic), producer(30))
        outcomes = intake.ingest([first, copy, both])
        assert [o.status for o in outcomes] == ["accepted", "received_again", "accepted"]
        n_first, n_second = parse_file(first).lines.height, parse_file(second).lines.height
        assert (outcomes[2].lines, outcomes[2].already_held) == (n_second, n_first)
        bodies = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, topic)]
        assert len(bodies) == n_first + n_second
        assert len({b["line_id"] for b in bodies}) == len(bodies)
        assert {b["file_sha256"] for b in bodies} == {outcomes[0].sha256, outcomes[2].sha256}


@pytest.mark.kafka
def test_lines_kafka_does_not_take_leave_the_file_to_be_tried_again(intake_world, kafka_bootstrap, tmp_path) -> None:
    world, _ = intake_world
    path = world_files(world)[0]
    missing = f"test.intake.absent.{uuid.uuid4().hex[:8]}"  # auto-creation is off: the topic does not exist
    intake = Intake(settings(tmp_path / "state", missing, timeout=5), producer(5))
    (outcome,) = intake.ingest([path])
    assert outcome.status == "failed" and "not acknowledged by Kafka" in outcome.reason
    assert intake.registry.seen(outcome.sha256) is None, "not recorded: the next run tries it again"


def test_inbox_empties_into_processed_and_quarantine_and_stops(intake_world, tmp_path) -> None:
    world, _ = intake_world
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    good = world_files(world)[:3]
    intake = Intake(settings(state))
    stop = threading.Event()
    seen: list = []
    runner = threading.Thread(target=lambda: seen.extend(watch(intake, inbox, stop)))
    runner.start()
    staging = tmp_path / "staging"  # files arrive whole (renamed in), as senders deliver them
    staging.mkdir()
    try:
        for path in good:
            shutil.copy(path, staging / path.name)
            os.replace(staging / path.name, inbox / path.name)
        (staging / "broken.sta").write_text(":20:X\r\n:25:ACC\r\n:60F:C260101GBP1,00\r\n")
        os.replace(staging / "broken.sta", inbox / "broken.sta")
        deadline = time.monotonic() + 60
        while any(p.is_file() for p in inbox.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive(), "the watcher stops when told"
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(p.name for p in good)
    assert (state / "quarantine" / "broken.sta").is_file()
    assert "no closing balance" in (state / "quarantine" / "broken.sta.report.txt").read_text()
    assert sorted(o.status for o in seen) == ["accepted"] * 3 + ["quarantined"]


def test_a_report_downloaded_again_into_the_inbox_is_received_again_and_leaves_it(intake_world, tmp_path) -> None:
    """The inbox watcher and `clearline ingest` share the registry: a report taken in by
    one is known to the other, whatever its bytes and name, across runs."""
    world, _ = intake_world
    report = sorted((world / "settlements" / "stripe").glob("*.csv"))[0]
    state, inbox = tmp_path / "state", tmp_path / "inbox"
    taken = CliRunner().invoke(ingest_command, [str(report), "--state-dir", str(state), "--no-publish", "--json"])
    assert json.loads(taken.stdout)["accepted"] == 1
    inbox.mkdir()
    (inbox / "stripe (2).csv").write_bytes(report.read_bytes().replace(b"\n", b"\r\n"))
    (outcome,) = watch(Intake(settings(state)), inbox, threading.Event(), once=True)
    assert outcome.status == "received_again" and report.name in outcome.reason
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []
    assert [p.name for p in (inbox / "processed").iterdir()] == ["stripe (2).csv"]


def test_a_file_still_being_written_waits_for_the_next_poll(tmp_path) -> None:
    from clearline.recon.intake.watch import ready_files

    (tmp_path / "old.csv").write_text("x")
    (tmp_path / "fresh.csv").write_text("x")
    (tmp_path / "partial.csv.part").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    old = time.time() - 10
    os.utime(tmp_path / "old.csv", (old, old))
    assert [p.name for p in ready_files(tmp_path, settle_seconds=2)] == ["old.csv"]
    assert [p.name for p in ready_files(tmp_path, settle_seconds=2, now=time.time() + 5)] == ["fresh.csv", "old.csv"]


def test_cli_reports_and_exits_1_on_a_quarantined_file(intake_world, tmp_path) -> None:
    world, _ = intake_world
    files = world_files(world)[:2]
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,report\n1,2,3\n")
    base = ["--state-dir", str(tmp_path / "state"), "--no-publish", "--json"]
    result = CliRunner().invoke(ingest_command, [*map(str, files), str(bad), *base])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["files"], report["accepted"], report["quarantined"]) == (3, 2, 1)
    assert (
        report["problems"][0]["file"] == str(bad) and "not a known settlement report" in report["problems"][0]["reason"]
    )
    again = CliRunner().invoke(ingest_command, [*map(str, files), *base])
    assert again.exit_code == 0 and json.loads(again.stdout)["received_again"] == 2
    nothing = CliRunner().invoke(ingest_command, ["--state-dir", str(tmp_path / "state")])
    assert nothing.exit_code == 2 and "give files or folders" in nothing.output


def test_cli_says_a_report_downloaded_again_was_received_again(intake_world, tmp_path) -> None:
    world, _ = intake_world
    report = sorted((world / "settlements" / "stripe").glob("*.csv"))[0]
    copy = tmp_path / "Itemized payout reconciliation (1).csv"
    copy.write_bytes(report.read_bytes().replace(b"\n", b"\r\n"))
    base = ["--state-dir", str(tmp_path / "state"), "--no-publish"]
    taken = json.loads(CliRunner().invoke(ingest_command, [str(report), *base, "--json"]).stdout)
    shown = CliRunner().invoke(ingest_command, [str(copy), *base])
    assert shown.exit_code == 0, shown.output
    said = " ".join(shown.output.split())
    assert "received again" in said and "nothing done" in said
    assert report.name in "".join(shown.output.split())
    again = json.loads(CliRunner().invoke(ingest_command, [str(copy), *base, "--json"]).stdout)
    assert (again["received_again"], again["accepted"]) == (1, 0)
    assert again["lines_already_held"] == taken["lines_by_format"]["stripe"] > 0
    assert again["received_again_files"][0]["file"] == str(copy)


def test_cli_watch_once_processes_the_inbox_and_exits(intake_world, tmp_path) -> None:
    world, _ = intake_world
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for path in world_files(world)[:2]:
        shutil.copy(path, inbox / path.name)
    result = CliRunner().invoke(
        ingest_command,
        ["--watch", str(inbox), "--once", "--no-publish", "--json", "--state-dir", str(tmp_path / "state")],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 2
    assert len(list((inbox / "processed").iterdir())) == 2 and not [p for p in inbox.iterdir() if p.is_file()]


@pytest.mark.slow
def test_watcher_process_stops_cleanly_on_sigterm(tmp_path) -> None:
    inbox, staging = tmp_path / "inbox", tmp_path / "staging"
    staging.mkdir()
    command = [
        sys.executable,
        "-m",
        "clearline.pipelines.cli",
        "ingest",
        "--watch",
        str(inbox),
        "--no-publish",
        "--state-dir",
        str(tmp_path / "state"),
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 60
        while not inbox.is_dir() and time.monotonic() < deadline:
            time.sleep(0.1)
        (staging / "garbled.sta").write_text(":20:X\r\n:25:ACC\r\n")  # unreadable: quarantined at once
        os.replace(staging / "garbled.sta", inbox / "garbled.sta")
        kept = tmp_path / "state" / "quarantine" / "garbled.sta.report.txt"
        while not kept.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert kept.exists() and not (inbox / "garbled.sta").exists()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "quarantined garbled.sta" in " ".join(err.split()) and "Traceback" not in err
