"""The intake ledger: every file seen, by SHA-256, with its outcome, and every item held.

SQLite rather than DuckDB: the running pipeline's inbox watcher and a person's `clearline
ingest` may both record files at the same time, and SQLite takes writers from several
processes (it locks briefly), where a DuckDB file is owned by one process. The primary key
on the hash is what makes the same bytes twice a no-op; the `held` table is what makes the
same content twice one, whatever its bytes: every processor line and bank statement taken
in, by what its sender calls it and a fingerprint of what it says
(`clearline.recon.intake.identity`), recorded in the same transaction as its file, so a
crash before the record leaves the file to be taken in again, whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from clearline.recon.intake.identity import Held, Record

FILE_NAME = "intake.sqlite"  # in the intake's state folder, which is the recon state folder
# What finance sees of a refused file: its name and format, why, where it is kept (its
# validation report beside it), how many lines it held and when it came.
QUARANTINED_SCHEMA = {
    "name": pl.String(),
    "format": pl.String(),
    "reason": pl.String(),
    "lines": pl.Int64(),
    "kept_as": pl.String(),
    "recorded_at": pl.String(),
    "sha256": pl.String(),
}

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
);
CREATE TABLE IF NOT EXISTS held (
    identity    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    name        TEXT NOT NULL,
    line_no     INTEGER NOT NULL,
    PRIMARY KEY (identity, fingerprint)
) WITHOUT ROWID;
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
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction (committed, or rolled back on an error), closed
        after it: a large report asks once per slice of its lines, and connections left
        to the garbage collector kept their temporary tables and caches."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

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
        items: Iterable[Record] = (),
    ) -> bool:
        """Record a file's outcome and the items it brought; False when the hash was
        already recorded (first one wins, for the file and for each item's content)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                (sha256, name, fmt, outcome, lines, reason, str(report) if report else None, now),
            )
            db.executemany(
                "INSERT INTO held VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                ((identity, fingerprint, sha256, name, line_no) for identity, fingerprint, line_no in items),
            )
            return cursor.rowcount == 1

    def held(self, identities: Sequence[str]) -> dict[str, list[Held]]:
        """Every content held under each of `identities` that is held at all."""
        found: dict[str, list[Held]] = {}
        with self._connect() as db:
            db.execute("CREATE TEMP TABLE wanted (identity TEXT PRIMARY KEY) WITHOUT ROWID")
            db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((i,) for i in identities))
            rows = db.execute(
                "SELECT h.identity, h.fingerprint, h.name, h.line_no FROM held h JOIN wanted USING (identity)"
            )
            for identity, fingerprint, name, line_no in rows:
                found.setdefault(identity, []).append(Held(fingerprint, name, line_no))
        return found

    def quarantined(self) -> pl.DataFrame:
        """Every file refused, oldest first (`QUARANTINED_SCHEMA`)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, format, reason, lines, report, recorded_at, sha256 FROM files"
                " WHERE outcome = 'quarantined' ORDER BY recorded_at, name"
            ).fetchall()
        return pl.DataFrame(rows, schema=QUARANTINED_SCHEMA, orient="row")

    def all(self) -> list[Seen]:
        with self._connect() as db:
            return [Seen(*row) for row in db.execute("SELECT * FROM files ORDER BY recorded_at, name")]


def quarantined_files(state_dir: Path) -> pl.DataFrame:
    """Every file intake refused in `state_dir`, oldest first: what finance must see did
    not come in. No rows (and no registry made) where intake never ran."""
    path = Path(state_dir) / FILE_NAME
    return Registry(path).quarantined() if path.is_file() else pl.DataFrame(schema=QUARANTINED_SCHEMA)
