"""The event archive: every event the ledger posted, with where it was consumed, as Parquet
partitioned by event date — the stable input for backtests, training and replays.

    <root>/event_date=2026-01-05/s0-p0-o000000001234-o000000005678.parquet

Each file holds one committed batch's new events of one partition and one date; its name
carries the ledger shard that wrote it, the partition and the offset range. A file is written
(atomically, by rename) before
the ledger commits the batch, so after a crash a file whose offsets the ledger never
committed is an orphan: `remove_uncommitted` deletes it at start-up and the replay writes
those events again. That is how the archive holds every event exactly once.

Columns: event_id, event_type, occurred_at (UTC), merchant_id, reseller_id,
schema_version, body (the message exactly as consumed: contract JSON, signed bytes),
topic, partition, offset. Readers parse `body` with `clearline.events.decode`.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clearline import events
from clearline.ledger.model import Source

_NAME = re.compile(r"s(\d+)-p(\d+)-o(\d+)-o(\d+)\.parquet")
SCHEMA = {
    "event_id": pl.String,
    "event_type": pl.String,
    "occurred_at": pl.Datetime("us", "UTC"),
    "merchant_id": pl.String,
    "reseller_id": pl.String,
    "schema_version": pl.Int64,
    "body": pl.Binary,
    "topic": pl.String,
    "partition": pl.Int64,
    "offset": pl.Int64,
}

_ARROW = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("merchant_id", pa.string()),
        ("reseller_id", pa.string()),
        ("schema_version", pa.int64()),
        ("body", pa.binary()),
        ("topic", pa.string()),
        ("partition", pa.int64()),
        ("offset", pa.int64()),
    ]
)


def write_batch(root: Path, shard: int, rows: list[tuple[events.Event, Source, bytes]]) -> list[Path]:
    """Write one batch's new events, one file per (event date, partition): the batch's
    columns converted to Arrow once, each file's rows taken from them (in batch order)."""
    if not rows:
        return []
    evs = [e for e, _, _ in rows]
    sources = [s for _, s, _ in rows]
    table = pa.table(
        {
            "event_id": [e.event_id for e in evs],
            "event_type": [e.event_type for e in evs],
            "occurred_at": [e.occurred_at for e in evs],
            "merchant_id": [e.merchant_id for e in evs],
            "reseller_id": [e.reseller_id for e in evs],
            "schema_version": [e.schema_version for e in evs],
            "body": [b for _, _, b in rows],
            "topic": [s.topic for s in sources],
            "partition": [s.partition for s in sources],
            "offset": [s.offset for s in sources],
        },
        schema=_ARROW,
    )
    groups: dict[tuple[date, int], list[int]] = defaultdict(list)
    for i, (e, s) in enumerate(zip(evs, sources)):
        groups[(e.occurred_at.date(), s.partition)].append(i)
    written = []
    for (day, partition), index in sorted(groups.items()):
        folder = root / f"event_date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        offsets = [sources[i].offset for i in index]
        path = folder / f"s{shard}-p{partition}-o{min(offsets):012d}-o{max(offsets):012d}.parquet"
        tmp = path.with_suffix(".tmp")
        part = table if len(index) == len(rows) else table.take(pa.array(index, pa.int64()))
        # no dictionaries: most columns are unique per row, and trying costs more than it saves
        pq.write_table(part, tmp, use_dictionary=False)
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
