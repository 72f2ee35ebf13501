"""The project's point-in-time join, and the comparison with Feast's.

A decision at time t may only see a feature row that was both *about* a moment at or
before t (`event_timestamp <= t`) and *known* by then (`created <= t`); of those it gets
the latest (by event_timestamp, then created). That is Feast's rule for
`get_historical_features(..., filter_by_created_timestamp=True)` — without the created
filter a backfilled row leaks into earlier decisions (REFERENCE.md).

Feast evaluates it as a range join and a sort per entity row. Here it is one as-of join:

1. a row becomes usable at `available = max(event_timestamp, created)`: both conditions
   hold exactly when `available <= t`;
2. in `available` order per entity, only rows that beat every earlier one on
   (event_timestamp, created) can ever be the answer — a row that arrives later but is
   about an older moment loses to what was already known — so the others are dropped;
3. of the remaining rows the answer is simply the last one available at or before t,
   which a backward `join_asof` on `available` finds.

    join(decisions, history, key, features)   decisions + the features as of each row
    compare(ours, feasts, key, features)      differences between two training sets
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import polars as pl

TIMESTAMP, CREATED = "event_timestamp", "created"
AVAILABLE = "feature_available_at"  # when the matched row became usable; kept for the leakage check


def join(decisions: pl.DataFrame, history: pl.DataFrame, key: str, features: Sequence[str],
         at: str = TIMESTAMP) -> pl.DataFrame:
    """`decisions` (with `key` and the time column `at`) in their own order, each with the
    `features` of the latest usable `history` row, nulls where there is none, and
    `feature_available_at` (null without a row)."""
    ts, created = pl.col(TIMESTAMP), pl.col(CREATED)
    usable = (history.select(key, TIMESTAMP, CREATED, *features)
              .with_columns(pl.max_horizontal(ts, created).alias(AVAILABLE))
              .sort(key, AVAILABLE, TIMESTAMP, CREATED))
    # step 2: keep a row only if its (event_timestamp, created) is >= every earlier row's
    earlier_ts = ts.cum_max().shift(1).over(key)
    usable = usable.filter(earlier_ts.is_null() | (ts >= earlier_ts))
    # equal event_timestamp: the later created wins, and it is later in `available` order
    # too unless created < event_timestamp — then both share `available`; keep the last
    usable = usable.unique([key, AVAILABLE], keep="last", maintain_order=True)
    left = decisions.with_row_index("_row").with_columns(pl.col(at).alias("_t"))
    joined = (left.sort("_t")
              .join_asof(usable.drop(TIMESTAMP, CREATED), left_on="_t", right_on=AVAILABLE, by=key,
                         strategy="backward", check_sortedness=False, coalesce=False)
              .sort("_row"))
    return joined.select(*decisions.columns, *features, AVAILABLE)


@dataclass(frozen=True)
class Difference:
    rows_only_ours: int
    rows_only_theirs: int
    mismatched_cells: dict[str, int]   # feature -> rows where the values differ (null vs value counts)

    @property
    def identical(self) -> bool:
        return not (self.rows_only_ours or self.rows_only_theirs or self.mismatched_cells)

    def as_dict(self) -> dict:
        return {"identical": self.identical, "rows_only_ours": self.rows_only_ours,
                "rows_only_theirs": self.rows_only_theirs, "mismatched_cells": self.mismatched_cells}


def compare(ours: pl.DataFrame, theirs: pl.DataFrame, key: str, features: Sequence[str],
            at: str = TIMESTAMP) -> Difference:
    """Row-for-row comparison of two point-in-time training sets (e.g. `join` and Feast's
    `get_historical_features`), matched on (key, at, occurrence): same rows, and the same
    value — null included — in every feature. Float features must be equal, not close:
    both sides copy the stored value, neither computes it."""
    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        frame = frame.select(key, pl.col(at).cast(pl.Datetime("us", "UTC")), *features)
        # entity rows may repeat (same entity, same instant): number the copies
        return frame.sort(key, at, *features, nulls_last=True).with_columns(
            pl.int_range(pl.len()).over(key, at).alias("_n"))
    a, b = keyed(ours), keyed(theirs)
    on = [key, at, "_n"]
    rows_a = a.join(b.select(on), on=on, how="anti", nulls_equal=True).height
    rows_b = b.join(a.select(on), on=on, how="anti", nulls_equal=True).height
    inner = a.join(b, on=on, how="inner", suffix="_theirs", nulls_equal=True)
    mismatched = {}
    for f in features:
        differs = inner.select(pl.col(f).ne_missing(pl.col(f"{f}_theirs")).sum()).item()
        if differs:
            mismatched[f] = int(differs)
    return Difference(rows_a, rows_b, mismatched)
