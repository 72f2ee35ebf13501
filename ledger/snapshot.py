"""Immutable Parquet snapshots of the ledger, for every process but the ledger flow.

DuckDB lets no other process open a database file while one process writes it, so the
flow — the store's only owner — publishes what it committed after every batch, and
reports, notebooks, the API and the CLI read that instead (`read_snapshot`).

Layout of a snapshot directory:

    CURRENT                                   name of the newest manifest (replaced last)
    manifests/v000000000042.json              one manifest per published store version
    events/<store>_<from>_<to>.parquet        rows with from < version ≤ to
    postings/<store>_<from>_<to>.parquet
    rejections/<store>_<from>_<to>.parquet

Publication is incremental: each call exports only the rows committed since the version
the current manifest covers — straight from the Arrow tables the store just inserted
while it still holds them (`LedgerStore.committed_since`), else read back with one DuckDB
`COPY … WHERE version > from` per table inside one read transaction (after a restart, or
when publication fell far behind) — puts the offsets table (one row per partition, with
the chain heads and counters) inline in the manifest, and moves the pointers. Every file
is written under a temporary name and `os.replace`d into place; the manifest after its
files; `CURRENT` last. A reader sees the previous snapshot or the new one, never a part
of one, and a published file is never modified.

Compaction keeps the file count small: whenever the newest `fanout` files of a table are
all of one level (level 0 = one publication) they are merged into one file of the next
level, up to `max_level` (defaults 16 and 2: with 4k postings a batch, a level-2 file
holds ~1M rows and no merge rewrites more). Merged-away files are retired, not deleted:
they stay for `grace_s` seconds so a reader holding an older manifest can still open
them; only the last `keep_manifests` manifests are kept.

Cost (2,000 events × 2 postings a batch, 2-core machine): ~10 ms a publication, plus
merges — ~150 ms every 16 publications, ~2 s every 256 at level 2. The flow should
therefore publish through `SnapshotPublisher`, a background thread that coalesces
batches and keeps both off the flow's path; `publish_snapshot` is the synchronous form.
There must be one publisher per directory.

If the store was rebuilt (another `store_id`, or an older version than the snapshot) the
next publication starts a fresh lineage and retires every file of the old one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clearline.ledger import chain
from clearline.ledger import store as _store

FORMAT = 1
DATA_TABLES = ("events", "postings", "rejections")
SCHEMAS = {
    "events": _store.EVENTS_SCHEMA,
    "postings": _store.POSTINGS_SCHEMA,
    "rejections": _store.REJECTIONS_SCHEMA,
    "offsets": _store.OFFSETS_SCHEMA,
}


class SnapshotNotFound(FileNotFoundError):
    """The directory holds no published snapshot."""


@dataclass(frozen=True)
class Published:
    version: int
    head: str
    new_rows: dict[str, int]  # rows exported per table by this publication
    files: dict[str, int]  # live files per table after it
    seconds: float
    noop: bool = False


# ------------------------------------------------------------------------------ helpers


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _current(root: Path) -> dict[str, Any] | None:
    """The manifest CURRENT names, or None if nothing was published."""
    for _ in range(5):  # CURRENT may move on between the two reads; its manifest is then gone
        try:
            name = (root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return json.loads((root / "manifests" / name).read_text())
        except FileNotFoundError:
            time.sleep(0.01)
    raise SnapshotNotFound(f"{root}: CURRENT names a manifest that keeps disappearing")


def _manifest_name(version: int) -> str:
    return f"v{version:012d}.json"


def _copy(con: duckdb.DuckDBPyConnection, query: str, dest: Path) -> int:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    n = con.execute(f"COPY ({query}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)").fetchall()[0][0]
    os.replace(tmp, dest)
    return int(n)


# ------------------------------------------------------------------------------ publish


def publish_snapshot(
    store: "_store.LedgerStore",
    directory: str | Path,
    *,
    fanout: int = 16,
    max_level: int = 2,
    grace_s: float = 600.0,
    keep_manifests: int = 16,
) -> Published:
    """Publish what `store` committed since the last snapshot in `directory`."""
    t0 = time.perf_counter()
    root = Path(directory)
    for sub in ("manifests", *DATA_TABLES):
        (root / sub).mkdir(parents=True, exist_ok=True)
    prev = _current(root)
    now = time.time()
    sid = store.store_id
    if prev is not None and prev["store_id"] == sid and prev["version"] == store.version:
        return Published(
            prev["version"],
            prev["head"],
            {},
            {t: len(prev["tables"][t]) for t in DATA_TABLES},
            time.perf_counter() - t0,
            noop=True,
        )
    tables: dict[str, list[dict]] = {t: [] for t in DATA_TABLES}
    retired: list[dict] = []
    base = 0
    if prev is not None:
        retired = list(prev.get("retired", []))
        if prev["store_id"] == sid and prev["version"] <= store.version:
            tables, base = {t: list(prev["tables"][t]) for t in DATA_TABLES}, prev["version"]
        else:  # the store was rebuilt: a fresh lineage, the old one retires
            retired += [{"file": f["file"], "at": now} for t in DATA_TABLES for f in prev["tables"][t]]

    new_rows = {t: 0 for t in DATA_TABLES}

    def add(t: str, version: int, rows: int, dest: Path) -> None:
        new_rows[t] = rows
        tables[t].append({"file": f"{t}/{dest.name}", "from": base, "to": version, "rows": rows, "level": 0})

    def dest_of(t: str, version: int) -> Path:
        return root / t / f"{sid[:12]}_{base:012d}_{version:012d}.parquet"

    recent = store.committed_since(base)
    if recent is not None:  # the batches since `base` are still in memory: no read-back
        version, fresh, offsets = recent
        for t in DATA_TABLES:
            if fresh[t]:
                tbl = pa.concat_tables(fresh[t]) if len(fresh[t]) > 1 else fresh[t][0]
                dest = dest_of(t, version)
                tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                pq.write_table(tbl, tmp, compression="zstd")
                os.replace(tmp, dest)
                add(t, version, tbl.num_rows, dest)
    else:  # read them back from the store, in one read transaction (one consistent state)
        cur = store.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            version = _store.current_version(cur)
            for t in DATA_TABLES:
                where = f"version > {base} AND version <= {version}"
                if cur.execute(f"SELECT COUNT(*) FROM {t} WHERE {where}").fetchall()[0][0]:
                    dest = dest_of(t, version)
                    add(t, version, _copy(cur, f"SELECT * FROM {t} WHERE {where}", dest), dest)
            offsets = cur.execute(
                f"SELECT {', '.join(_store.OFFSETS_SCHEMA.names)} FROM offsets ORDER BY topic, partition"
            ).fetchall()
        finally:
            cur.execute("COMMIT")
            cur.close()

    for t in DATA_TABLES:
        retired += _compact(root, t, tables[t], fanout, max_level, now)
    head = chain.ledger_head((r[0], r[1], r[7], r[8]) for r in offsets)
    keep = []
    for r in retired:  # files merged away (or of an old lineage) go once no reader can need them
        if now - r["at"] >= grace_s:
            (root / r["file"]).unlink(missing_ok=True)
        else:
            keep.append(r)
    manifest = {
        "format": FORMAT,
        "store_id": sid,
        "version": version,
        "head": head,
        "published_at": datetime.fromtimestamp(now, timezone.utc).isoformat(),
        "tables": tables,
        "offsets": [dict(zip(_store.OFFSETS_SCHEMA.names, r)) for r in offsets],
        "retired": keep,
    }
    name = _manifest_name(version)
    _write_atomic(root / "manifests" / name, json.dumps(manifest, separators=(",", ":")).encode())
    _write_atomic(root / "CURRENT", name.encode())
    _prune_manifests(root, keep_manifests)
    if str(root.resolve()) not in _swept:
        _sweep_orphans(root, manifest, grace_s, now)
    return Published(version, head, new_rows, {t: len(tables[t]) for t in DATA_TABLES}, time.perf_counter() - t0)


def _compact(root: Path, table: str, files: list[dict], fanout: int, max_level: int, now: float) -> list[dict]:
    """Merge the newest run of `fanout` same-level files into one (repeatedly); returns
    the retired entries. Files stay in version order, so the result is the same rows."""
    retired: list[dict] = []
    if fanout < 2:
        return retired
    while len(files) >= fanout:
        run = files[-fanout:]
        level = run[0]["level"]
        if level >= max_level or any(f["level"] != level for f in run):
            break
        dest = (
            root
            / table
            / f"{Path(run[0]['file']).name.split('_')[0]}_{run[0]['from']:012d}_{run[-1]['to']:012d}.parquet"
        )
        listing = ", ".join(f"'{root / f['file']}'" for f in run)
        with duckdb.connect(config={"memory_limit": "256MB", "threads": 1}) as con:  # beside a running flow
            con.execute("SET TimeZone = 'UTC'")
            rows = _copy(con, f"SELECT * FROM read_parquet([{listing}], union_by_name = true)", dest)
        del files[-fanout:]
        files.append(
            {
                "file": f"{table}/{dest.name}",
                "from": run[0]["from"],
                "to": run[-1]["to"],
                "rows": rows,
                "level": level + 1,
            }
        )
        retired += [{"file": f["file"], "at": now} for f in run]
    return retired


_swept: set[str] = set()


def _sweep_orphans(root: Path, manifest: dict[str, Any], grace_s: float, now: float) -> None:
    """Once per process and directory: delete data files no manifest names (left by a
    publisher that died between writing its files and moving CURRENT), once old enough."""
    _swept.add(str(root.resolve()))
    named = {f["file"] for t in DATA_TABLES for f in manifest["tables"][t]} | {r["file"] for r in manifest["retired"]}
    for t in DATA_TABLES:
        for p in (root / t).iterdir():
            rel = f"{t}/{p.name}"
            try:
                if rel not in named and now - p.stat().st_mtime >= grace_s:
                    p.unlink()
            except FileNotFoundError:
                pass


def _prune_manifests(root: Path, keep: int) -> None:
    names = sorted(p.name for p in (root / "manifests").glob("v*.json"))
    for name in names[:-keep] if keep > 0 else []:
        (root / "manifests" / name).unlink(missing_ok=True)


class SnapshotPublisher:
    """Publishes from a background thread, so the flow never waits for Parquet or for a
    compaction: call `notify()` after each committed batch; the thread publishes
    everything committed since its last publication (several batches become one
    increment when it falls behind). An error in the thread is raised by the next
    `notify`, `flush` or `stop`. One publisher (or one caller of `publish_snapshot`)
    per directory.

        publisher = SnapshotPublisher(store, "data/ledger-snapshot").start()
        for batch in batches:
            store.apply(batch)
            publisher.notify()
        publisher.stop()          # publishes what is left
    """

    def __init__(
        self,
        store: "_store.LedgerStore",
        directory: str | Path,
        poll_s: float = 1.0,
        interval_s: float = 0.0,
        **options: Any,
    ):
        """`interval_s`: the least time between two publications. Under load each one
        then covers several batches — fewer, larger files and merges, and less of the
        flow's CPU — at the price of readers seeing commits up to that much later.
        `flush` and `stop` do not wait for it, nor does `notify` once the store's
        in-memory window is half full of unpublished rows."""
        self.store, self.directory, self.poll_s, self.options = store, Path(directory), poll_s, options
        self.interval_s = interval_s
        self.last: Published | None = None
        self.error: BaseException | None = None
        self._wake = threading.Event()
        self._urgent = threading.Event()  # flush/stop: end the pause between publications
        self._done = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="ledger-snapshot", daemon=True)

    def start(self) -> "SnapshotPublisher":
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self._wake.wait(self.poll_s)
            self._wake.clear()
            stopping = self._stop  # read before publishing: this round covers all commits before stop()
            try:
                if self.last is None or self.last.version != self.store.version:
                    self.last = publish_snapshot(self.store, self.directory, **self.options)
            except BaseException as exc:  # surfaced to the flow by notify/flush/stop
                self.error = exc
            with self._done:
                self._done.notify_all()
            if stopping or self.error is not None:
                return
            if self.interval_s > 0 and self._urgent.wait(self.interval_s):
                self._urgent.clear()

    def _raise(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"ledger snapshot publication failed: {self.error}") from self.error

    def notify(self) -> None:
        """A batch was committed. Publication waits out `interval_s`, unless the rows
        committed since the last one fill half the store's in-memory window: it then
        publishes at once, from memory, before the store drops them and a publication
        would have to read them back from the file (several times the CPU, measured)."""
        self._raise()
        if self.store.held_share_since(self.last.version if self.last else 0) > 0.5:
            self._urgent.set()
        self._wake.set()

    def flush(self, timeout: float | None = 60.0) -> Published | None:
        """Wait until the store's current version is published."""
        target = self.store.version
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            while (self.last is None or self.last.version < target) and self.error is None:
                if not self._thread.is_alive():
                    break
                self._wake.set()
                self._urgent.set()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"ledger snapshot not published within {timeout} s")
                self._done.wait(1.0 if left is None else min(left, 1.0))
        self._raise()
        return self.last

    def stop(self, timeout: float | None = 60.0) -> Published | None:
        self._stop = True
        self._wake.set()
        self._urgent.set()
        self._thread.join(timeout)
        self._raise()
        return self.last


# ------------------------------------------------------------------------------- read


class Snapshot:
    """One published version — or one per shard, read together — through an in-memory
    DuckDB (`con`) whose views `events`, `postings`, `rejections` read the Parquet files
    and whose `offsets` table comes from the manifests. The same queries as the store
    work on it (`balances`, `statement`, `stats`, `chain.verify`, `invariants.check`).

    Shards (one store per worker, each owning its partitions) combine naturally: chains
    are per partition, so the ledger head over all shards' partition heads is the head a
    single store would have. `version` is the shard's store version, or for several
    shards the sum of theirs (`versions` lists each).

    Files retired by a later compaction remain readable for the publisher's grace
    period; a long-lived reader should call `read_snapshot` again now and then."""

    def __init__(self, roots: list[Path], manifests: list[dict[str, Any]]):
        self.roots, self.manifests = roots, manifests
        self.root, self.manifest = roots[0], manifests[0]
        self.versions: list[int] = [m["version"] for m in manifests]
        self.version: int = sum(self.versions)
        self.store_id: str = ",".join(m["store_id"] for m in manifests)
        offsets = [row for m in manifests for row in m["offsets"]]
        self.head: str = (
            manifests[0]["head"]
            if len(manifests) == 1
            else chain.ledger_head((r["topic"], r["partition"], r["chain_length"], r["head"]) for r in offsets)
        )
        self.published_at = min(datetime.fromisoformat(m["published_at"]) for m in manifests)
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        for t in DATA_TABLES:
            files = self.files(t)
            if files:
                listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
                self.con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet([{listing}], union_by_name = true)")
            else:
                self._table(t, SCHEMAS[t].empty_table())
        self._table(
            "offsets",
            pa.Table.from_pylist(offsets, schema=SCHEMAS["offsets"]) if offsets else SCHEMAS["offsets"].empty_table(),
        )

    def _table(self, name: str, data: pa.Table) -> None:
        self.con.register(f"_{name}_in", data)
        self.con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}_in")
        self.con.unregister(f"_{name}_in")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own to the snapshot's views (one per thread or query)."""
        cur = self.con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    def files(self, table: str) -> list[Path]:
        return [root / f["file"] for root, m in zip(self.roots, self.manifests) for f in m["tables"][table]]

    def scan(self, table: str) -> pl.LazyFrame:
        """A Polars LazyFrame over one table of the snapshot."""
        if table == "offsets" or not self.files(table):
            return self.cursor().sql(f"SELECT * FROM {table}").pl().lazy()
        return pl.scan_parquet(self.files(table))

    def sql(self, query: str, params: list | None = None) -> pl.DataFrame:
        return self.cursor().sql(query, params=params).pl()

    def balances(
        self, as_of: datetime | None = None, account: str | None = None, tenant: str | None = None
    ) -> pl.DataFrame:
        return _store.balances(self.cursor(), as_of, account, tenant)

    def statement(self, account: str, from_: datetime | None = None, to: datetime | None = None) -> pl.DataFrame:
        return _store.statement(self.cursor(), account, from_, to)

    def stats(self) -> dict[str, Any]:
        return _store.stats(self.cursor(), self.version)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_snapshot(directory: str | Path | list[str | Path]) -> Snapshot:
    """The latest published snapshot in `directory`; given a list of directories, or a
    directory whose subdirectories hold snapshots (one per shard), all of them together."""
    if isinstance(directory, (str, Path)):
        root = Path(directory)
        roots = (
            [root]
            if (root / "CURRENT").exists() or not root.is_dir()
            else sorted(p.parent for p in root.glob("*/CURRENT")) or [root]
        )
    else:
        roots = [Path(d) for d in directory]
    manifests = []
    for root in roots:
        manifest = _current(root)
        if manifest is None:
            raise SnapshotNotFound(
                f"{root} holds no ledger snapshot (no CURRENT); the ledger flow publishes one "
                "after its first committed batch"
            )
        if manifest.get("format") != FORMAT:
            raise SnapshotNotFound(f"{root}: snapshot format {manifest.get('format')} is not {FORMAT}")
        manifests.append(manifest)
    if not manifests:
        raise SnapshotNotFound("no snapshot directory given")
    return Snapshot(roots, manifests)
