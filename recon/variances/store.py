"""The variance store: every variance ever found, with the status a finance team gives it.

DuckDB under the recon state folder (`var/recon/variances.duckdb`), keyed by variance id.
A run records what it found: a new variance opens; one found again gets its facts and
age refreshed but keeps its status, assignee and note, because its id is the same for
the same break (see `clearline.recon.matching.variance`). People move a variance with `move`:
assigned to someone, resolved with a note (and, from the finance workbench, a resolution
code and who did it), or watched until a date ("timing": expected to clear by then; the
matcher withdraws it when it clears, `reopen_expired` reopens it when it has not). Every
change is a row in `history`, naming the actor and the code when there is one.

One process owns the file while it writes (DuckDB takes one writer and no other reader),
so a store is opened, used and closed by one command. The one process that holds it open
is the running streaming matcher (`clearline recon run`), which publishes the store as an
immutable Parquet snapshot (`PUBLISHED`) for readers: `read_variances` reads the store,
or that snapshot while the flow holds the store.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from clearline.recon.matching.variance import SCHEMA

STATUSES = ("open", "assigned", "watched", "resolved")
SYSTEM_ACTOR = "clearline"  # the actor of changes no person made (a watched variance reopened)
PUBLISHED = Path("published") / "variances.parquet"  # under the state folder, written by the running flow
PUBLISHED_HISTORY = Path("published") / "history.parquet"  # beside it, by `publish`
_FACTS = [c for c in SCHEMA if c != "variance_id"]
# The published snapshot's columns: the variance's facts and what people gave it.
PUBLISHED_SCHEMA: dict[str, pl.DataType] = {
    **SCHEMA,
    "status": pl.String(),
    "assignee": pl.String(),
    "note": pl.String(),
    "first_seen": pl.Datetime("us", "UTC"),
    "last_seen": pl.Datetime("us", "UTC"),
    "code": pl.String(),
    "watch_until": pl.Date(),
}

_DDL = """
CREATE TABLE IF NOT EXISTS variances (
    variance_id VARCHAR PRIMARY KEY, category VARCHAR NOT NULL, processor VARCHAR, merchant_id VARCHAR,
    reference VARCHAR,
    payout_id VARCHAR, amount_minor BIGINT NOT NULL, currency VARCHAR NOT NULL, field VARCHAR,
    expected VARCHAR, actual VARCHAR, since DATE, age_days BIGINT, ledger_event_ids VARCHAR[],
    evidence VARCHAR[], status VARCHAR NOT NULL, assignee VARCHAR, note VARCHAR,
    first_seen TIMESTAMPTZ NOT NULL, last_seen TIMESTAMPTZ NOT NULL
);
ALTER TABLE variances ADD COLUMN IF NOT EXISTS merchant_id VARCHAR;  -- stores made before variances named merchants
ALTER TABLE variances ADD COLUMN IF NOT EXISTS code VARCHAR;  -- the resolution code (configs/workbench.yaml)
ALTER TABLE variances ADD COLUMN IF NOT EXISTS watch_until DATE;  -- a watched ("timing") variance's deadline
CREATE TABLE IF NOT EXISTS history (
    variance_id VARCHAR NOT NULL, changed_at TIMESTAMPTZ NOT NULL, status VARCHAR NOT NULL,
    assignee VARCHAR, note VARCHAR
);
ALTER TABLE history ADD COLUMN IF NOT EXISTS actor VARCHAR;
ALTER TABLE history ADD COLUMN IF NOT EXISTS code VARCHAR;
ALTER TABLE history ADD COLUMN IF NOT EXISTS request VARCHAR;  -- the queued request applied (applied once)
"""
_HISTORY = "INSERT INTO history (variance_id, changed_at, status, assignee, note, actor, code, request)"


class VarianceNotFound(LookupError):
    """No variance with that id in the store."""


class BadTransition(ValueError):
    """A status change the store refuses (no note, no assignee); the message says why."""


def check_request(note: str, assignee: str | None) -> None:
    """Refuse a status change without a note, or an assignment without a name."""
    if not note or not note.strip():
        raise BadTransition("a note is required: say what was found or done")
    if assignee is not None and not assignee.strip():
        raise BadTransition("--assign needs a name")


def expired(variance: dict, today: date) -> bool:
    """The timing rule: a watched variance whose `watch_until` day has passed (it was
    expected to clear by the end of that day) has not cleared and reopens; one the matcher
    stopped finding was withdrawn (resolved) before it got here."""
    until = variance.get("watch_until")
    return variance.get("status") == "watched" and until is not None and until < today


class VarianceStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = duckdb.connect(str(path))
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(_DDL)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> VarianceStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, variances: pl.DataFrame, seen_at: datetime | None = None) -> dict[str, int]:
        """Store a run's variances; statuses of ones already known are kept. Returns how
        many were new and how many seen again."""
        seen_at = seen_at or datetime.now(timezone.utc)
        self.con.register("incoming", variances.select(list(SCHEMA)).to_arrow())
        self.con.execute("BEGIN")
        try:
            new = self.con.execute(
                "SELECT count(*) FROM incoming i"
                " WHERE NOT EXISTS (SELECT 1 FROM variances v WHERE v.variance_id = i.variance_id)"
            ).fetchone()[0]
            self.con.execute(
                f"{_HISTORY} SELECT variance_id, ?, 'open', NULL, 'found', NULL, NULL, NULL FROM incoming i "
                "WHERE NOT EXISTS (SELECT 1 FROM variances v WHERE v.variance_id = i.variance_id)",
                [seen_at],
            )
            cols = ", ".join(SCHEMA)
            updates = ", ".join(f"{c} = excluded.{c}" for c in _FACTS)
            self.con.execute(
                f"INSERT INTO variances ({cols}, status, assignee, note, first_seen, last_seen) "
                f"SELECT {cols}, 'open', NULL, NULL, ?, ? FROM incoming "
                f"ON CONFLICT (variance_id) DO UPDATE SET {updates}, last_seen = excluded.last_seen",
                [seen_at, seen_at],
            )
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        finally:
            self.con.unregister("incoming")
        return {"new": new, "seen_again": variances.height - new}

    def move(
        self,
        variance_id: str,
        note: str,
        assignee: str | None = None,
        at: datetime | None = None,
        *,
        code: str | None = None,
        actor: str | None = None,
        watch_until: date | None = None,
        request: str | None = None,
    ) -> dict:
        """Assign the variance to `assignee`; or, with no assignee, resolve it — or watch it
        until `watch_until` when one is given (a timing difference expected to clear). A
        note is always required: it is what the next person reads. `code` (the resolution
        reason) and `actor` (who asked) go on the variance and its history row. `request`
        names a queued request: one already applied is not applied again (a flow that
        crashed between applying a request and filing it away applies it once)."""
        check_request(note, assignee)
        current = self.get(variance_id)
        if request is not None and self.con.execute("SELECT 1 FROM history WHERE request = ?", [request]).fetchall():
            return current
        status = "assigned" if assignee else "watched" if watch_until else "resolved"
        assignee = assignee or current["assignee"]
        at = at or datetime.now(timezone.utc)
        self.con.execute("BEGIN")
        self.con.execute(
            "UPDATE variances SET status = ?, assignee = ?, note = ?, code = ?, watch_until = ? WHERE variance_id = ?",
            [status, assignee, note, code, watch_until, variance_id],
        )
        self.con.execute(
            f"{_HISTORY} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [variance_id, at, status, assignee, note, actor, code, request],
        )
        self.con.execute("COMMIT")
        return self.get(variance_id)

    def reopen_expired(self, today: date, at: datetime | None = None) -> list[str]:
        """Reopen every watched variance whose deadline passed before `today` without the
        matcher withdrawing it (`expired` is the rule); returns their ids."""
        at = at or datetime.now(timezone.utc)
        watched = self.frame("watched")
        ids = [r["variance_id"] for r in watched.iter_rows(named=True) if expired(r, today)]
        if ids:
            note = "reopened: the timing difference did not clear by its date"
            self.con.execute("BEGIN")
            self.con.execute(
                "UPDATE variances SET status = 'open', note = ?, watch_until = NULL"
                " WHERE list_contains(?, variance_id)",
                [note, ids],
            )
            self.con.executemany(
                f"{_HISTORY} VALUES (?, ?, 'open', NULL, ?, ?, 'timing_expired', NULL)",
                [[i, at, note, SYSTEM_ACTOR] for i in ids],
            )
            self.con.execute("COMMIT")
        return ids

    def withdraw(self, variance_ids: list[str], note: str, at: datetime | None = None) -> list[str]:
        """Resolve, with `note`, variances the matcher no longer finds (a record first
        called missing arrived late); one already resolved by a person keeps their note.
        Returns the ids that moved; each gets a `withdrawn` history row."""
        at = at or datetime.now(timezone.utc)
        ids = [
            r[0]
            for r in self.con.execute(
                "SELECT variance_id FROM variances WHERE status <> 'resolved' AND list_contains(?, variance_id)",
                [variance_ids],
            ).fetchall()
        ]
        if ids:
            self.con.execute("BEGIN")
            self.con.execute(
                "UPDATE variances SET status = 'resolved', note = ? WHERE list_contains(?, variance_id)", [note, ids]
            )
            self.con.executemany(
                f"{_HISTORY} VALUES (?, ?, 'withdrawn', NULL, ?, NULL, NULL, NULL)", [[i, at, note] for i in ids]
            )
            self.con.execute("COMMIT")
        return ids

    def get(self, variance_id: str) -> dict:
        rows = self.con.sql("SELECT * FROM variances WHERE variance_id = ?", params=[variance_id]).pl()
        if rows.is_empty():
            raise VarianceNotFound(f"no variance {variance_id!r} in {self.path} (ids look like var_ and 20 hex digits)")
        return rows.row(0, named=True)

    def history(self, variance_id: str) -> pl.DataFrame:
        return self.con.sql(
            "SELECT * FROM history WHERE variance_id = ? ORDER BY changed_at, status", params=[variance_id]
        ).pl()

    def frame(self, status: str | None = None) -> pl.DataFrame:
        """Every stored variance (or those with `status`), oldest break first."""
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        return self.con.sql(f"SELECT * FROM variances {where} ORDER BY since, variance_id", params=args).pl()


def publish(state_dir: Path, store: VarianceStore, *, checkpoint: bool = False) -> Path:
    """Write the store as the published snapshot (`PUBLISHED`, and its history as
    `PUBLISHED_HISTORY`, written first), each atomically: readers see the previous file or
    the new one. The running flow publishes after each change; a process that changed the
    store while no flow held it (the workbench) publishes the same way, with `checkpoint`:
    the store's file is then not written after the snapshot by its close (a reader
    comparing the two times would take the snapshot for stale). The flow, which publishes
    at every change, leaves checkpoints to DuckDB."""
    if checkpoint:
        store.con.execute("CHECKPOINT")
    for name, frame in (
        (PUBLISHED_HISTORY, store.con.sql("SELECT * FROM history ORDER BY changed_at, variance_id").pl()),
        (PUBLISHED, store.frame()),
    ):
        path = state_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    return state_dir / PUBLISHED


def read_variances(state_dir: Path, status: str | None = None) -> pl.DataFrame | None:
    """Every stored variance (or those with `status`), oldest break first; from the
    flow's published snapshot while a running flow holds the store. None when there is
    no store at all."""
    path = state_dir / "variances.duckdb"
    if not path.is_file():
        return None
    try:
        store = VarianceStore(path)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        rows = pl.read_parquet(state_dir / PUBLISHED)
        return (rows.filter(pl.col("status") == status) if status else rows).sort("since", "variance_id")
    with store:
        return store.frame(status)
