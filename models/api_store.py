"""The decision API's durable record: every decision it made, in SQLite (WAL), keyed by
decision id and unique per (tenant, order_id).

Idempotency rests on that unique constraint, not on a check in Python: two workers (or
two retries racing) deciding the same order both try to insert, one wins, and the loser
reads the winner's record back. A retry with the same request body gets the stored
decision; a different body under the same order_id is a conflict, never a second
decision. WAL lets every worker process read while one writes; `synchronous=NORMAL`
makes a commit survive a crash of the process (not of the machine's power): the commit
is in the WAL file, in the operating system's hands, before the API answers, without an
fsync per decision. A power loss may lose the last decisions answered (never corrupts
the file); a deployment that must keep those too sets `synchronous=FULL` and pays an
fsync per decision.

Checkpoints (copying the WAL back into the database file, with an fsync) run on a
background thread of each process, not on the request that happens to cross SQLite's
1,000-page threshold: that request would otherwise wait for the fsync (several ms, the
API's p99). SQLite releases the GIL while it checkpoints, and a PASSIVE checkpoint never
blocks the writers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger("clearline.api")

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id  TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    record       TEXT NOT NULL,          -- the decision record as JSON
    UNIQUE (tenant, order_id)
)
"""


@dataclass(frozen=True)
class Stored:
    decision_id: str
    tenant: str
    request_hash: str
    record: bytes  # JSON, exactly as first answered


class DecisionStore:
    """One connection per process for the requests (uvicorn runs the app's handlers on
    one thread), one for the checkpoints."""

    def __init__(self, path: Path, checkpoint_every_s: float = 1.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA wal_autocheckpoint=0")  # see the module doc: the checkpointer does it
        self.db.execute(SCHEMA)
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoints, args=(checkpoint_every_s,), name="decision-store-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoints(self, every_s: float) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        try:
            while not self._stop.wait(every_s):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:  # e.g. another process's checkpoint holds it: the next round does it
                    log.warning("decision store checkpoint failed; retrying in %.1f s", every_s, exc_info=True)
        finally:
            db.close()

    def by_order(self, tenant: str, order_id: str) -> Stored | None:
        row = self.db.execute(
            "SELECT decision_id, tenant, request_hash, record FROM decisions WHERE tenant = ? AND order_id = ?",
            (tenant, order_id),
        ).fetchone()
        return None if row is None else Stored(row[0], row[1], row[2], row[3].encode())

    def by_id(self, decision_id: str) -> Stored | None:
        row = self.db.execute(
            "SELECT decision_id, tenant, request_hash, record FROM decisions WHERE decision_id = ?", (decision_id,)
        ).fetchone()
        return None if row is None else Stored(row[0], row[1], row[2], row[3].encode())

    def add(self, decision_id: str, tenant: str, order_id: str, request_hash: str, record: dict[str, Any]) -> Stored:
        """Store a new decision; if the order was decided meanwhile, the one stored first."""
        body = msgspec.json.encode(record).decode()  # compact JSON, several times faster than json.dumps
        try:
            self.db.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?)", (decision_id, tenant, order_id, request_hash, body)
            )
        except sqlite3.IntegrityError:
            existing = self.by_order(tenant, order_id)
            if existing is None:  # the same decision id under another order: ids are unique per order
                raise
            return existing
        return Stored(decision_id, tenant, request_hash, body.encode())

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM decisions").fetchone()[0]

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join()
        self.db.close()
