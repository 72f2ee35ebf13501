"""Turn the world's tables into contract events, vectorised.

The JSON of each event is built by Polars from the payload dataclasses of
`clearline.events` — their fields and order drive the columns — so the bytes are exactly
what `events.encode` would write for the same event (a test holds them to that), at a
fraction of the cost of encoding a million events one by one.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import date

import numpy as np
import polars as pl

from clearline import events
from clearline.pipelines.world.ids import letter_ids

TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"


def _field_expr(name: str, typ: type) -> pl.Expr:
    if typ is events.Money:
        return pl.struct(minor=pl.col(f"{name}_minor").cast(pl.Int64), currency=pl.col(f"{name}_ccy"))
    if typ is date:
        return pl.col(name).cast(pl.Date).dt.strftime("%Y-%m-%d")
    return pl.col(name)


def payload_json(event_type: str, df: pl.DataFrame) -> pl.Series:
    """The payload JSON of each row, fields in the contract's order."""
    cls = events.PAYLOADS[event_type]
    hints = typing.get_type_hints(cls)
    exprs = []
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        base = args[0] if args and type(None) in typing.get_args(typ) else typ
        if f.name not in df.columns and f"{f.name}_minor" not in df.columns:
            exprs.append(pl.lit(None).alias(f.name))  # optional field this world leaves empty
        else:
            exprs.append(_field_expr(f.name, base).alias(f.name))
    return df.select(pl.struct(exprs).struct.json_encode().alias("payload"))["payload"]


def build_events(tables: dict[str, pl.DataFrame], merchants: pl.DataFrame, end_us: int, world_tag: str) -> pl.DataFrame:
    """One row per event before `end_us`, in event-time order, with its envelope's fields
    and payload JSON (`body` gives the whole event's JSON).

    Event ids are `evt_<world tag>_<counter>`: unique within a world by the counter and
    across worlds by the tag, so two worlds published to one topic never share an id."""
    parts = []
    for event_type, df in tables.items():
        df = df.filter(pl.col("t") < end_us)
        parts.append(
            df.select(
                t=pl.col("t").cast(pl.Int64),
                merchant=pl.col("merchant").cast(pl.Int64),
                event_type=pl.lit(event_type),
                payload=payload_json(event_type, df),
            )
        )
    ev = pl.concat(parts).sort("t", "event_type", "payload")
    ev = ev.with_columns(
        event_id=letter_ids(f"evt_{world_tag}_", 0, ev.height, 8),
        occurred_at=pl.from_epoch("t", time_unit="us").dt.replace_time_zone("UTC"),
        merchant_id=merchants["merchant_id"].gather(ev["merchant"]),
        reseller_id=merchants["reseller_id"].gather(ev["merchant"]),
        schema_version=pl.lit(events.SCHEMA_VERSION, dtype=pl.Int64),
    )
    return ev.drop("merchant")


def body() -> pl.Expr:
    """Each event's JSON, as `events.encode` writes it, from the columns `build_events`
    gives: computed where it is written, off the generator's main path."""
    return pl.concat_str(
        [
            pl.lit('{"event_id":"'),
            "event_id",
            pl.lit('","event_type":"'),
            "event_type",
            pl.lit('","occurred_at":"'),
            pl.col("occurred_at").dt.strftime(TS_FORMAT),
            pl.lit('","merchant_id":"'),
            "merchant_id",
            pl.lit('","reseller_id":"'),
            "reseller_id",
            pl.lit('","schema_version":'),
            pl.col("schema_version").cast(pl.String),
            pl.lit(',"payload":'),
            "payload",
            pl.lit("}"),
        ]
    ).alias("body")


def arrival_order(rng: np.random.Generator, ev: pl.DataFrame, late_share: float, max_delay_s: float) -> pl.DataFrame:
    """Events in the order they reach the platform: mostly event time, a few late.

    Every event takes a few hundred milliseconds on the wire; a share of them is held up
    for up to `max_delay_s` (a retrying webhook, a batch upload), so it arrives after
    events that happened later.
    """
    n = ev.height
    latency = rng.exponential(0.3, n) + np.where(rng.random(n) < late_share, rng.uniform(1, max_delay_s, n), 0)
    arrival = ev["t"].to_numpy() + (latency * 1e6).astype(np.int64)
    return ev.with_columns(arrived_us=pl.Series(arrival)).sort("arrived_us", "event_id").with_row_index("arrival_seq")
