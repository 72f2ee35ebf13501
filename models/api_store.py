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

A server of several worker processes shares one writer (`SharedWriter`, a thread of the
process that starts the workers, on a Unix socket): each worker's store is made with its
address and hands each turn's records over that socket instead of to a thread of its
own. Why: SQLite lets one connection write at a time, so two workers' writers took turns
holding the write lock through an fsync each (2.9 ms median, 12.7 ms p99 on this
machine's disk under load), and a request could wait out the other worker's commit
before its own; one writer commits both workers' records in one group, one fsync. The
answer still waits for its group's commit; the reply carries what was stored, so the
idempotency rules are the ones above. A worker whose link to the writer breaks fails
the requests waiting on it (their records may or may not be stored: a retry gets the
stored decision or makes it) and connects again on its next record.

Checkpoints (copying the WAL back into the database file, with an fsync) run on a
background thread of each process, not on the request that happens to cross SQLite's
1,000-page threshold: that request would otherwise wait for the fsync (several ms, the
API's p99). SQLite releases the GIL while it checkpoints, and a PASSIVE checkpoint never
blocks the writers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import selectors
import shutil
import socket
import sqlite3
import struct
import tempfile
import threading
from collections import deque
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

    def __init__(self, path: Path, checkpoint_every_s: float = 1.0, writer: str | None = None):
        """`writer`: the address of a `SharedWriter` of the same database, which then
        commits this process's `add_durably` records (None: a writer thread of its own)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.writer = path, writer
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}  # to the shared writer, one per loop
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
        if self.writer is not None:
            link = self._links.get(loop)
            if link is None or link.lost:
                link = self._links[loop] = _Link(loop)
                try:
                    await loop.create_unix_connection(lambda: link, self.writer)
                except OSError as exc:  # this request fails; the next one connects again
                    self._links.pop(loop, None)
                    link.connected.set_exception(exc)
                    link.connected.exception()  # retrieved: requests that did not wait for it need not see it
                    raise
            await link.connected
        elif self._writer is None:
            self._writer = threading.Thread(target=self._writes, name="decision-store-writer", daemon=True)
            self._writer.start()
        done = loop.create_future()
        turn = self._turns.get(loop)
        if turn is None:  # the first record of this turn of the loop: hand the turn's over when it ends
            turn = self._turns[loop] = []
            loop.call_soon(self._hand_over, loop)
        turn.append((done, (decision_id, tenant, order_id, request_hash, _encode(record))))
        return await done

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop, after the requests of its turn: their records to the writer, at once."""
        if self.writer is not None:
            self._links[loop].send(self._turns.pop(loop))
        else:
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
                results, committed = _group_commit(db, [row for _, records in turns for _, row in records])
                self.commits += committed
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
        for link in self._links.values():
            link.close()
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


def _group_commit(db: sqlite3.Connection, group: list[tuple]) -> tuple[list[Stored | BaseException], bool]:
    """`_insert` of a writer's group, and whether it committed: when the commit itself
    fails, every record of the group gets that error."""
    try:
        return _insert(db, group), True
    except Exception as exc:
        log.exception("decision store: a group commit of %d records failed", len(group))
        return [exc] * len(group), False


def _settle(results: list[tuple[asyncio.Future, Stored | BaseException]]) -> None:
    """On the loop: each waiting request gets its stored decision (or its error)."""
    for done, got in results:
        if done.cancelled():  # the client went away meanwhile: the decision is stored all the same
            continue
        if isinstance(got, BaseException):
            done.set_exception(got)
        else:
            done.set_result(got)


# --------------------------------------------------------------------------- one writer for several processes

_LENGTH = struct.Struct("<I")
_STORED_AS_SENT, _STORED_BEFORE, _FAILED = 0, 1, 2  # what the shared writer answers for a record


def _frame(payload: Any) -> bytes:
    body = msgspec.msgpack.encode(payload)
    return _LENGTH.pack(len(body)) + body


def _frames(buffer: bytearray) -> list[Any]:
    """The complete messages at the start of `buffer`, taken out of it."""
    out, at = [], 0
    while len(buffer) - at >= _LENGTH.size:
        (size,) = _LENGTH.unpack_from(buffer, at)
        if len(buffer) - at - _LENGTH.size < size:
            break
        out.append(msgspec.msgpack.decode(buffer[at + _LENGTH.size : at + _LENGTH.size + size]))
        at += _LENGTH.size + size
    del buffer[:at]
    return out


def _answer(row: tuple, got: Stored | BaseException) -> list:
    """How the shared writer tells a worker what became of one record it sent."""
    if isinstance(got, BaseException):
        return [_FAILED, type(got).__name__, str(got)]
    if got == Stored(row[0], row[1], row[3], row[4].encode()):  # the record itself (the worker has it)
        return [_STORED_AS_SENT]
    return [_STORED_BEFORE, got.decision_id, got.tenant, got.request_hash, got.record]


def _result(row: tuple, answer: list) -> Stored | BaseException:
    """The worker's side of `_answer`: what `_insert` gave the writer for this record.
    An error is rebuilt as the sqlite3 exception of that name (any other as sqlite3.Error)."""
    if answer[0] == _STORED_AS_SENT:
        return Stored(row[0], row[1], row[3], row[4].encode())
    if answer[0] == _STORED_BEFORE:
        return Stored(answer[1], answer[2], answer[3], answer[4])
    kind = getattr(sqlite3, answer[1], None)
    if isinstance(kind, type) and issubclass(kind, sqlite3.Error):
        return kind(answer[2])
    return sqlite3.Error(f"{answer[1]}: {answer[2]}")


class _Link(asyncio.Protocol):
    """One event loop's connection to the `SharedWriter`: a turn's records go as one
    message; the writer answers each message whole, in order, so each answer settles the
    oldest turn still waiting."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.connected: asyncio.Future = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: deque[list[tuple[asyncio.Future, tuple]]] = deque()
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connected.set_result(None)

    def send(self, records: list[tuple[asyncio.Future, tuple]]) -> None:
        if self.lost:
            _settle([(done, ConnectionError("the decision store's shared writer went away")) for done, _ in records])
            return
        self.waiting.append(records)
        self.transport.write(_frame([row for _, row in records]))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for answers in _frames(self.buffer):
            records = self.waiting.popleft()
            _settle([(done, _result(row, answer)) for (done, row), answer in zip(records, answers, strict=True)])

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        gone = ConnectionError(f"the decision store's shared writer went away ({exc or 'closed'})")
        while self.waiting:
            _settle([(done, gone) for done, _ in self.waiting.popleft()])

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            try:
                self.transport.close()
            except RuntimeError:  # its loop is closed already
                pass


class SharedWriter:
    """The group-committing writer of `DecisionStore`, for several processes: a thread
    that takes the records every connected store sends (see the module doc), inserts
    everything that arrived while it was committing in one transaction, commits once
    (fsynced), then answers each message with what was stored for each of its records.
    Listens on a Unix socket in a folder of its own (`address`), removed by `close`."""

    def __init__(self, path: Path):
        self.path = path
        self.commits = 0
        self._folder = tempfile.mkdtemp(prefix="clearline-decision-writer-")
        self.address = os.path.join(self._folder, "writer.sock")
        db = _connect(path)
        to_wal(db, 30)
        db.execute(SCHEMA)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.address)
        self._listener.listen(64)
        self._wake, self._woken = socket.socketpair()  # close() wakes the thread with it
        self._thread = threading.Thread(
            target=self._serve, args=(db,), name="decision-store-shared-writer", daemon=True
        )
        self._thread.start()

    def _serve(self, db: sqlite3.Connection) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        selector.register(self._woken, selectors.EVENT_READ, "stop")
        buffers: dict[socket.socket, bytearray] = {}
        try:
            while True:
                messages: list[tuple[socket.socket, list]] = []  # every message read this round, in order
                for key, _ in selector.select():
                    if key.data == "stop":
                        return
                    if key.data is None:
                        conn, _ = self._listener.accept()
                        selector.register(conn, selectors.EVENT_READ, "conn")
                        buffers[conn] = bytearray()
                        continue
                    data = key.fileobj.recv(1 << 20)
                    if not data:  # that worker closed its link (or ended)
                        selector.unregister(key.fileobj)
                        key.fileobj.close()
                        buffers.pop(key.fileobj)
                        continue
                    buffers[key.fileobj] += data
                    messages += [(key.fileobj, [tuple(r) for r in rows]) for rows in _frames(buffers[key.fileobj])]
                if messages:
                    self._commit(db, messages)
        except Exception:
            log.exception("decision store: the shared writer failed; its workers' records now fail")
        finally:  # the workers see their links close, and their next connects are refused, not left waiting
            self._listener.close()
            for conn in buffers:
                conn.close()
            selector.close()
            db.close()

    def _commit(self, db: sqlite3.Connection, messages: list[tuple[socket.socket, list]]) -> None:
        results, committed = _group_commit(db, [row for _, rows in messages for row in rows])
        self.commits += committed
        answers = iter(results)
        for conn, rows in messages:
            reply = _frame([_answer(row, next(answers)) for row in rows])
            try:
                conn.sendall(reply)
            except OSError:  # that worker is gone; its records are stored all the same
                log.warning("decision store: a worker left before its group's answer", exc_info=True)

    def close(self) -> None:
        self._wake.send(b"x")
        self._thread.join()
        for end in (self._wake, self._woken, self._listener):
            end.close()
        shutil.rmtree(self._folder, ignore_errors=True)
