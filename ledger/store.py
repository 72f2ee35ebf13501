"""The ledger store: one DuckDB file, written by the ledger flow alone.

`LedgerStore.apply(outcomes)` writes one consumed batch in ONE transaction — the events,
their postings (hash-chained, see `clearline.ledger.chain`), the rejections with their raw
bytes, and the per-partition offsets and counters — so that after every commit

    consumed = posted + duplicate + dead_lettered      (per topic partition)

holds exactly (a CHECK constraint on `offsets` enforces it), and a crash leaves either the
whole batch or none of it. The flow resumes from the committed `next_offset`s (`resume()`).

How each consumed message is counted:

* offset below the stored `next_offset` of its partition → **skipped**: a replay after a
  crash re-delivers what was already committed; it is not counted again (`replayed` in the
  result, no counter moves). The same offset twice in one batch: the second is skipped.
* `Posted`, event_id new → **posted**: an `events` row (status 'posted') and its legs.
* `Posted`, event_id already posted → **duplicate**: nothing is written.
* `Posted`, event_id already *rejected* → **dead_lettered** (reason `rejected_before`): a
  retried bad event fails the same way; the stored rejection is the answer, and the store
  records a rejection row for this message (origin 'store', raw bytes unknown → NULL).
* `Posted` whose legs are malformed (a negative amount, an unknown side, or debits ≠
  credits in some currency) → **dead_lettered** (reason `posting_invalid`); its event_id
  is claimed as rejected. The store never writes an unbalanced transfer.
* `Rejected` → always **dead_lettered**, recorded in `rejections` with its raw bytes, with
  or without an event_id. Its event_id, if new, is claimed as rejected (so a retry fails
  the same way); if the id was already rejected the first rejection stays the answer; if
  it was already *posted* the event stays posted — a later bad message never un-posts.
  So `dead_lettered` = rows in `rejections` for the partition, always.

"First" is decided by the unique key, not by a Python check: every batch inserts its
candidate `events` rows (within a batch, the first occurrence of an id in (topic,
partition, offset) order) with a plain INSERT; if the key refuses one, the batch is redone
with `INSERT … ON CONFLICT DO NOTHING RETURNING event_id`, which names the rows inserted
(DuckDB makes that cost grow with the table, so it is only the fallback). Replay
determinism assumes an event_id's copies share a partition (the producer keys by
merchant), since the order across partitions depends on the interleaving.

A Rejected's event_id claims the id for good, so the flow should only name it when the
message is authentic (signature verified): a forged message must not be able to poison
an id before the real event arrives — reject unauthenticated messages with event_id=None.
`BatchResult.dead_letters` lists what to forward to the dead-letter topic; the ones the
store made (`rejected_before`, `posting_invalid`) carry raw=None (the flow holds the
bytes). `dead_letters_since(version)` reads them back from the file, an outbox that
survives a crash between commit and forwarding.

Tables (`version` is the store version — the count of committed batches — that wrote the
row; snapshots export by it; the store's version is MAX(offsets.version), since every
commit moves at least one partition's offsets row):

    meta(key PK, value)                           schema_version, store_id
    events(event_id PK, status, event_type, tenant, occurred_at, topic, partition,
           "offset", legs, reason, detail, version)
    postings(topic, partition, "offset", seq, event_id, account, side, amount_minor,
             currency, occurred_at, prev_hash, hash, version)
    rejections(topic, partition, "offset" — PK, event_id, reason, detail, raw BLOB,
               origin 'flow'|'store', version, raw_length, raw_sha256)
    offsets(topic, partition — PK, next_offset, consumed, posted, duplicate,
            dead_lettered, chain_length, head, version)

`postings` has no key of its own (an index would cost every insert): its rows exist only
for an events row inserted in the same transaction, and `invariants.check_legs` checks
them against `events.legs`. Balances are derived from postings, never stored. Amounts are BIGINT minor units
(the contract admits none above 2^63 - 1; a leg above it is `posting_invalid`), and every
sum of them is a HUGEINT (128 bits), so no balance of admitted amounts overflows.
`raw` holds a refused message's bytes with card numbers masked, at most a bounded prefix
of them; `raw_length` and `raw_sha256` describe the whole (masked) message, NULL in rows
written before raw was bounded (there raw is the whole). `occurred_at` is the event time
(TIMESTAMPTZ, UTC); "offset" must be quoted in SQL.

The queries (`balances`, `statement`, `stats`) are module functions over a DuckDB
connection exposing those table names, shared with `clearline.ledger.snapshot`, whose reader
exposes the same names as views over Parquet.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import chain as _chain_iter
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from clearline.events import MAX_MINOR
from clearline.ledger import chain
from clearline.ledger.model import Outcome, Posted, Rejected, Source

SCHEMA_VERSION = 1

_DDL = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        event_id     VARCHAR PRIMARY KEY,
        status       VARCHAR NOT NULL CHECK (status IN ('posted', 'rejected')),
        event_type   VARCHAR,
        tenant       VARCHAR,
        occurred_at  TIMESTAMPTZ,
        topic        VARCHAR NOT NULL,
        partition    INTEGER NOT NULL,
        "offset"     BIGINT  NOT NULL,
        legs         INTEGER NOT NULL,
        reason       VARCHAR,
        detail       VARCHAR,
        version      BIGINT  NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS postings (
        topic        VARCHAR NOT NULL,
        partition    INTEGER NOT NULL,
        "offset"     BIGINT  NOT NULL,
        seq          INTEGER NOT NULL,
        event_id     VARCHAR NOT NULL,
        account      VARCHAR NOT NULL,
        side         VARCHAR NOT NULL,
        amount_minor BIGINT  NOT NULL,
        currency     VARCHAR NOT NULL,
        occurred_at  TIMESTAMPTZ NOT NULL,
        prev_hash    VARCHAR NOT NULL,
        hash         VARCHAR NOT NULL,
        version      BIGINT  NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejections (
        topic        VARCHAR NOT NULL,
        partition    INTEGER NOT NULL,
        "offset"     BIGINT  NOT NULL,
        event_id     VARCHAR,
        reason       VARCHAR NOT NULL,
        detail       VARCHAR NOT NULL,
        raw          BLOB,
        origin       VARCHAR NOT NULL CHECK (origin IN ('flow', 'store')),
        version      BIGINT  NOT NULL,
        raw_length   BIGINT,
        raw_sha256   VARCHAR,
        PRIMARY KEY (topic, partition, "offset"))""",
    # stores made before raw was bounded: their rows keep raw whole, so NULL = len(raw), sha256(raw)
    "ALTER TABLE rejections ADD COLUMN IF NOT EXISTS raw_length BIGINT",
    "ALTER TABLE rejections ADD COLUMN IF NOT EXISTS raw_sha256 VARCHAR",
    """CREATE TABLE IF NOT EXISTS offsets (
        topic         VARCHAR NOT NULL,
        partition     INTEGER NOT NULL,
        next_offset   BIGINT  NOT NULL,
        consumed      BIGINT  NOT NULL,
        posted        BIGINT  NOT NULL,
        duplicate     BIGINT  NOT NULL,
        dead_lettered BIGINT  NOT NULL,
        chain_length  BIGINT  NOT NULL,
        head          VARCHAR NOT NULL,
        version       BIGINT  NOT NULL,
        PRIMARY KEY (topic, partition),
        CHECK (consumed = posted + duplicate + dead_lettered))""",
]

_TS = pa.timestamp("us", tz="UTC")
EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("status", pa.string()),
        ("event_type", pa.string()),
        ("tenant", pa.string()),
        ("occurred_at", _TS),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("legs", pa.int32()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("version", pa.int64()),
    ]
)
POSTINGS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("seq", pa.int32()),
        ("event_id", pa.string()),
        ("account", pa.string()),
        ("side", pa.string()),
        ("amount_minor", pa.int64()),
        ("currency", pa.string()),
        ("occurred_at", _TS),
        ("prev_hash", pa.string()),
        ("hash", pa.string()),
        ("version", pa.int64()),
    ]
)
REJECTIONS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("event_id", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.binary()),
        ("origin", pa.string()),
        ("version", pa.int64()),
        ("raw_length", pa.int64()),
        ("raw_sha256", pa.string()),
    ]
)
OFFSETS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("next_offset", pa.int64()),
        ("consumed", pa.int64()),
        ("posted", pa.int64()),
        ("duplicate", pa.int64()),
        ("dead_lettered", pa.int64()),
        ("chain_length", pa.int64()),
        ("head", pa.string()),
        ("version", pa.int64()),
    ]
)
TABLES = ("events", "postings", "rejections", "offsets")


class StoreError(RuntimeError):
    """The store file cannot be used (a newer schema, or it is not a ledger store)."""


@dataclass
class PartitionState:
    """What the store knows about one (topic, partition): the `offsets` row."""

    topic: str
    partition: int
    next_offset: int = 0
    consumed: int = 0
    posted: int = 0
    duplicate: int = 0
    dead_lettered: int = 0
    chain_length: int = 0
    head: str = ""
    version: int = 0

    def row(self) -> tuple:
        return (
            self.topic,
            self.partition,
            self.next_offset,
            self.consumed,
            self.posted,
            self.duplicate,
            self.dead_lettered,
            self.chain_length,
            self.head,
            self.version,
        )

    def copy(self) -> "PartitionState":
        return PartitionState(**{k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass
class BatchResult:
    """What one `apply` did. `consumed` excludes the replayed (skipped) messages, so
    consumed = posted + duplicate + dead_lettered for the batch too."""

    consumed: int = 0
    posted: int = 0
    duplicate: int = 0
    dead_lettered: int = 0
    replayed: int = 0  # skipped: offset below the committed next_offset
    postings: int = 0  # legs written
    version: int = 0  # store version after the batch (unchanged if nothing was written)
    dead_letters: list[Rejected] = field(default_factory=list)  # to forward to the dead-letter topic

    def as_dict(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in ("consumed", "posted", "duplicate", "dead_lettered", "replayed", "postings", "version")
        }


@dataclass(frozen=True, slots=True)
class _Prior:
    """The stored answer for an event_id: what a later message with that id meets."""

    status: str
    source: Source | None
    reason: str | None


_POSTED = _Prior("posted", None, None)


_SIDES = ("debit", "credit")
_SIDE_SET = frozenset(_SIDES)
_SIGN = {"debit": 1, "credit": -1}


Leg = tuple[str, str, int, str]  # (account, side, amount_minor, currency): a leg as stored and chained

_POSTINGS = attrgetter("postings")
_ACCOUNT, _SIDE, _AMOUNT = attrgetter("account"), attrgetter("side"), attrgetter("amount")
_MINOR, _CURRENCY = attrgetter("minor"), attrgetter("currency")


class _Legs:
    """The legs of a batch's Posted outcomes as columns (in the outcomes' order; Posted
    i has `counts[i]` legs starting at `starts[i]`), read once with C-level maps instead
    of a tuple per leg; the store checks, chains and writes them from here."""

    def __init__(self, posted: Sequence[Posted]):
        postings = list(map(_POSTINGS, posted))
        flat = list(_chain_iter.from_iterable(postings))
        amounts = list(map(_AMOUNT, flat))
        self.counts = np.fromiter(map(len, postings), np.int64, len(postings))
        self.starts = np.cumsum(self.counts) - self.counts
        self.account: list = list(map(_ACCOUNT, flat))
        self.side: list = list(map(_SIDE, flat))
        self.minor: list = list(map(_MINOR, amounts))
        self.currency: list = list(map(_CURRENCY, amounts))

    def of(self, i: int) -> list[Leg]:
        """Posted i's legs as `_invalid_legs` reads them."""
        a = int(self.starts[i])
        b = a + int(self.counts[i])
        return list(zip(self.account[a:b], self.side[a:b], self.minor[a:b], self.currency[a:b]))

    def invalid(self) -> dict[int, str]:
        """Why Posted i's legs cannot be written, for each i whose legs cannot be: the rule
        is `_invalid_legs`, asked here only of the Posted a columnar screen cannot clear
        (a test holds the answers equal to asking it of every one)."""
        return {i: why for i in np.flatnonzero(self._suspects()).tolist() if (why := _invalid_legs(self.of(i)))}

    def _suspects(self) -> np.ndarray:
        """The Posted whose legs may be invalid: all of them unless every leg's amount is
        an int in 0..MAX_MINOR (and no event's legs could sum past 64 bits), its side
        debit or credit, its account a non-empty str and its currency a str; then those
        whose debits and credits differ, and those in more than one currency."""
        n = len(self.counts)
        if not self.minor:
            return np.zeros(n, bool)
        if not (
            set(map(type, self.minor)) == {int}
            and set(map(type, self.account)) == {str}
            and set(map(type, self.currency)) == {str}
            and set(map(type, self.side)) == {str}
            and set(self.side) <= _SIDE_SET
            and "" not in self.account
            and min(self.minor) >= 0
            and max(self.minor) * int(self.counts.max()) <= MAX_MINOR
        ):
            return np.ones(n, bool)
        k = len(self.minor)
        signed = np.fromiter(self.minor, np.int64, k) * np.fromiter(map(_SIGN.__getitem__, self.side), np.int64, k)
        code = dict.fromkeys(self.currency)
        code.update(zip(code, range(len(code))))
        codes = np.fromiter(map(code.__getitem__, self.currency), np.int64, k)
        has = self.counts > 0
        starts = self.starts[has]
        out = np.zeros(n, bool)
        # an event in one currency balances when its legs net to zero; one in several
        # currencies (an exchange) is left to the rule
        out[has] = (np.add.reduceat(signed, starts) != 0) | (
            np.minimum.reduceat(codes, starts) != np.maximum.reduceat(codes, starts)
        )
        return out


def _invalid_legs(legs: Sequence[Leg]) -> str | None:
    """Why a Posted's legs cannot be written, or None. Balanced per currency, amounts ≥ 0."""
    net: dict[str, int] = {}
    for account, side, minor, currency in legs:  # the usual legs, in one pass; any doubt: the pass below says why
        if type(minor) is not int or not 0 <= minor <= MAX_MINOR or side not in _SIDES:
            break
        if type(account) is not str or not account:
            break
        net[currency] = net.get(currency, 0) + (minor if side == "debit" else -minor)
    else:
        if not any(net.values()):
            return None
    net = defaultdict(int)
    for i, (account, side, minor, currency) in enumerate(legs):
        if isinstance(minor, bool) or not isinstance(minor, int) or minor < 0:
            return f"leg {i} ({account}): amount {minor!r} is not a non-negative integer of minor units"
        if minor > MAX_MINOR:
            return f"leg {i} ({account}): amount {minor} is above {MAX_MINOR}, the largest the ledger stores (BIGINT)"
        if side not in ("debit", "credit"):
            return f"leg {i} ({account}): side {side!r} is neither debit nor credit"
        if not isinstance(account, str) or not account:
            return f"leg {i}: account {account!r} is not an account key"
        net[currency] += minor if side == "debit" else -minor
    off = {c: n for c, n in net.items() if n}
    if off:
        return "unbalanced: " + ", ".join(f"{c} debits − credits = {n}" for c, n in sorted(off.items()))
    return None


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


class LedgerStore:
    """The ledger's DuckDB file. One process, one writer: the ledger flow.

    Thread-safe: `apply` is serialised by a lock; the queries read through their own
    cursor (DuckDB MVCC) and see the last committed batch.
    """

    def __init__(self, path: str | Path, keep_recent_rows: int = 1_000_000):
        """`keep_recent_rows`: how many rows of the latest committed batches to keep in
        memory as Arrow tables, so `publish_snapshot` can write them without reading them
        back from DuckDB (0 turns that off)."""
        self.path = Path(path)
        self._recent: deque[tuple[int, dict[str, pa.Table]]] = deque()
        self._recent_rows = 0
        self._keep_recent_rows = keep_recent_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        self.con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.RLock()
        self._create()
        self._load()

    # -------------------------------------------------------------------- lifecycle

    def _create(self) -> None:
        con = self.con
        con.begin()
        try:
            for ddl in _DDL:
                con.execute(ddl)
            found = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if not found:
                con.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("store_id", uuid.uuid4().hex)],
                )
            elif int(found.get("schema_version", -1)) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has ledger schema {found['schema_version']}; this code reads up to {SCHEMA_VERSION}"
                )
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _load(self) -> None:
        meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
        self.store_id: str = meta["store_id"]
        self.version: int = current_version(self.con)
        self._parts: dict[tuple[str, int], PartitionState] = {}
        for row in self.con.execute(
            "SELECT topic, partition, next_offset, consumed, posted, duplicate, dead_lettered, "
            "chain_length, head, version FROM offsets"
        ).fetchall():
            self._parts[(row[0], row[1])] = PartitionState(*row)

    def close(self) -> None:
        with self._lock:
            self.con.close()

    def __enter__(self) -> "LedgerStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def resume(self) -> dict[tuple[str, int], int]:
        """The offset to resume each (topic, partition) from: its committed next_offset."""
        with self._lock:
            return {k: s.next_offset for k, s in self._parts.items()}

    def partitions(self) -> dict[tuple[str, int], PartitionState]:
        with self._lock:
            return {k: s.copy() for k, s in self._parts.items()}

    # ------------------------------------------------------------------------ apply

    def apply(
        self, outcomes: Iterable[Outcome], before_commit: Callable[[list[Posted]], None] | None = None
    ) -> BatchResult:
        """Write one batch of outcomes in one transaction; see the module docstring.

        `before_commit` is called with the batch's newly posted events (in topic,
        partition, offset order) inside the transaction, just before it commits: work
        that must happen before the commit (the flow's archive) learns which events are
        new from the unique key itself, without a look-up of its own. If it raises, the
        batch is rolled back."""
        with self._lock:
            return self._apply(list(outcomes), before_commit)

    def _apply(self, outcomes: list[Outcome], before_commit: Callable[[list[Posted]], None] | None) -> BatchResult:
        res = BatchResult(version=self.version)
        outcomes.sort(key=_order)
        state: dict[tuple[str, int], PartitionState] = {}
        kept: list[Outcome] = []
        st = None
        for o in outcomes:
            s = o.source
            if st is None or st.partition != s.partition or st.topic != s.topic:
                tp = (s.topic, s.partition)
                st = state.get(tp)
                if st is None:
                    cur = self._parts.get(tp)
                    st = state[tp] = (
                        cur.copy() if cur else PartitionState(s.topic, s.partition, head=chain.genesis(*tp))
                    )
            if s.offset < st.next_offset:
                res.replayed += 1
                continue
            st.next_offset = s.offset + 1
            kept.append(o)
        if not kept:
            return res
        version = self.version + 1
        posted = [o for o in kept if type(o) is Posted]
        legs = _Legs(posted)
        invalid = legs.invalid()
        # (outcome, origin of a rejection: 'flow' | 'store', a Posted's index in `legs`)
        entries: list[tuple[Outcome, str, int]] = []
        cand: dict[str, Outcome] = {}  # event_id -> its first occurrence in this batch
        i = -1
        for o in kept:
            origin = "flow"
            if type(o) is Posted:
                i += 1
                why = invalid.get(i)
                if why is not None:
                    o, origin = Rejected(o.source, o.event_id, "posting_invalid", why, None), "store"  # type: ignore[arg-type]
            entries.append((o, origin, i))
            if o.event_id is not None and o.event_id not in cand:
                cand[o.event_id] = o

        ev_rows = []
        for eid, o in cand.items():
            s = o.source
            if type(o) is Posted:
                ev_rows.append(
                    (
                        eid,
                        "posted",
                        o.event_type,
                        o.tenant,
                        chain.epoch_us(o.occurred_at),
                        s.topic,
                        s.partition,
                        s.offset,
                        len(o.postings),
                        None,
                        None,
                        version,
                    )
                )
            else:
                ev_rows.append(
                    (eid, "rejected", None, None, None, s.topic, s.partition, s.offset, 0, o.reason, o.detail, version)
                )
        rj_rows: list[tuple] = []
        con = self.con
        con.begin()
        try:
            inserted: set[str] = set()
            ev_tbl = po_tbl = rj_tbl = None
            if ev_rows:
                ev_tbl = _table(ev_rows, EVENTS_SCHEMA)
                inserted = self._insert_events(ev_tbl, cand)
            prior: dict[str, _Prior] = {}
            if len(inserted) < len(ev_rows):
                clash = [eid for eid in cand if eid not in inserted]
                for eid, status, topic, partition, offset, reason in con.execute(
                    'SELECT event_id, status, topic, partition, "offset", reason FROM events '
                    "WHERE event_id = ANY(?::VARCHAR[])",
                    [clash],
                ).fetchall():
                    prior[eid] = _Prior(status, Source(topic, partition, offset), reason)

            decided: dict[str, _Prior] = {}
            new_posted: list[Posted] = []
            fresh: list[int] = []  # the newly posted events with legs, as indices in `legs`
            heads: dict[tuple[str, int], bytes] = {}  # raw chain heads of the partitions touched
            st = None
            for o, origin, i in entries:
                s = o.source
                if st is None or st.partition != s.partition or st.topic != s.topic:
                    tp = (s.topic, s.partition)
                    st = state[tp]
                    st.version = version
                st.consumed += 1
                eid = o.event_id
                is_posted = type(o) is Posted
                new = False
                if eid is not None and eid not in decided:
                    if eid in inserted:
                        new = True
                        decided[eid] = _POSTED if is_posted else _Prior("rejected", s, o.reason)
                    else:
                        decided[eid] = prior[eid]
                if is_posted:
                    if new:
                        st.posted += 1
                        new_posted.append(o)
                        n = int(legs.counts[i])
                        if n:
                            if tp not in heads:
                                heads[tp] = bytes.fromhex(st.head)
                            fresh.append(i)
                            st.chain_length += n
                        continue
                    p = decided[eid]
                    if p.status == "posted":
                        st.duplicate += 1
                        continue
                    o, origin = (
                        Rejected(
                            s,
                            eid,
                            "rejected_before",
                            f"event {eid} was rejected at {p.source.topic}[{p.source.partition}]@"
                            f"{p.source.offset}: {p.reason}",
                            None,
                        ),
                        "store",
                    )  # type: ignore[arg-type]
                st.dead_lettered += 1
                rj_rows.append(
                    (s.topic, s.partition, s.offset, o.event_id, o.reason, o.detail, o.raw, origin, version)
                    + (o.length, o.sha256)
                )
                res.dead_letters.append(o)
            n_legs = 0
            if fresh:
                po_tbl = _postings_table(posted, legs, fresh, heads, version)
                n_legs = po_tbl.num_rows
                con.register("_ledger_postings", po_tbl)
                con.execute("INSERT INTO postings SELECT * FROM _ledger_postings")
                con.unregister("_ledger_postings")
            for tp, raw in heads.items():
                state[tp].head = raw.hex()
            if rj_rows:
                rj_tbl = _table(rj_rows, REJECTIONS_SCHEMA)
                con.register("_ledger_rejections", rj_tbl)
                con.execute("INSERT INTO rejections SELECT * FROM _ledger_rejections")
                con.unregister("_ledger_rejections")
            known = [st for tp, st in state.items() if tp in self._parts]
            first = [st for tp, st in state.items() if tp not in self._parts]
            if known:
                con.register("_ledger_offsets", _table([st.row() for st in known], OFFSETS_SCHEMA))
                con.execute(
                    "UPDATE offsets o SET "
                    + ", ".join(f"{c} = n.{c}" for c in OFFSETS_SCHEMA.names[2:])
                    + " FROM _ledger_offsets n WHERE o.topic = n.topic AND o.partition = n.partition"
                )
                con.unregister("_ledger_offsets")
            if first:
                con.register("_ledger_offsets", _table([st.row() for st in first], OFFSETS_SCHEMA))
                con.execute("INSERT INTO offsets SELECT * FROM _ledger_offsets")
                con.unregister("_ledger_offsets")
            if before_commit is not None:
                before_commit(new_posted)
            con.commit()
        except BaseException:
            con.rollback()
            self._load()
            raise
        for tp, st in state.items():
            old = self._parts.get(tp)
            res.posted += st.posted - (old.posted if old else 0)
            res.duplicate += st.duplicate - (old.duplicate if old else 0)
            res.dead_lettered += st.dead_lettered - (old.dead_lettered if old else 0)
        self.version = version
        self._parts.update(state)
        if ev_tbl is not None and len(inserted) < len(ev_rows):
            ev_tbl = ev_tbl.filter(pa.array([r[0] in inserted for r in ev_rows]))
        self._remember(version, {"events": ev_tbl, "postings": po_tbl, "rejections": rj_tbl})
        res.consumed = res.posted + res.duplicate + res.dead_lettered
        res.postings = n_legs
        res.version = version
        return res

    def _insert_events(self, ev_tbl: pa.Table, cand: dict[str, Outcome]) -> set[str]:
        """Insert the candidate events rows; the ids actually inserted. The primary key
        decides: a plain INSERT first (the usual batch, no id seen before: its cost does
        not grow with the table), and only if the key refuses it — the statement fails
        whole, and it is the transaction's first write — again with ON CONFLICT DO NOTHING
        RETURNING, which in DuckDB costs time in proportion to the table's size."""
        con = self.con
        con.register("_ledger_events", ev_tbl)
        try:
            try:
                con.execute("INSERT INTO events SELECT * FROM _ledger_events")
                return set(cand)
            except duckdb.ConstraintException:
                con.rollback()
                con.begin()
                con.register("_ledger_events", ev_tbl)  # the rollback dropped it
                return {
                    r[0]
                    for r in con.execute(
                        "INSERT INTO events SELECT * FROM _ledger_events ON CONFLICT DO NOTHING RETURNING event_id"
                    ).fetchall()
                }
        finally:
            con.unregister("_ledger_events")

    def _remember(self, version: int, tables: dict[str, pa.Table | None]) -> None:
        if self._keep_recent_rows <= 0:
            return
        kept = {t: tbl for t, tbl in tables.items() if tbl is not None and tbl.num_rows}
        self._recent.append((version, kept))
        self._recent_rows += sum(t.num_rows for t in kept.values())
        while len(self._recent) > 1 and self._recent_rows > self._keep_recent_rows:
            _, old = self._recent.popleft()
            self._recent_rows -= sum(t.num_rows for t in old.values())

    def held_share_since(self, version: int) -> float:
        """How much of its in-memory window (`keep_recent_rows`) the store fills with rows
        committed after `version`: at 1 the oldest of them are dropped, and a snapshot
        from `version` must read them back from the file. 0 when it keeps none."""
        with self._lock:
            if self._keep_recent_rows <= 0:
                return 0.0
            rows = sum(t.num_rows for v, tables in self._recent if v > version for t in tables.values())
            return rows / self._keep_recent_rows

    def committed_since(self, version: int) -> tuple[int, dict[str, list[pa.Table]], list[tuple]] | None:
        """(store version, the rows committed after `version` per table as Arrow tables, the
        offsets rows) from memory — or None if the batches after `version` are no longer
        (or were never, e.g. before a restart) all held; then read them from the file."""
        with self._lock:
            if version > self.version:
                return None
            if version < self.version and (not self._recent or self._recent[0][0] > version + 1):
                return None
            out: dict[str, list[pa.Table]] = {"events": [], "postings": [], "rejections": []}
            for v, tables in self._recent:
                if v > version:
                    for t, tbl in tables.items():
                        out[t].append(tbl)
            offsets = [self._parts[k].row() for k in sorted(self._parts)]
            return self.version, out, offsets

    # ---------------------------------------------------------------------- queries

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A read connection to the committed state (its own MVCC view; never blocks apply)."""
        cur = self.con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    def balances(
        self, as_of: datetime | None = None, account: str | None = None, tenant: str | None = None
    ) -> pl.DataFrame:
        return balances(self.cursor(), as_of, account, tenant)

    def statement(self, account: str, from_: datetime | None = None, to: datetime | None = None) -> pl.DataFrame:
        return statement(self.cursor(), account, from_, to)

    def stats(self) -> dict[str, Any]:
        return stats(self.cursor(), self.version)

    def dead_letters_since(self, version: int) -> list[Rejected]:
        """Rejections committed after store `version`, oldest first — an outbox for the
        dead-letter topic that survives a crash between commit and forwarding."""
        rows = (
            self.cursor()
            .execute(
                'SELECT topic, partition, "offset", event_id, reason, detail, raw, raw_length, raw_sha256 '
                'FROM rejections WHERE version > ? ORDER BY version, topic, partition, "offset"',
                [version],
            )
            .fetchall()
        )
        return [Rejected(Source(t, p, o), e, r, d, raw, n, h) for t, p, o, e, r, d, raw, n, h in rows]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The last committed batch's version (0 for an empty store)."""
    return int(con.execute("SELECT COALESCE(MAX(version), 0) FROM offsets").fetchall()[0][0])


def _order(o: Outcome) -> tuple[str, int, int]:
    s = o.source
    return s.topic, s.partition, s.offset


def _hex(digests: list[bytes]) -> pa.Array:
    """Raw digests as the lowercase hex the store keeps, for the whole column at once."""
    return pl.Series(digests, dtype=pl.Binary).bin.encode("hex").to_arrow().cast(pa.string())


def _postings_table(
    posted: list[Posted], legs: _Legs, fresh: list[int], heads: dict[tuple[str, int], bytes], version: int
) -> pa.Table:
    """The postings rows of the batch's newly posted events with legs (`fresh`: indices in
    `posted` and `legs`, in topic, partition, offset order), chained onto their
    partitions' raw heads (`heads`, moved on in place). Built as columns: the legs taken
    from `legs`, the per-event columns repeated for their legs, the canonical bytes
    spelled in one Polars pass (`chain.canonical_many`); what is left per leg in Python
    is its SHA-256 (`chain.link_many`, one run per partition)."""
    events = [posted[i] for i in fresh]
    sel = np.asarray(fresh, np.int64)
    counts = legs.counts[sel]
    n = int(counts.sum())
    starts = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(len(fresh)), counts)
    seq = np.arange(n) - starts[owner]
    # the columns as they are when every leg of the batch is new (the usual batch), else
    # the new events' legs picked out (the others may be malformed)
    take = None if n == len(legs.minor) else (legs.starts[sel][owner] + seq).tolist()
    leg_cols = {
        name: pa.array(values if take is None else [values[j] for j in take], typ)
        for name, values, typ in (
            ("account", legs.account, pa.string()),
            ("side", legs.side, pa.string()),
            ("amount_minor", legs.minor, pa.int64()),
            ("currency", legs.currency, pa.string()),
        )
    }
    us = [chain.epoch_us(o.occurred_at) for o in events]
    event_ids = [o.event_id for o in events]
    data = chain.canonical_many(
        pl.Series(event_ids, dtype=pl.String),
        pl.Series(chain.iso_from_epoch_us_many(us), dtype=pl.String),
        counts,
        *(pl.Series(leg_cols[c]) for c in ("account", "side", "amount_minor", "currency")),
    )
    sources = [o.source for o in events]
    digests: list[bytes] = []
    prevs: list[bytes] = []
    parts = [(s.topic, s.partition) for s in sources]
    for run in (k for k in range(len(parts)) if k == 0 or parts[k] != parts[k - 1]):  # each partition's run
        tp = parts[run]
        end = run + 1
        while end < len(parts) and parts[end] == tp:
            end += 1
        out = chain.link_many(heads[tp], data[int(starts[run]) : int(starts[end - 1] + counts[end - 1])])
        prevs.append(heads[tp])
        prevs += out[:-1]
        digests += out
        heads[tp] = out[-1]
    rows = pa.array(owner)
    per_event = {
        "topic": pa.array([s.topic for s in sources], pa.string()),
        "partition": pa.array([s.partition for s in sources], pa.int32()),
        "offset": pa.array([s.offset for s in sources], pa.int64()),
        "event_id": pa.array(event_ids, pa.string()),
        "occurred_at": pa.array(us, pa.int64()).cast(_TS),
    }
    per_leg = leg_cols | {
        "seq": pa.array(seq, pa.int32()),
        "prev_hash": _hex(prevs),
        "hash": _hex(digests),
        "version": pa.array(np.full(n, version, np.int64)),
    }
    arrays = [per_event[f.name].take(rows) if f.name in per_event else per_leg[f.name] for f in POSTINGS_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=POSTINGS_SCHEMA)


def _table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    """Row tuples as an Arrow table; timestamp columns arrive as epoch microseconds."""
    return _columns(dict(zip(schema.names, zip(*rows))), schema)


def _columns(cols: dict[str, Sequence], schema: pa.Schema) -> pa.Table:
    """Columns (by name) as an Arrow table; timestamp columns arrive as epoch microseconds."""
    arrays = []
    for f in schema:
        col = cols[f.name]
        if f.type == _TS:
            arrays.append(pa.array(col, pa.int64()).cast(_TS))
        else:
            arrays.append(pa.array(col, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


# ------------------------------------------------------------------------------ queries
# Over any DuckDB connection exposing `postings`, `events`, `offsets` (the store, or a
# snapshot's views). Balances are debit-positive: balance = debits − credits; a
# credit-normal account (payable, revenue) therefore shows a negative balance.


def _account_filter(account: str | None, tenant: str | None, where: list[str], params: list) -> None:
    if account is not None:
        # the account itself or any sub-ledger under it: "rs_001:merchant_payable" matches
        # "rs_001:merchant_payable" and "rs_001:merchant_payable:m_00001", not "...payable_x"
        where.append("(account = ? OR starts_with(account, ? || ':'))")
        params += [account, account]
    if tenant is not None:
        where.append("split_part(account, ':', 1) = ?")
        params.append(tenant)


def balances(
    con: duckdb.DuckDBPyConnection, as_of: datetime | None = None, account: str | None = None, tenant: str | None = None
) -> pl.DataFrame:
    """(account, currency, debit, credit, balance) from the postings with event time ≤
    `as_of` (all if None), optionally for one account and its sub-ledgers (`account`
    prefix up to a ':') and/or one tenant (the account key's first segment)."""
    where, params = ["TRUE"], []
    if as_of is not None:
        where.append("occurred_at <= ?")
        params.append(_utc(as_of))
    _account_filter(account, tenant, where, params)
    frame = con.sql(
        f"""
        SELECT account, currency,
               CAST(SUM(CASE WHEN side = 'debit'  THEN amount_minor ELSE 0 END) AS HUGEINT) AS debit,
               CAST(SUM(CASE WHEN side = 'credit' THEN amount_minor ELSE 0 END) AS HUGEINT) AS credit,
               CAST(SUM(CASE WHEN side = 'debit'  THEN amount_minor ELSE -amount_minor END) AS HUGEINT) AS balance
        FROM postings WHERE {" AND ".join(where)}
        GROUP BY account, currency ORDER BY account, currency""",
        params=params,
    ).pl()
    return _int128(frame, "debit", "credit", "balance")


def statement(
    con: duckdb.DuckDBPyConnection, account: str, from_: datetime | None = None, to: datetime | None = None
) -> pl.DataFrame:
    """Every posting to exactly `account` with from_ ≤ occurred_at ≤ to, in event-time order
    (ties in topic, partition, offset, seq order), with the running balance per currency
    (debit-positive) — which includes everything before `from_`."""
    where, params = ["p.account = ?"], [account]
    if to is not None:
        where.append("p.occurred_at <= ?")
        params.append(_utc(to))
    qualify = ""
    if from_ is not None:
        qualify = "QUALIFY p.occurred_at >= ?"
        params.append(_utc(from_))
    frame = con.sql(
        f"""
        SELECT p.occurred_at, p.event_id, e.event_type, p.topic, p.partition, p."offset", p.seq,
               p.side, p.amount_minor, p.currency,
               CASE WHEN p.side = 'debit'  THEN p.amount_minor ELSE 0 END AS debit,
               CASE WHEN p.side = 'credit' THEN p.amount_minor ELSE 0 END AS credit,
               CAST(SUM(CASE WHEN p.side = 'debit' THEN p.amount_minor ELSE -p.amount_minor END) OVER (
                   PARTITION BY p.currency ORDER BY p.occurred_at, p.topic, p.partition, p."offset", p.seq
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS HUGEINT) AS balance
        FROM postings p LEFT JOIN events e ON e.event_id = p.event_id
        WHERE {" AND ".join(where)}
        {qualify}
        ORDER BY p.occurred_at, p.topic, p.partition, p."offset", p.seq""",
        params=params,
    ).pl()
    return _int128(frame, "balance")


def _int128(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Sums of BIGINT amounts as 128-bit integers: DuckDB hands HUGEINT over as a decimal,
    and a balance is a whole number of minor units that 64 bits cannot always hold."""
    return frame.with_columns(pl.col(c).cast(pl.Int128) for c in columns)


def stats(con: duckdb.DuckDBPyConnection, version: int) -> dict[str, Any]:
    """Counters per partition, totals, table sizes and the ledger head."""
    cols = [
        "topic",
        "partition",
        "next_offset",
        "consumed",
        "posted",
        "duplicate",
        "dead_lettered",
        "chain_length",
        "head",
    ]
    parts = [
        dict(zip(cols, r))
        for r in con.execute(f"SELECT {', '.join(cols)} FROM offsets ORDER BY topic, partition").fetchall()
    ]
    totals = {k: sum(p[k] for p in parts) for k in ("consumed", "posted", "duplicate", "dead_lettered", "chain_length")}
    ((events, posted_events),) = con.execute(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'posted') FROM events"
    ).fetchall()
    totals |= {
        "events": events,
        "events_posted": posted_events,
        "events_rejected": events - posted_events,
        "postings": con.execute("SELECT COUNT(*) FROM postings").fetchall()[0][0],
        "rejections": con.execute("SELECT COUNT(*) FROM rejections").fetchall()[0][0],
    }
    return {
        "version": version,
        "head": chain.ledger_head((p["topic"], p["partition"], p["chain_length"], p["head"]) for p in parts),
        "partitions": parts,
        "totals": totals,
    }
