"""Validated lines to Kafka (`payments.settlements`): one JSON message per line, and one
per bank statement.

A processor line is keyed by its payout id, a bank line by its account, so a payout batch
or a statement stays in one partition and in order. Each message carries the line's
columns (money as minor units + currency, dates ISO 8601), its kind and format, and the
source file's SHA-256 with the line number: (kind, file_sha256, line_no) identifies a
message, so a consumer drops one it has seen (a re-run after a crash before the intake
ledger recorded the file publishes the same messages again: at least once, never lost).
A bank file's statements follow its lines as messages of kind "statement" (the columns of
`clearline.recon.lines.STATEMENT_SCHEMA`, keyed by account like its lines): their stated
balances are what balance continuity checks.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.model import ParsedFile


def messages(parsed: ParsedFile, sha256: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) per line, then per statement of a bank file."""
    key = "payout_id" if parsed.kind == "processor" else "account"
    parts = ((parsed.kind, chunk) for chunk in parsed.chunks(CHUNK_ROWS))  # a chunk at a time when spilled
    for kind, rows in itertools.chain(parts, [("statement", parsed.statements)] if parsed.kind == "bank" else []):
        for row in rows.iter_rows(named=True):
            body = {
                "kind": kind,
                "format": parsed.format,
                "file_sha256": sha256,
                **{k: v.isoformat() if isinstance(v, (date, datetime)) else v for k, v in row.items()},
            }
            yield str(row[key]).encode(), json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Delivery:
    delivered: int = 0
    failed: int = 0
    errors: Counter = field(default_factory=Counter)


def publish(producer, topic: str, parsed: ParsedFile, sha256: str, timeout_s: float = 60) -> Delivery:
    """Produce every line and wait for every delivery report; `producer` is a
    producer (`clearline.pipelines.connectors.produce.producer`: idempotent, acks=all, made by the caller)."""
    report = Delivery()

    def delivered(err, _msg) -> None:
        if err is None:
            report.delivered += 1
        else:
            report.failed += 1
            report.errors[str(err)] += 1

    for key, value in messages(parsed, sha256):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
            except Exception as exc:  # KafkaException: unknown topic and the like, reported per line
                delivered(exc, None)
                break
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    if remaining:
        report.failed += remaining
        report.errors[f"no delivery report within {timeout_s:g} s"] += remaining
    return report
