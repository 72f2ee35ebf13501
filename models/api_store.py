"""The decision API's durable record: every decision it made, in SQLite (WAL), keyed by
decision id and unique per (tenant, order_id).

Idempotency rests on that unique constraint, not on a check in Python: two workers (or
two retries racing) deciding the same order both try to insert, one wins, and the loser
reads the winner's record back. A retry with the same request body gets the stored
decision; a different body under the same order_id is a conflict, never a second
decision.

Durable before the answer: `synchronous=FULL`, so a commit returns only once the WAL is
fsynced (a decision answered survives a crash of the machine, not only of the process).
An fsync costs milliseconds on this machine's disk, so the server does not pay one per
decision: `add_durably` hands the record to one writer thread per process, which takes
every record waiting when it is free, inserts them in one transaction and commits once
(group commit); each request's answer waits for its group's commit. Records that arrive
while a group is being fsynced form the next group, so the fsyncs per second stay about
constant as the load grows, and the cost per record falls. `add` (one record, its own
commit) is the same rule for callers without an event loop.

The records one turn of the event loop makes are handed to the writer together, at the
end of that turn, with one wake-up. Handed one at a time, the first record woke the
writer, which then took the GIL each time the loop let go of it (at every SQLite read of
the next requests) and committed groups of one or two: with 8 requests in flight, 2.3
records a commit and ~100 µs of writer CPU per record, plus the loop's share of the GIL
hand-offs.

Checkpoints (copying the WAL back into the database file, with an fsync) run on a
background thread of each process, not on the request that happens to cross SQLite's
1,000-page threshold: that request would otherwise wait for the fsync (several ms, the
API's p99). SQLite releases the GIL while it checkpoints, and a PASSIVE checkpoint never
blocks the writers.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from clearline.sqlite_wal import to_wal

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
    """One connection per process for the requests' reads (uvicorn runs the app's
    handlers on one thread), one for the group-committing writer thread (started on the
    first `add_durably`), one for the checkpoints."""

    def __init__(self, path: Path, checkpoint_every_s: float = 1.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = _connect(path)
        to_wal(self.db, 30)  # the API's workers open it at the same instant (clearline.sqlite_wal)
        self.db.execute("PRAGMA wal_autocheckpoint=0")  # see the module doc: the checkpointer does it
        self.db.execute(SCHEMA)
        self.commits = 0  # group commits made by the writer thread (records / commits: the group size)
        self._pending: queue.SimpleQueue = queue.SimpleQueue()  # (loop, [(future, row)]) per loop turn; None: stop
        self._turns: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, tuple]]] = {}  # not yet handed over
        self._writer: threading.Thread | None = None
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
        return _by_order(self.db, tenant, order_id)

    def by_id(self, decision_id: str) -> Stored | None:
        row = self.db.execute(
            "SELECT decision_id, tenant, request_hash, record FROM decisions WHERE decision_id = ?", (decision_id,)
        ).fetchone()
        return None if row is None else Stored(row[0], row[1], row[2], row[3].encode())

    def add(self, decision_id: str, tenant: str, order_id: str, request_hash: str, record: dict[str, Any]) -> Stored:
        """Store a new decision, committed (fsynced) when this returns; if the order was
        decided meanwhile, the one stored first."""
        got = _insert(self.db, [(decision_id, tenant, order_id, request_hash, _encode(record))])[0]
        if isinstance(got, Exception):
            raise got
        return got

    async def add_durably(
        self, decision_id: str, tenant: str, order_id: str, request_hash: str, record: dict[str, Any]
    ) -> Stored:
        """`add` from an event loop: the record joins the next group commit, and this
        returns once that commit is on disk, without blocking the loop meanwhile."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if self._writer is None:
            self._writer = threading.Thread(target=self._writes, name="decision-store-writer", daemon=True)
            self._writer.start()
        turn = self._turns.get(loop)
        if turn is None:  # the first record of this turn of the loop: hand the turn's over when it ends
            turn = self._turns[loop] = []
            loop.call_soon(self._hand_over, loop)
        turn.append((done, (decision_id, tenant, order_id, request_hash, _encode(record))))
        return await done

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop, after the requests of its turn: their records to the writer, at once."""
        self._pending.put((loop, self._turns.pop(loop)))

    def _writes(self) -> None:
        """The writer thread: a group is everything waiting when the last commit ended."""
        db = _connect(self.path)
        try:
            stop = False
            while not stop and (first := self._pending.get()) is not None:
                turns = [first]
                while not self._pending.empty():
                    if (more := self._pending.get()) is None:  # close(): after this group
                        stop = True
                        break
                    turns.append(more)
                group = [row for _, records in turns for _, row in records]
                try:
                    results: list[Stored | BaseException] = _insert(db, group)
                    self.commits += 1
                except Exception as exc:  # the commit failed: every request of the group gets the error
                    log.exception("decision store: a group commit of %d records failed", len(group))
                    results = [exc] * len(group)
                settled: dict[asyncio.AbstractEventLoop, list] = {}
                answers = iter(results)
                for loop, records in turns:
                    settled.setdefault(loop, []).extend((done, next(answers)) for done, _ in records)
                for loop, mine in settled.items():
                    try:
                        loop.call_soon_threadsafe(_settle, mine)
                    except RuntimeError:  # that loop is closed: nobody waits for these answers any more
                        pass
        finally:
            db.close()

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM decisions").fetchone()[0]

    def close(self) -> None:
        if self._writer is not None:
            self._pending.put(None)  # after every record already handed over
            self._writer.join()
        self._stop.set()
        self._checkpointer.join()
        self.db.close()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    db.execute("PRAGMA synchronous=FULL")  # a commit is fsynced before it returns (see the module doc)
    return db


def _encode(record: dict[str, Any]) -> str:
    return msgspec.json.encode(record).decode()  # compact JSON, several times faster than json.dumps


def _by_order(db: sqlite3.Connection, tenant: str, order_id: str) -> Stored | None:
    row = db.execute(
        "SELECT decision_id, tenant, request_hash, record FROM decisions WHERE tenant = ? AND order_id = ?",
        (tenant, order_id),
    ).fetchone()
    return None if row is None else Stored(row[0], row[1], row[2], row[3].encode())


def _insert(db: sqlite3.Connection, rows: list[tuple[str, str, str, str, str]]) -> list[Stored | BaseException]:
    """Insert the rows in one transaction, one commit; for each, what was stored: the row
    itself, or the decision stored first for its (tenant, order_id) — also one earlier in
    the same group. A decision id already used by another order is that row's error."""
    out: list[Stored | BaseException] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for decision_id, tenant, order_id, request_hash, body in rows:
            if db.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (decision_id, tenant, order_id, request_hash, body),
            ).rowcount:
                out.append(Stored(decision_id, tenant, request_hash, body.encode()))
            elif (existing := _by_order(db, tenant, order_id)) is not None:
                out.append(existing)
            else:
                out.append(sqlite3.IntegrityError(f"decision id {decision_id} is already stored for another order"))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return out


def _settle(results: list[tuple[asyncio.Future, Stored | BaseException]]) -> None:
    """On the loop: each waiting request gets its stored decision (or its error)."""
    for done, got in results:
        if done.cancelled():  # the client went away meanwhile: the decision is stored all the same
            continue
        if isinstance(got, BaseException):
            done.set_exception(got)
        else:
            done.set_result(got)
