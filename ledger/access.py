"""How commands other than the flow read the ledger.

The running flow owns its DuckDB shards; everyone else reads the Parquet snapshots it
publishes (`clearline.ledger.snapshot`). `verify` is the exception that proves the rule: it
must see the stored rows themselves (tampering happens in the store), so it opens the
shards when no flow holds them and says so when it has to fall back to the snapshot.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from clearline.ledger.snapshot import Snapshot, SnapshotNotFound, read_snapshot
from clearline.ledger.store import LedgerStore


class LedgerNotFound(FileNotFoundError):
    """No ledger state in the folder: the flow has not run there yet."""


def shard_stores(state_dir: Path) -> list[Path]:
    return sorted((state_dir / "shards").glob("shard-*/ledger.duckdb"))


def snapshot(state_dir: Path) -> Snapshot:
    try:
        return read_snapshot(state_dir / "snapshots")
    except SnapshotNotFound as exc:
        raise LedgerNotFound(f"no ledger in {state_dir}: run `clearline ledger run` first ({exc})") from None


@contextmanager
def stores_if_free(state_dir: Path) -> Iterator[list[LedgerStore] | None]:
    """The shard stores opened, or None when a running flow holds them."""
    paths = shard_stores(state_dir)
    if not paths:
        raise LedgerNotFound(f"no ledger in {state_dir}: run `clearline ledger run` first")
    with ExitStack() as stack:
        try:
            stores = [stack.enter_context(LedgerStore(p)) for p in paths]
        except duckdb.IOException:  # the flow's lock: read the snapshot instead
            stores = None
        yield stores
