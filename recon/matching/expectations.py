"""What the ledger expects the processors and the bank to report, read from its events.

Two kinds of expectation, one frame each:

* settlements: every `processor.settlement` event is what the platform expects one line
  of a processor's report to be (its id is the processor's line id);
* bank movements: every `processor.payout` (money in from a processor), `merchant.payout`
  (money out to a merchant) and `buyer.repayment` (money in from a buyer) is a line the
  platform expects on its bank statement, with the day it should be booked. A payout a
  freeze held (`payout.held`) leaves nothing to expect until it is released
  (`payout.released`, money out on the day of the release).

Amounts in events are magnitudes; here they get the sign they have from the platform's
point of view, as in `clearline.recon.lines` (a refund line's net is negative, a merchant payout a
debit), so expected and reported amounts compare directly.

A stream turns one decoded `Event` into a record (`expectation`); a batch reads a whole
world's `events.parquet` or the ledger's archive as columns (`from_events`). Both end
in the same frames, so the matching rules cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from clearline import events
from clearline.events import Money
from clearline.recon.lines import flat, flat_schema

# The sign of a settlement line's amounts by what it records (platform's point of view).
LINE_SIGN = {"charge": 1, "refund": -1, "chargeback": -1, "chargeback_reversal": 1, "fee": -1}
BANK_KINDS = {
    "processor.payout": "processor_payout",
    "merchant.payout": "merchant_payout",
    "payout.released": "merchant_payout",  # a held payout, sent when its freeze was lifted
    "buyer.repayment": "buyer_repayment",
}
OUTGOING = ("merchant.payout", "payout.released")  # debits of the platform's bank


@dataclass(frozen=True, slots=True)
class ExpectedSettlement:
    """A processor line the ledger expects; gross, fee and net signed like `clearline.recon.lines`."""

    event_id: str
    processor: str
    settlement_id: str
    payout_id: str
    record_type: str
    payment_id: str
    merchant_id: str
    gross: Money
    fee: Money
    net: Money
    available_on: date
    fx_rate: str | None


@dataclass(frozen=True, slots=True)
class ExpectedBankMovement:
    """A bank line the ledger expects: `reference` is the payout or repayment id the bank
    line should carry, `amount` a credit (+) or debit (-), `expected_on` its booking day."""

    event_id: str
    kind: str
    processor: str | None
    reference: str
    amount: Money
    expected_on: date
    merchant_id: str | None = None


SETTLEMENT_SCHEMA = flat_schema(ExpectedSettlement)
# The columns a bank-movement frame must have. `merchant_id` comes after them, optional:
# frames made before variances named merchants (bench/recon_scale.py) still match.
BANK_WITH_MERCHANT = flat_schema(ExpectedBankMovement)
BANK_SCHEMA = {name: dtype for name, dtype in BANK_WITH_MERCHANT.items() if name != "merchant_id"}


def expectation(event: events.Event) -> ExpectedSettlement | ExpectedBankMovement | None:
    """The expectation one event sets up, or None for events reconciliation ignores."""
    p = event.payload
    if isinstance(p, events.ProcessorSettlement):
        sign = LINE_SIGN[p.record_type]
        return ExpectedSettlement(
            event.event_id,
            p.processor,
            p.settlement_id,
            p.batch_id,
            p.record_type,
            p.payment_id,
            event.merchant_id,
            Money(sign * p.gross.minor, p.gross.currency),
            p.fee,
            Money(sign * p.net.minor, p.net.currency),
            p.available_on,
            p.fx_rate,
        )
    if isinstance(p, events.ProcessorPayout):
        return ExpectedBankMovement(
            event.event_id, "processor_payout", p.processor, p.payout_id, p.amount, p.arrival_date, event.merchant_id
        )
    if isinstance(p, events.MerchantPayout | events.PayoutReleased):
        return ExpectedBankMovement(
            event.event_id,
            "merchant_payout",
            None,
            p.payout_id,
            Money(-p.amount.minor, p.amount.currency),
            p.value_date,
            event.merchant_id,
        )
    if isinstance(p, events.BuyerRepayment):
        return ExpectedBankMovement(
            event.event_id,
            "buyer_repayment",
            None,
            p.repayment_id,
            p.amount,
            event.occurred_at.date(),
            event.merchant_id,
        )
    return None


def frames(records: list[ExpectedSettlement | ExpectedBankMovement]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(settlements, bank movements) frames of typed expectations, e.g. a stream's state."""
    settle = [flat(r) for r in records if isinstance(r, ExpectedSettlement)]
    bank = [flat(r) for r in records if isinstance(r, ExpectedBankMovement)]
    return (
        pl.DataFrame(settle, schema=SETTLEMENT_SCHEMA, orient="row"),
        pl.DataFrame(bank, schema=BANK_WITH_MERCHANT, orient="row"),
    )


_MONEY = pl.Struct({"minor": pl.Int64, "currency": pl.String})
_PAYLOAD = pl.Struct(
    {
        "processor": pl.String,
        "settlement_id": pl.String,
        "batch_id": pl.String,
        "record_type": pl.String,
        "payment_id": pl.String,
        "gross": _MONEY,
        "fee": _MONEY,
        "net": _MONEY,
        "available_on": pl.String,
        "fx_rate": pl.String,
        "payout_id": pl.String,
        "amount": _MONEY,
        "arrival_date": pl.String,
        "value_date": pl.String,
        "repayment_id": pl.String,
    }
)


def from_events(ev: pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(settlements, bank movements) from events as columns: event_id, event_type,
    occurred_at, merchant_id and `payload` (the payload's JSON text), as a world's
    `events/events.parquet` holds them. An event seen twice counts once."""
    wanted = ev.filter(pl.col("event_type").is_in(["processor.settlement", *BANK_KINDS]))
    rows = (
        wanted.unique("event_id", keep="first").with_columns(p=pl.col("payload").str.json_decode(_PAYLOAD)).unnest("p")
    )
    sign = pl.col("record_type").replace_strict(LINE_SIGN, default=None, return_dtype=pl.Int64)
    settle = rows.filter(pl.col("event_type") == "processor.settlement").select(
        "event_id",
        "processor",
        "settlement_id",
        pl.col("batch_id").alias("payout_id"),
        "record_type",
        "payment_id",
        "merchant_id",
        gross_minor=sign * pl.col("gross").struct.field("minor"),
        gross_currency=pl.col("gross").struct.field("currency"),
        fee_minor=pl.col("fee").struct.field("minor"),
        fee_currency=pl.col("fee").struct.field("currency"),
        net_minor=sign * pl.col("net").struct.field("minor"),
        net_currency=pl.col("net").struct.field("currency"),
        available_on=pl.col("available_on").str.to_date(),
        fx_rate="fx_rate",
    )
    kind = pl.col("event_type").replace_strict(BANK_KINDS, default=None)
    out = pl.col("event_type").is_in(OUTGOING)
    bank = rows.filter(pl.col("event_type").is_in(list(BANK_KINDS))).select(
        "event_id",
        kind.alias("kind"),
        "processor",
        reference=pl.coalesce("payout_id", "repayment_id"),
        amount_minor=pl.when(out)
        .then(-pl.col("amount").struct.field("minor"))
        .otherwise(pl.col("amount").struct.field("minor")),
        amount_currency=pl.col("amount").struct.field("currency"),
        expected_on=pl.coalesce(
            pl.col("arrival_date").str.to_date(), pl.col("value_date").str.to_date(), pl.col("occurred_at").dt.date()
        ),
        merchant_id="merchant_id",
    )
    settle_df, bank_df = pl.collect_all([settle, bank])
    return settle_df.cast(SETTLEMENT_SCHEMA), bank_df.cast(BANK_WITH_MERCHANT)


def from_archive(archive: pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The same frames from the ledger's event archive (`clearline.ledger.archive.scan`), whose
    `body` is each message as consumed: the payload is cut out of it by JSON path."""
    return from_events(archive.with_columns(payload=pl.col("body").cast(pl.String).str.json_path_match("$.payload")))
