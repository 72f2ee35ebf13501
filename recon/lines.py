"""The normalised lines reconciliation works on, whatever file they came from.

Intake turns every processor settlement report and every bank statement into these two
records (and the same columns as Polars frames); matching reads nothing else. Money is
integer minor units plus an ISO 4217 code, signed from the platform's point of view: a
processor line's `net` is what the processor owes the platform for it (a refund or a fee
is negative), a bank line's `amount` is a credit (+) or debit (-) on the platform's
account. Every line keeps its evidence: the file it came from and its line number there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime

import polars as pl

from clearline.events import Money

# What a processor line records, in two families.
#
# Payment kinds are the ledger's: each is one `processor.settlement` the platform books,
# and matching pairs it with that expectation line by line. "fee" is a stand-alone fee
# line (no payment behind it, such as a dispute fee). A refund reversal (a refund that
# failed and came back) and a second chargeback are payments too: the ledger must know
# them, so one it has no record of is missing_in_ledger.
PAYMENT_KINDS = ("charge", "refund", "chargeback", "chargeback_reversal", "fee", "refund_reversal")
# Batch kinds move the processor balance without a payment of the platform's behind them:
# costs invoiced or deducted (misc_cost, invoice_deduction), corrections of the merchant's
# deposit or balance (deposit_correction, adjustment), a negative or held balance carried
# from one batch to another (balance_transfer), money moved to or from other balances or
# accounts (transfer, reserve), a payout that failed and came back (payout_reversal). The
# ledger has no line-level record of them, so matching does not look for one; they count
# in their batch's payout (a batch pays the net of all its lines), and the payout is what
# the bank must show. "unclassified" is a type the parser does not know: kept, counted in
# its batch, and reported as an unclassified_processor_line variance with its raw row.
BATCH_KINDS = (
    "misc_cost",
    "invoice_deduction",
    "deposit_correction",
    "adjustment",
    "balance_transfer",
    "transfer",
    "reserve",
    "payout_reversal",
    "unclassified",
)
RECORD_TYPES = PAYMENT_KINDS + BATCH_KINDS
BANK_FORMATS = ("bai2", "camt053", "mt940")


@dataclass(frozen=True, slots=True)
class SettlementLine:
    """One line of a processor's settlement report: one item settled into a payout batch.

    `line_id` is the processor's own id for the line (Adyen's Modification Reference,
    Stripe's balance_transaction_id, Checkout.com's Action ID); `payment_id` is the
    platform's payment reference the processor echoes back (None for a stand-alone fee).
    `gross` is in the presentment currency, `fee` and `net` in the settlement currency;
    `fx_rate` is the decimal text of settlement units per presentment unit, None when
    the two currencies are the same.

    `source_type` is the record type as the processor names it (Adyen's Type, Stripe's
    reporting_category, Checkout.com's Action Type / Breakdown Type), and `raw` the row as
    the file gives it: JSON text of column -> value in file order, every column included
    (the merchant's own and Adyen's Reserved ones, which matching ignores); a line made of
    several rows (a Checkout.com action with its fee breakdowns) is a JSON array of them.
    """

    processor: str
    line_id: str
    payment_id: str | None
    payout_id: str
    record_type: str
    merchant_id: str | None
    gross: Money
    fee: Money
    net: Money
    fx_rate: str | None
    created_at: datetime
    value_date: date
    source_file: str
    line_no: int
    source_type: str | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class BankLine:
    """One entry on a bank statement of one of the platform's accounts.

    `bank_ref` is the bank's own reference for the entry (BAI2 bank reference, camt.053
    AcctSvcrRef, MT940 bank reference); `reference` is the customer reference the payer
    or the platform gave (a processor payout id, a merchant payout id, a buyer's order),
    and `text` the free text beside it.
    """

    format: str
    account: str
    bank_ref: str
    reference: str | None
    text: str | None
    amount: Money
    booking_date: date
    value_date: date
    source_file: str
    line_no: int
    statement_id: str = ""
    sequence: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    """One bank statement as its bank identifies it, with the balances it states.

    The identity is (`account`, `statement_id`, `sequence`): camt.053 `Stmt/Id` with
    `ElctrncSeqNb` (or `LglSeqNb`); MT940 `:20:` with the `:28C:` statement number (the
    pages of a continued statement are one statement); BAI2 the group's as-of date with
    its as-of-date modifier (not the file id, which a re-sent day changes); a file that
    states one identity twice has `#2`, `#3`, … on the later sequences (docs/intake.md).
    A statement re-issued in another file keeps that identity, which is how a copy is
    told from a new statement whatever its bytes; every `BankLine` of the statement
    carries the same `statement_id` and `sequence`. The balances are the statement's own
    opening (OPBD, else PRCD, else ITBD; :60F:/:60M:; BAI2 010) and closing (CLBD, else
    ITBD; :62F:/:62M:; BAI2 015) with their dates; either amount is None when the
    statement does not state it. `entries` counts its booked lines (each transaction of
    a camt.053 batch booking is a line); `line_no` is where it starts.
    """

    format: str
    account: str
    statement_id: str
    sequence: str | None
    opening: Money
    opening_date: date | None
    closing: Money
    closing_date: date | None
    entries: int
    source_file: str
    line_no: int


def flat_schema(record: type) -> dict[str, pl.DataType]:
    """Polars columns for a record type: Money fields become `<name>_minor` and
    `<name>_currency`. Public because every record reconciliation puts in a frame (these
    lines, the ledger's expectations) flattens money the same way, so frames compare."""
    kinds = {
        "str": pl.String(),
        "str | None": pl.String(),
        "int": pl.Int64(),
        "date": pl.Date(),
        "date | None": pl.Date(),
        "datetime": pl.Datetime("us", "UTC"),
    }
    schema: dict[str, pl.DataType] = {}
    for f in fields(record):
        if f.type == "Money":
            schema[f"{f.name}_minor"] = pl.Int64()
            schema[f"{f.name}_currency"] = pl.String()
        else:
            schema[f.name] = kinds[f.type]
    return schema


SETTLEMENT_SCHEMA = flat_schema(SettlementLine)
BANK_SCHEMA = flat_schema(BankLine)
STATEMENT_SCHEMA = flat_schema(Statement)


def flat(record) -> dict:
    """One record (a dataclass instance) as a flat row of its `flat_schema`."""
    row: dict = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, Money):
            row[f"{f.name}_minor"] = value.minor
            row[f"{f.name}_currency"] = value.currency
        else:
            row[f.name] = value
    return row


def frame(lines: list[SettlementLine] | list[BankLine] | list[Statement], record: type) -> pl.DataFrame:
    """Records as a frame with the record's schema, also when there are none."""
    return pl.DataFrame([flat(line) for line in lines], schema=flat_schema(record), orient="row")
