"""The intake ledger: every file seen, by SHA-256, with its outcome.

SQLite rather than DuckDB: the running pipeline's inbox watcher and a person's `clearline
ingest` may both record files at the same time, and SQLite takes writers from several
processes (it locks briefly), where a DuckDB file is owned by one process. The primary key
on the hash is what makes the same file twice a no-op.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    sha256      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    format      TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('accepted', 'quarantined')),
    lines       INTEGER NOT NULL,
    reason      TEXT,
    report      TEXT,
    recorded_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Seen:
    sha256: str
    name: str
    format: str | None
    outcome: str
    lines: int
    reason: str | None
    report: str | None
    recorded_at: str


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def seen(self, sha256: str) -> Seen | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM files WHERE sha256 = ?", (sha256,)).fetchone()
        return Seen(*row) if row else None

    def record(
        self,
        sha256: str,
        name: str,
        fmt: str | None,
        outcome: str,
        lines: int,
        reason: str | None = None,
        report: Path | None = None,
    ) -> bool:
        """Record a file's outcome; False when the hash was already recorded (first one wins)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                (sha256, name, fmt, outcome, lines, reason, str(report) if report else None, now),
            )
            return cursor.rowcount == 1

    def all(self) -> list[Seen]:
        with self._connect() as db:
            return [Seen(*row) for row in db.execute("SELECT * FROM files ORDER BY recorded_at, name")]
