"""Variances closed by adjusting entries: an `adjustment.posted` the ledger posted names
the variance it corrects, and reconciliation then counts that break as closed by it.

The entry is in the books, so the difference the variance states is accounted for; the
processor's line and the ledger's expectation still differ (they are what happened), so
the matcher would find the same break again. Closing it by its id is what keeps it
closed, in a batch and in the stream alike: both hold the entries beside their other
inputs and call `close` on the variances of one `reconcile`.

An entry that moves the platform's bank cash (a `bank_cash` leg: an unexplained bank line
parked in suspense, a payout the bank never booked taken back out) changes the ledger's
bank cash, which every statement's closing balance is tied to. `bank` holds its net per
currency, and `bank_movements` makes it a movement of the ledger's bank account under the
reference of the variance it closes, so that reference nets once the entry is posted and
no later balance names it as open.

An entry closes a variance only for the merchant it names: the variance's own, or, for a
variance that belongs to no one merchant (a payout batch, a bank line), the platform's.
A tenant's signed entry cannot close another merchant's break. An entry the ledger
refused (self-approved, unbalanced) never gets here: only posted events are read. Two
entries for one variance: the first approved closes it (then by event id).
"""

from __future__ import annotations

import polars as pl

from clearline import events
from clearline.recon.matching import expectations
from clearline.recon.matching.variance import SCHEMA

BANK_CASH = "bank_cash"  # the chart's account for the platform's bank, "bank_cash:<currency>"
# An entry's net on the platform's bank cash in one currency: a debit is money in (+).
BANK_MOVE = pl.Struct({"currency": pl.String(), "minor": pl.Int64()})
ADJUSTMENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "variance_id": pl.String(),
    "merchant_id": pl.String(),
    "kind": pl.String(),
    "code": pl.String(),
    "approved_by": pl.String(),
    "approved_at": pl.Datetime("us", "UTC"),
    "bank": pl.List(BANK_MOVE),
}
# A closed variance: its facts, and the entry that closed it.
CLOSED_SCHEMA = SCHEMA | {k: v for k, v in ADJUSTMENT_SCHEMA.items() if k not in ("variance_id", "merchant_id", "bank")}
ADJUSTMENT_KIND = "adjustment"  # an expected bank movement's kind when an entry made it


def bank_net(legs: list[tuple[str, str, int, str]]) -> list[dict]:
    """`BANK_MOVE` rows of an entry's legs (account, side, minor units, currency): the net
    its `bank_cash` legs put into the platform's bank per currency, by currency, none zero."""
    net: dict[str, int] = {}
    for account, side, minor, currency in legs:
        if account.split(":", 1)[0] == BANK_CASH:
            net[currency] = net.get(currency, 0) + (minor if side == "debit" else -minor)
    return [{"currency": c, "minor": m} for c, m in sorted(net.items()) if m]


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
        "bank": bank_net([(leg.account, leg.side, leg.amount.minor, leg.amount.currency) for leg in p.legs]),
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=ADJUSTMENT_SCHEMA, orient="row")


_LEG = pl.Struct(
    {"account": pl.String, "side": pl.String, "amount": pl.Struct({"minor": pl.Int64, "currency": pl.String})}
)
_PAYLOAD = pl.Struct(
    {
        "variance_id": pl.String,
        "kind": pl.String,
        "code": pl.String,
        "approved_by": pl.String,
        "approved_at": pl.String,
        "legs": pl.List(_LEG),
    }
)


def from_events(ev: pl.LazyFrame) -> pl.DataFrame:
    """The entries among events as columns (event_id, event_type, merchant_id and the
    payload's JSON text), as a world's events.parquet holds them; an event seen twice once."""
    entries = (
        ev.filter(pl.col("event_type") == "adjustment.posted")
        .unique("event_id", keep="first")
        .with_columns(p=pl.col("payload").str.json_decode(_PAYLOAD))
        .unnest("p")
        .collect()
    )
    nets = [
        bank_net([(g["account"], g["side"], g["amount"]["minor"], g["amount"]["currency"]) for g in legs or ()])
        for legs in entries["legs"].to_list()
    ]
    return entries.select(
        "event_id",
        "variance_id",
        "merchant_id",
        "kind",
        "code",
        "approved_by",
        approved_at=pl.col("approved_at").str.to_datetime(time_zone="UTC", time_unit="us"),
        bank=pl.Series(nets, dtype=pl.List(BANK_MOVE)),
    ).cast(ADJUSTMENT_SCHEMA)


def from_archive(archive: pl.LazyFrame) -> pl.DataFrame:
    """The same from the ledger's event archive (each message as consumed in `body`)."""
    return from_events(archive.with_columns(payload=pl.col("body").cast(pl.String).str.json_path_match("$.payload")))


def bank_movements(adjustments: pl.DataFrame | pl.LazyFrame, found: pl.DataFrame) -> pl.DataFrame:
    """The ledger's bank movements the entries made (`expectations.BANK_WITH_MERCHANT`, kind
    `ADJUSTMENT_KIND`, on the day each was approved), under the reference of the
    variance (`found`: variance_id, reference) each names. An entry whose variance is not
    among them (a balance mismatch it corrects, found after the movements) moves the bank
    under its own event id. Never a candidate for a bank line: only balances read these."""
    moves = (
        adjustments.lazy()
        .collect()
        .select("event_id", "variance_id", "merchant_id", "approved_at", "bank")
        .explode("bank")
        .drop_nulls("bank")
        .unnest("bank")
    )
    if moves.is_empty():
        return pl.DataFrame(schema=expectations.BANK_WITH_MERCHANT)
    return (
        moves.join(found.select("variance_id", "reference"), on="variance_id", how="left")
        .select(
            "event_id",
            kind=pl.lit(ADJUSTMENT_KIND),
            processor=pl.lit(None, pl.String),
            reference=pl.coalesce("reference", pl.concat_str(pl.lit(f"{ADJUSTMENT_KIND}|"), "event_id")),
            amount_minor="minor",
            amount_currency="currency",
            expected_on=pl.col("approved_at").dt.date(),
            merchant_id="merchant_id",
        )
        .cast(expectations.BANK_WITH_MERCHANT)
    )


def bank_legs(adjustments: pl.DataFrame, books: pl.DataFrame) -> pl.DataFrame:
    """(variance_id, account, currency, day, minor): what each entry moved in the
    platform's bank cash, on the day it was approved, in the account the books
    (`continuity.BOOKS_SCHEMA`) keep for each currency. A currency the books keep no account
    for is in no balance: left out."""
    return (
        adjustments.select("variance_id", day=pl.col("approved_at").dt.date(), bank="bank")
        .explode("bank")
        .drop_nulls("bank")
        .unnest("bank")
        .join(books.select("account", "currency"), on="currency")
        .select("variance_id", "account", "currency", "day", "minor")
    )


def platform_closes(adjustments: pl.DataFrame | pl.LazyFrame) -> pl.Series:
    """Ids of the variances of no one merchant (a statement's break, found after the
    others) that `close` closes: the first entry approved for each is the platform's."""
    return _first(adjustments).filter(pl.col("merchant_id") == events.PLATFORM)["variance_id"]


def _first(adjustments: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The first entry approved for each variance (then by event id): the one that closes it."""
    return (
        adjustments.lazy()
        .collect()
        .sort("approved_at", "event_id")
        .unique("variance_id", keep="first", maintain_order=True)
    )


def close(variances: pl.DataFrame, adjustments: pl.DataFrame | pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(variances still open, variances closed with the entry that closed each)."""
    entries = _first(adjustments).rename({"merchant_id": "entry_merchant"})
    joined = variances.join(entries, on="variance_id", how="left")
    ours = pl.col("event_id").is_not_null() & (
        (pl.col("merchant_id") == pl.col("entry_merchant"))
        | (pl.col("merchant_id").is_null() & (pl.col("entry_merchant") == events.PLATFORM))
    )
    closed = joined.filter(ours).select(list(CLOSED_SCHEMA)).cast(CLOSED_SCHEMA)
    return variances.filter(~pl.col("variance_id").is_in(closed["variance_id"].implode())), closed
