"""A card-number scanner for tests: finds Luhn-valid 13–19 digit numbers at rest or in flight.

Written apart from `clearline.events` on purpose: a test that checked the masker with the
masker could not fail. It reads a value every way a number can hide in it:

* the bytes as they are (each byte one character, so text that is not UTF-8 is read too);
* JSON `\\uXXXX` escapes decoded ("\\u0034\\u0031…" is 41…);
* UTF-16 and UTF-32, both byte orders, at every alignment (a NUL beside every digit).

A number is digits in groups joined by single spaces or dashes ("4111 1111 1111 1111",
"4111-1111-1111-1111"); any run of whole consecutive groups with 13 to 19 digits in all
that passes the Luhn check is a finding (except inside a hex digest of 32 characters or
more: a hash holds such runs by chance). Findings are reported masked to their last four,
with where they were found, so a failing test does not print card numbers either.

Use `find_pans(value)` on one value, or the `scan_*` helpers on what a run left behind:
Kafka topics (values, keys, header names and values), DuckDB and SQLite databases (every
column of every table), Parquet files (every column) and text files (logs).
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

_RUN = re.compile(r"[0-9]+(?:[ \-][0-9]+)*")
# A hex digest (a hash-chain link, a SHA-256) can hold 13+ decimal digits in a row that pass
# the Luhn check by chance (about 1 in 500 positions): it is no card number.
_DIGEST = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]*[a-f][0-9a-f]*(?![0-9A-Za-z])")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_WIDE = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


@dataclass(frozen=True)
class Finding:
    where: str
    masked: str  # the number masked to its last four digits

    def __str__(self) -> str:
        return f"{self.where}: {self.masked}"


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _numbers(text: str) -> list[str]:
    """Luhn-valid 13–19 digit numbers made of whole consecutive groups of a digit run."""
    found = []
    text = _DIGEST.sub(lambda m: " " * len(m.group()) if len(m.group()) >= 32 else m.group(), text)
    for run in _RUN.finditer(text):
        groups = re.split(r"[ \-]", run.group())
        for i in range(len(groups)):
            digits = ""
            for group in groups[i : i + 19]:  # 19 groups hold at least 19 digits
                digits += group
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn(digits):
                    found.append(digits)
    return found


def _views(data: bytes) -> Iterable[str]:
    text = data.decode("latin-1")
    yield text
    if "\\u" in text:
        yield _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    if b"\x00" in data:
        for codec in _WIDE:
            width = 2 if "16" in codec else 4
            for shift in range(width):
                chunk = data[shift:]
                yield chunk[: len(chunk) - len(chunk) % width].decode(codec, "ignore")


def find_pans(value: Any, where: str = "value") -> list[Finding]:
    """Card numbers in one value (bytes, text, or anything with a str())."""
    if value is None:
        return []
    if isinstance(value, memoryview):
        value = value.tobytes()
    data = value if isinstance(value, (bytes, bytearray)) else str(value).encode("utf-8", "surrogatepass")
    seen: dict[str, Finding] = {}
    for view in _views(bytes(data)):
        for digits in _numbers(view):
            seen.setdefault(digits, Finding(where, "*" * (len(digits) - 4) + digits[-4:]))
    return list(seen.values())


def scan_values(rows: Iterable[tuple[str, Any]]) -> list[Finding]:
    """(where, value) pairs → every finding."""
    return [f for where, value in rows for f in find_pans(value, where)]


def scan_kafka(bootstrap: str, topics: Iterable[str]) -> list[Finding]:
    """Every message of each topic, from offset 0 to its end now: value, key and headers."""
    from confluent_kafka import Consumer, TopicPartition

    findings: list[Finding] = []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"pan-scan-{uuid.uuid4().hex[:8]}"})
    try:
        for topic in topics:
            parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            for p in parts:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, p, low)])
                read = low
                while read < high:
                    for m in consumer.consume(500, timeout=5):
                        if m.error() is not None:
                            continue
                        read = m.offset() + 1
                        findings += scan_messages([m])
    finally:
        consumer.close()
    return findings


def scan_messages(messages: Iterable[Any]) -> list[Finding]:
    """Consumed Kafka messages (confluent-kafka `Message`s): value, key and headers."""
    rows = (row for m in messages for row in _message_rows(f"kafka {m.topic()}[{m.partition()}]@{m.offset()}", m))
    return scan_values(rows)


def _message_rows(where: str, m: Any) -> list[tuple[str, Any]]:
    rows = [(f"{where} value", m.value()), (f"{where} key", m.key())]
    return rows + [(f"{where} header {k!r}", k.encode() + b"=" + (v or b"")) for k, v in m.headers() or []]


def scan_duckdb(path: Path) -> list[Finding]:
    """Every column of every table of a DuckDB file (opened read-only)."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return _scan_tables(con, [r[0] for r in con.execute("SHOW TABLES").fetchall()], f"duckdb {path}")
    finally:
        con.close()


def scan_sqlite(path: Path) -> list[Finding]:
    """Every column of every table of a SQLite file."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        return _scan_tables(con, tables, f"sqlite {path}")
    finally:
        con.close()


def _scan_tables(con: Any, tables: list[str], where: str) -> list[Finding]:
    findings: list[Finding] = []
    for table in tables:
        cursor = con.execute(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        for i, row in enumerate(cursor.fetchall()):
            findings += scan_values((f"{where} {table}[{i}].{n}", v) for n, v in zip(names, row))
    return findings


def scan_parquet(path: Path) -> list[Finding]:
    """Every column of a Parquet file."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return scan_values(
        (f"parquet {path} [{i}].{name}", value)
        for name in table.column_names
        for i, value in enumerate(table.column(name).to_pylist())
    )


def scan_files(paths: Iterable[Path]) -> list[Finding]:
    """Text and binary files as bytes (logs); Parquet and database files by their values."""
    findings: list[Finding] = []
    for path in paths:
        if path.suffix == ".parquet":
            findings += scan_parquet(path)
        elif path.suffix in (".duckdb", ".db", ".sqlite", ".sqlite3") and path.stat().st_size:
            findings += (scan_duckdb if path.suffix == ".duckdb" else scan_sqlite)(path)
        elif path.is_file():
            findings += find_pans(path.read_bytes(), f"file {path}")
    return findings


def scan_tree(root: Path) -> list[Finding]:
    """Every file under `root` (`scan_files`)."""
    return scan_files(p for p in sorted(root.rglob("*")) if p.is_file())
