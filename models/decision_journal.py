"""The risk flow's durable record of what it has decided (and which events came late):
one SQLite database under the state folder, and Parquet log files written from it.

Why a database beside the logs: Bytewax resumes from its last snapshot and re-emits
everything since, so the same request reaches the sink again after a crash. The
database's unique key on (kind, key) — for a decision, the request's event_id — is what
makes the second one a no-op, across workers and processes of one machine (SQLite in WAL
mode takes writers from several processes, one at a time).

Each entry goes through three steps, each recorded, so a crash between two is finished
at the next start instead of repeated or lost:

1. inserted (unique key, a sequence number, the full record as JSON) — committed;
2. written to a Parquet log file named by its shard and sequence range, then marked
   `logged` (a file rewritten after a crash has the same name and the same rows);
3. for decisions, produced to Kafka and flushed, then marked `sent` (see
   `clearline.pipelines.connectors.decision_sink` for how a restart finds out what reached the topic).

Layout under the state folder: `journal.sqlite`, `<kind>/shard-<w>-<first>-<last>.parquet`.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import msgspec
import polars as pl

from clearline.sqlite_wal import to_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,
    key     TEXT NOT NULL,
    shard   INTEGER NOT NULL,
    record  TEXT NOT NULL,
    logged  INTEGER NOT NULL DEFAULT 0,
    sent    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, key)
);
CREATE INDEX IF NOT EXISTS entries_pending ON entries (kind, shard, logged, sent);
CREATE TABLE IF NOT EXISTS marks (
    shard INTEGER NOT NULL,
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (shard, name)
);
"""


BUSY_S = 60  # how long a write waits for another process's


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    key: str
    record: dict[str, Any]
    text: str  # the record as JSON, encoded once: the database, the log and the topic carry it


def _json(record: dict[str, Any]) -> str:
    return msgspec.json.encode(record).decode()


class Journal:
    """One worker's view of the journal: entries of one `kind`, written by shard `shard`."""

    def __init__(
        self,
        state_dir: Path,
        kind: str,
        shard: int,
        log_row: Callable[[dict[str, Any]], dict[str, Any]],
        log_schema: dict[str, pl.DataType],
    ):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.kind, self.shard = kind, shard
        self.log_dir = state_dir / kind
        self.log_dir.mkdir(exist_ok=True)
        self._log_row, self._log_schema = log_row, log_schema
        self.con = sqlite3.connect(state_dir / "journal.sqlite", timeout=BUSY_S, isolation_level=None)
        to_wal(self.con, BUSY_S)  # two processes' first switches can cross (clearline.sqlite_wal)
        self.con.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a process crash
        self.con.executescript(_SCHEMA)

    def add(self, entries: Iterable[tuple[str, dict[str, Any]]]) -> list[Entry]:
        """Insert (key, record) pairs in one transaction; returns the ones that were new
        (the first of a key wins, also within one call)."""
        fresh = []
        self.con.execute("BEGIN IMMEDIATE")
        try:
            for key, record in entries:
                text = _json(record)
                got = self.con.execute(
                    "INSERT INTO entries (kind, key, shard, record) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (kind, key) DO NOTHING RETURNING seq",
                    (self.kind, key, self.shard, text),
                ).fetchone()
                if got:
                    fresh.append(Entry(got[0], key, record, text))
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")
        return fresh

    def write_log(self, entries: list[Entry]) -> None:
        """Write the entries' log file (atomically) and mark them logged."""
        if not entries:
            return
        first, last = min(e.seq for e in entries), max(e.seq for e in entries)
        path = self.log_dir / f"shard-{self.shard}-{first:012d}-{last:012d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        frame = pl.DataFrame(
            [{"seq": e.seq, **self._log_row(e.record), "record": e.text} for e in entries],
            schema={"seq": pl.Int64(), **self._log_schema, "record": pl.String()},
            orient="row",
        )
        frame.write_parquet(tmp)
        os.replace(tmp, path)
        self._mark("logged", entries)

    def mark_sent(self, entries: list[Entry]) -> None:
        self._mark("sent", entries)

    def _mark(self, column: str, entries: list[Entry]) -> None:
        self.con.executemany(f"UPDATE entries SET {column} = 1 WHERE seq = ?", [(e.seq,) for e in entries])

    def pending(self, column: str) -> list[Entry]:
        """This shard's entries a crash left not yet `logged` or not yet `sent`."""
        got = self.con.execute(
            f"SELECT seq, key, record FROM entries WHERE kind = ? AND shard = ? AND {column} = 0 ORDER BY seq",
            (self.kind, self.shard),
        ).fetchall()
        return [Entry(seq, key, msgspec.json.decode(rec), rec) for seq, key, rec in got]

    def get_mark(self, name: str) -> str | None:
        got = self.con.execute("SELECT value FROM marks WHERE shard = ? AND name = ?", (self.shard, name)).fetchone()
        return got[0] if got else None

    def set_mark(self, name: str, value: str) -> None:
        self.con.execute(
            "INSERT INTO marks VALUES (?, ?, ?) ON CONFLICT (shard, name) DO UPDATE SET value = excluded.value",
            (self.shard, name, value),
        )

    def close(self) -> None:
        self.con.close()


def read_log(state_dir: Path, kind: str) -> pl.DataFrame:
    """Every log file of `kind`, in sequence order (empty frame when there are none)."""
    files = sorted((state_dir / kind).glob("shard-*.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed").sort("seq")
