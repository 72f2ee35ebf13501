"""Variances closed by adjusting entries: an `adjustment.posted` the ledger posted names
the variance it corrects, and reconciliation then counts that break as closed by it.

The entry is in the books, so the difference the variance states is accounted for; the
processor's line and the ledger's expectation still differ (they are what happened), so
the matcher would find the same break again. Closing it by its id is what keeps it
closed, in a batch and in the stream alike: both hold the entries beside their other
inputs and call `close` on the variances of one `reconcile`.

An entry closes a variance only for the merchant it names: the variance's own, or, for a
variance that belongs to no one merchant (a payout batch, a bank line), the platform's.
A tenant's signed entry cannot close another merchant's break. An entry the ledger
refused (self-approved, unbalanced) never gets here: only posted events are read. Two
entries for one variance: the first approved closes it (then by event id).
"""

from __future__ import annotations

import polars as pl

from clearline import events
from clearline.recon.matching.variance import SCHEMA

ADJUSTMENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "variance_id": pl.String(),
    "merchant_id": pl.String(),
    "kind": pl.String(),
    "code": pl.String(),
    "approved_by": pl.String(),
    "approved_at": pl.Datetime("us", "UTC"),
}
# A closed variance: its facts, and the entry that closed it.
CLOSED_SCHEMA = SCHEMA | {k: v for k, v in ADJUSTMENT_SCHEMA.items() if k not in ("variance_id", "merchant_id")}


def adjustment(event: events.Event) -> dict | None:
    """The row of ADJUSTMENT_SCHEMA an admitted event adds, or None for other events."""
    p = event.payload
    if not isinstance(p, events.AdjustmentPosted):
        return None
    return {
        "event_id": event.event_id,
        "variance_id": p.variance_id,
        "merchant_id": event.merchant_id,
        "kind": p.kind,
        "code": p.code,
        "approved_by": p.approved_by,
        "approved_at": p.approved_at,
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=ADJUSTMENT_SCHEMA, orient="row")


_PAYLOAD = pl.Struct(
    {"variance_id": pl.String, "kind": pl.String, "code": pl.String, "approved_by": pl.String, "approved_at": pl.String}
)


def from_events(ev: pl.LazyFrame) -> pl.DataFrame:
    """The entries among events as columns (event_id, event_type, merchant_id and the
    payload's JSON text), as a world's events.parquet holds them; an event seen twice once."""
    return (
        ev.filter(pl.col("event_type") == "adjustment.posted")
        .unique("event_id", keep="first")
        .with_columns(p=pl.col("payload").str.json_decode(_PAYLOAD))
        .unnest("p")
        .select(
            "event_id",
            "variance_id",
            "merchant_id",
            "kind",
            "code",
            "approved_by",
            approved_at=pl.col("approved_at").str.to_datetime(time_zone="UTC", time_unit="us"),
        )
        .collect()
        .cast(ADJUSTMENT_SCHEMA)
    )


def from_archive(archive: pl.LazyFrame) -> pl.DataFrame:
    """The same from the ledger's event archive (each message as consumed in `body`)."""
    return from_events(archive.with_columns(payload=pl.col("body").cast(pl.String).str.json_path_match("$.payload")))


def close(variances: pl.DataFrame, adjustments: pl.DataFrame | pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(variances still open, variances closed with the entry that closed each)."""
    entries = (
        adjustments.lazy()
        .collect()
        .sort("approved_at", "event_id")
        .unique("variance_id", keep="first", maintain_order=True)
        .rename({"merchant_id": "entry_merchant"})
    )
    joined = variances.join(entries, on="variance_id", how="left")
    ours = pl.col("event_id").is_not_null() & (
        (pl.col("merchant_id") == pl.col("entry_merchant"))
        | (pl.col("merchant_id").is_null() & (pl.col("entry_merchant") == events.PLATFORM))
    )
    closed = joined.filter(ours).select(list(CLOSED_SCHEMA)).cast(CLOSED_SCHEMA)
    return variances.filter(~pl.col("variance_id").is_in(closed["variance_id"].implode())), closed
