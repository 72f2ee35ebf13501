"""The event archive: every event the ledger posted, with where it was consumed, as Parquet
partitioned by event date — the stable input for backtests, training and replays.

    <root>/event_date=2026-01-05/s0-p0-o000000001234-o000000005678.parquet

Each file holds one committed batch's new events of one partition and one date; its name
carries the ledger shard that wrote it, the partition and the offset range. A file is written (atomically, by rename) before
the ledger commits the batch, so after a crash a file whose offsets the ledger never
committed is an orphan: `remove_uncommitted` deletes it at start-up and the replay writes
those events again. That is how the archive holds every event exactly once.

Columns: event_id, event_type, occurred_at (UTC), merchant_id, reseller_id,
schema_version, body (the message exactly as consumed: contract JSON, signed bytes),
topic, partition, offset. Readers parse `body` with `pipelines.events.decode`.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import events
from recon.ledger.model import Source

_NAME = re.compile(r"s(\d+)-p(\d+)-o(\d+)-o(\d+)\.parquet")
SCHEMA = {
    "event_id": pl.String, "event_type": pl.String, "occurred_at": pl.Datetime("us", "UTC"),
    "merchant_id": pl.String, "reseller_id": pl.String, "schema_version": pl.Int64,
    "body": pl.Binary, "topic": pl.String, "partition": pl.Int64, "offset": pl.Int64,
}

_ARROW = pa.schema([
    ("event_id", pa.string()), ("event_type", pa.string()), ("occurred_at", pa.timestamp("us", tz="UTC")),
    ("merchant_id", pa.string()), ("reseller_id", pa.string()), ("schema_version", pa.int64()),
    ("body", pa.binary()), ("topic", pa.string()), ("partition", pa.int64()), ("offset", pa.int64()),
])


def write_batch(root: Path, shard: int, rows: list[tuple[events.Event, Source, bytes]]) -> list[Path]:
    """Write one batch's new events, one file per (event date, partition)."""
    groups: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: {k: [] for k in SCHEMA})
    for e, s, body in rows:
        cols = groups[(e.occurred_at.date().isoformat(), s.partition)]
        for k, v in zip(SCHEMA, (e.event_id, e.event_type, e.occurred_at, e.merchant_id, e.reseller_id,
                                  e.schema_version, body, s.topic, s.partition, s.offset)):
            cols[k].append(v)
    written = []
    for (day, partition), cols in sorted(groups.items()):
        folder = root / f"event_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"s{shard}-p{partition}-o{min(cols['offset']):012d}-o{max(cols['offset']):012d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.table(cols, schema=_ARROW), tmp)
        os.replace(tmp, path)
        written.append(path)
    return written


def remove_uncommitted(root: Path, shard: int, next_offsets: dict[int, int]) -> list[Path]:
    """Delete this shard's files holding offsets its ledger never committed (left by a
    crash). Other shards' files are theirs to judge: their offsets are not in this store."""
    removed = []
    for path in sorted(root.glob(f"event_date=*/s{shard}-*")):
        m = _NAME.fullmatch(path.name)
        if path.suffix == ".tmp" or (m and int(m.group(3)) >= next_offsets.get(int(m.group(2)), 0)):
            path.unlink()
            removed.append(path)
    return removed


def scan(root: Path) -> pl.LazyFrame:
    """The whole archive as one lazy frame (empty with the right columns if none yet)."""
    files = sorted(root.glob("event_date=*/*.parquet"))
    if not files:
        return pl.LazyFrame(schema=SCHEMA)
    return pl.scan_parquet(files).select(list(SCHEMA))
