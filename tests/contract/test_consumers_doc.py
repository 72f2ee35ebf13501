"""The code in docs/consumers.md runs and says what it claims: the consumer reads
decisions from a real topic with plain confluent-kafka, checks each against the exported
schema (a malformed one is reported, not acted on) and acts once per decision id; the
signing snippet signs exactly as Clearline verifies."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clearline import admission, signing
from tests.contract.samples import decisions
from tests.contract.schemas import exported

DOC = Path(__file__).resolve().parents[2] / "docs" / "consumers.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_names_the_files_an_export_writes():
    text = DOC.read_text(encoding="utf-8")
    written = {p.relative_to(exported()).as_posix() for p in exported().rglob("*") if p.is_file()}
    for name in re.findall(r"`contract/([\w./-]+)`", text):
        if "<" not in name:
            assert name in written, f"docs/consumers.md names {name}, which an export does not write"


def test_the_signing_snippet_signs_as_clearline_verifies(small_world):
    world, _ = small_world
    body = (world / "events" / "events.jsonl").read_bytes().splitlines()[0]
    tenant = json.loads(body)["reseller_id"]
    snippet: dict = {}
    exec(python_blocks()[1], snippet)
    key = bytes(range(32))
    signature = snippet["sign"](body, key)
    assert signature == signing.sign(body, key)
    headers = [(signing.TENANT_HEADER, tenant.encode()), (signing.SIGNATURE_HEADER, signature.encode())]
    assert snippet["verify"](body, headers, {tenant: key})
    assert not snippet["verify"](body + b" ", headers, {tenant: key}), "other bytes, other signature"
    assert not snippet["verify"](body, headers, {"someone-else": key})
    admitted = admission.admit(body, headers, signing.TenantKeys({tenant: key}))
    assert not isinstance(admitted, admission.Refusal), admitted


@pytest.mark.kafka
def test_the_consumer_snippet_reads_checks_and_deduplicates_decisions(kafka_bootstrap, tmp_path):
    topic = f"test.consumers.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    try:
        good = decisions()
        broken = {**good[0], "decision_id": "dec_broken", "amount": {"minor": 2500.5, "currency": "EUR"}}
        _produce(kafka_bootstrap, topic, [good[0], good[0], broken, good[1]])
        script = tmp_path / "read_decisions.py"
        script.write_text(python_blocks()[0], encoding="utf-8")
        env = {
            **os.environ,
            "CONTRACT_DIR": str(exported()),
            "DECISIONS_TOPIC": topic,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "GROUP_ID": f"doc-{uuid.uuid4().hex[:8]}",
        }
        acted, errors = _run_until(script, env, lines=2, timeout_s=90)
    finally:
        admin.delete_topics([topic])[topic].result(30)
    assert acted == [
        f"{good[0]['decision_id']} review 250000 EUR",
        f"{good[1]['decision_id']} approve 120000 USD",
    ], errors
    assert f"invalid decision at {topic}[0]@2" in errors and "$.amount.minor" in errors


def _produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for record in records:
        producer.produce(topic, json.dumps(record).encode(), record["merchant_id"].encode())
    assert producer.flush(30) == 0


def _run_until(script: Path, env: dict, lines: int, timeout_s: float) -> tuple[list[str], str]:
    """Run the doc's consumer (it never stops by itself) until it has printed `lines`
    lines, then stop it; its stdout lines and its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-u", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [out.put(line.rstrip("\n")) for line in proc.stdout], daemon=True).start()
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < lines and time.monotonic() < deadline and proc.poll() is None:
            try:
                got.append(out.get(timeout=0.5))
            except queue.Empty:
                pass
        time.sleep(1.0)  # anything it would wrongly print after them (a duplicate) shows up too
        while not out.empty():
            got.append(out.get())
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return got, proc.stderr.read()
