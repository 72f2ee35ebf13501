"""What the workbench reads: other components' published snapshots, never their stores.

- Variances: the recon flow's published Parquet snapshot (`clearline.recon.PUBLISHED_VARIANCES`
  under the recon state folder), through an in-memory DuckDB view that reads the file at
  each query (the flow replaces it atomically, so a query sees one whole snapshot). When
  there is no snapshot yet but a variance store no flow holds (a batch `clearline recon`
  run), or one written after the snapshot (a batch run or `recon resolve` since), the
  store is published (`publish_variances`) and closed at once; one a flow holds is left to
  the flow, which publishes after every change.
- Merchant owners (merchant -> reseller): the ledger's event archive, whose every event
  names both (the decision API reads the same); a variance of no known merchant (a payout
  batch, an unexplained bank line) is the platform's only.
- Ledger postings and the events behind a variance: the ledger's published snapshot
  (`clearline.ledger.access`) and the archive's event bodies.
- Processor and bank lines as they stand in their files: intake's validated lines (raw
  row, file name, line number), found by a variance's `file:line` evidence.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from clearline.pipelines.workbench.settings import WorkbenchSettings

# columns a snapshot written before the workbench lacks, with their types
_ADDED = {"code": "VARCHAR", "watch_until": "DATE", "note": "VARCHAR", "assignee": "VARCHAR"}
_FILE_LINE = re.compile(r"^(?P<file>[^\[{].*):(?P<line>\d+)$")
_OWNERS_TTL_S = 30.0
_HELD_RETRY_S = 5.0  # a store a flow held is not tried again sooner


class NoVariances(FileNotFoundError):
    """Neither a published snapshot nor a variance store: the recon flow has not run."""


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def file_lines(evidence: list[str] | None) -> list[tuple[str, int]]:
    """The (file name, line number) entries of a variance's evidence, in order (the
    evidence also holds variance ids and raw rows, which are not file lines)."""
    out = []
    for item in evidence or []:
        m = _FILE_LINE.match(item)
        if m and not item.startswith("var_"):
            out.append((m["file"], int(m["line"])))
    return out


class Sources:
    def __init__(self, settings: WorkbenchSettings) -> None:
        self.settings = settings
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()
        self._view_of: tuple | None = None  # the snapshot file the view was made for
        self._owners_at = 0.0
        self._held_at = -_HELD_RETRY_S  # when the store was last found held by a flow
        self.con.execute("CREATE TABLE owners (merchant_id VARCHAR PRIMARY KEY, reseller_id VARCHAR)")

    @property
    def published(self) -> Path:
        from clearline.recon import PUBLISHED_VARIANCES

        return self.settings.recon_state / PUBLISHED_VARIANCES

    def refresh(self) -> None:
        """Point `variances` at the current snapshot and reload the owners when stale."""
        with self._lock:
            path = self.published
            if not path.is_file() or self._store_changed_since(path):
                self._publish_free_store()
            if not path.is_file():
                raise NoVariances(
                    f"no published variances at {path}: run `clearline recon run` (or `clearline recon`) first"
                )
            seen = path.stat()
            key = (path, seen.st_ino, seen.st_mtime_ns, seen.st_size)  # a new snapshot is a new file (renamed in)
            if key != self._view_of:
                described = self.con.execute(f"DESCRIBE SELECT * FROM read_parquet({_quote(path)})").fetchall()
                columns = {r[0] for r in described}
                extra = "".join(f", NULL::{t} AS {c}" for c, t in _ADDED.items() if c not in columns)
                self.con.execute(
                    f"CREATE OR REPLACE VIEW variances AS SELECT *{extra} FROM read_parquet({_quote(path)})"
                )
                self._view_of = key
            if time.monotonic() - self._owners_at > _OWNERS_TTL_S:
                self._load_owners()

    def _store_changed_since(self, published: Path) -> bool:
        """The variance store (or its write-ahead log) was written after the snapshot: a
        batch `clearline recon` or `recon resolve` changed it with no flow to publish."""
        store = self.settings.recon_state / "variances.duckdb"
        written = [f.stat().st_mtime_ns for f in (store, store.with_name(store.name + ".wal")) if f.is_file()]
        return bool(written) and max(written) > published.stat().st_mtime_ns

    def _publish_free_store(self) -> None:
        from clearline.recon import VarianceStore, publish_variances

        store_path = self.settings.recon_state / "variances.duckdb"
        if not store_path.is_file():
            return
        if time.monotonic() - self._held_at < _HELD_RETRY_S:
            return
        try:
            store = VarianceStore(store_path)
        except duckdb.IOException:  # a flow holds it: it publishes on its own
            self._held_at = time.monotonic()
            return
        with store:
            publish_variances(self.settings.recon_state, store, checkpoint=True)

    def _load_owners(self) -> None:
        files = sorted((self.settings.ledger_state / "archive").glob("event_date=*/*.parquet"))
        self.con.execute("BEGIN")  # readers on other cursors see the old owners or the new, never none
        try:
            self.con.execute("DELETE FROM owners")
            if files:
                listing = ", ".join(_quote(f) for f in files)
                self.con.execute(
                    "INSERT INTO owners SELECT merchant_id, min(reseller_id) FROM read_parquet"
                    f"([{listing}], union_by_name = true) WHERE merchant_id IS NOT NULL GROUP BY merchant_id"
                )
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self._owners_at = time.monotonic()

    def reload_owners(self) -> None:
        with self._lock:
            self._load_owners()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        self.refresh()
        return self.con.cursor()

    # ------------------------------------------------------------------ one variance

    def variance(self, variance_id: str) -> dict | None:
        rows = self.cursor().sql("SELECT * FROM variances WHERE variance_id = ?", params=[variance_id]).pl()
        return rows.row(0, named=True) if rows.height else None

    def owner(self, merchant_id: str | None) -> str | None:
        if merchant_id is None:
            return None
        row = self.cursor().execute("SELECT reseller_id FROM owners WHERE merchant_id = ?", [merchant_id]).fetchone()
        return row[0] if row else None

    def values(self, column: str, tenant: str | None) -> list[str]:
        """The distinct values of a column among the variances a tenant sees (filter choices)."""
        where, args = ("WHERE merchant_id IN (SELECT merchant_id FROM owners WHERE reseller_id = ?)", [tenant])
        if tenant is None:
            where, args = "", []
        rows = self.cursor().execute(f"SELECT DISTINCT {column} FROM variances {where} ORDER BY 1", args).fetchall()
        return [r[0] for r in rows if r[0] is not None]

    def postings(self, event_ids: list[str]) -> list[dict]:
        """The ledger postings of these events, from the ledger's published snapshot."""
        if not event_ids:
            return []
        from clearline.ledger import access

        try:
            snap = access.snapshot(self.settings.ledger_state)
        except access.LedgerNotFound:
            return []
        with snap:
            return snap.sql(
                "SELECT event_id, seq, account, side, amount_minor, currency, occurred_at FROM postings"
                " WHERE list_contains(?, event_id) ORDER BY occurred_at, event_id, seq",
                [event_ids],
            ).to_dicts()

    def events(self, event_ids: list[str]) -> list[dict]:
        """The events behind a variance as the ledger consumed them (the archive's bodies)."""
        files = sorted((self.settings.ledger_state / "archive").glob("event_date=*/*.parquet"))
        if not event_ids or not files:
            return []
        rows = (
            pl.scan_parquet(files)
            .filter(pl.col("event_id").is_in(event_ids))
            .select("event_id", "event_type", "occurred_at", "merchant_id", "reseller_id", "body")
            .collect()
        )
        out = []
        for r in rows.sort("occurred_at").iter_rows(named=True):
            try:
                payload = json.loads(r.pop("body")).get("payload")
            except ValueError:
                payload = None
            out.append({**r, "payload": payload})
        return out

    def lines(self, evidence: list[str] | None) -> list[dict]:
        """The processor and bank lines a variance's evidence names, as intake stored them:
        kind, file, line number, the raw row when the format keeps one, and the fields."""
        wanted = file_lines(evidence)
        if not wanted:
            return []
        found: list[dict] = []
        for kind in ("processor", "bank"):
            files = sorted((self.settings.recon_state / "lines" / kind).glob("*/*.parquet"))
            if not files:
                continue
            keys = pl.DataFrame({"source_file": [f for f, _ in wanted], "line_no": [n for _, n in wanted]})
            rows = pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore").join(
                keys.lazy(), on=["source_file", "line_no"]
            )
            for r in rows.collect().iter_rows(named=True):
                raw = r.pop("raw", None)
                found.append({"kind": kind, "file": r["source_file"], "line": r["line_no"], "raw": raw, "fields": r})
        order = {w: i for i, w in enumerate(wanted)}
        return sorted(found, key=lambda r: order.get((r["file"], r["line"]), 0))

    def tenant_of(self, variance: dict[str, Any]) -> str | None:
        return self.owner(variance.get("merchant_id"))
