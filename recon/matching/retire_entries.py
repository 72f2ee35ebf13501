"""What a long-running stream may let go of once an adjusting entry settled it: a bank line
nothing explained, parked in suspense by the entry, or a payout or repayment the bank never
booked, taken back out by the entry.

Such a reference stays a closed variance for good, with its bank line or ledger movement
and the entry that closed it. Every balance check reads it: the entry's `bank_cash` leg
moves the ledger's bank cash from the entry's day on, so until then the reference is open
on the account, and a balance mismatch sums it "in variances closed by adjusting entries".
Held, it grows with history (about two hundred a month in a year's world).

What the balance reads of it is carried exactly, so the reference can be cut out with its
entries and its closed variance ("frozen", as published): the bank line as a pair that
matches itself on its booking day (`retire.CARRY_SCHEMA` with `amount_minor`), and what the
ledger moved less what the bank booked, per day, as `continuity.WORKED` (`worked`):
movements a balance sums as worked, under the one worked reference of the account, exactly
as it summed the reference's own open stretch, which only the closed variance claimed. The
ledger's bank cash on every day is the same, and so is every mismatch's text.

A reference qualifies when (`plan`):

* every variance about it is closed, none of it a payout batch's (no payout id, no ledger
  event a processor line was expected for), and nothing is pending under it;
* it is one bank line and no ledger movement, or one ledger movement that is not a
  processor payout (a batch's payout goes only with its batch: `retire`) and no bank line;
  the bank line in the account the books keep for its currency, its statement in one
  version;
* every date of it, its entries' days too, is on or before the cutoff.

What may change it brings it back: an input naming its reference (a bank line, by its
reference or, naming none, its bank reference; a ledger movement; a payout's line), its
statement, or its variance (another entry), by the keys `unit_keys` gives; and any input
dated within the matcher's widest window of its bank line or movement (`reach`), which a
bank line and a movement nothing else explains could be paired with by amount
(`bank.match`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from clearline.recon.matching import adjusted, retire

# one per reference cut out: the last day an input may pair its line or movement by amount
DATED_SCHEMA = {"unit": pl.UInt64(), "last": pl.Date()}
_PAYOUT = "processor_payout"


@dataclass(frozen=True)
class Plan:
    """What to cut out: `refs` (reference, unit) and the carried rows of each unit
    (`carry`: unit and `retire.CARRY_SCHEMA`), its variance ids (variance_id, unit) and its
    `dated` rows (`DATED_SCHEMA`)."""

    refs: pl.DataFrame
    carry: pl.DataFrame
    variance_ids: pl.DataFrame
    dated: pl.DataFrame


def reference() -> pl.Expr:
    """The reference a bank line is reconciled under: its own, else the bank's (`bank.match`)."""
    return pl.coalesce("reference", "bank_ref")


def plan(
    moves: pl.DataFrame,
    bank: pl.DataFrame,
    adjustments: pl.DataFrame,
    variances: pl.DataFrame,
    closed: pl.DataFrame,
    pending: pl.DataFrame,
    books: pl.DataFrame,
    exp: pl.DataFrame,
    lines: pl.DataFrame,
    cutoff: date,
) -> Plan | None:
    """The references of the held `moves`, `bank` lines and `adjustments` that an entry
    settled, given the live pass's open `variances`, `closed` ones and `pending` items, the
    `books` and the held expected settlements (`exp`) and `lines`. None: nothing to cut."""
    busy = pl.concat(
        [
            variances["reference"],
            variances["payout_id"],
            pending["reference"],
            closed.filter(pl.col("payout_id").is_not_null())["reference"],
            closed["payout_id"],
            exp["payout_id"],
            lines["payout_id"],
            # a variance about a ledger event a processor line was expected for claims its batch too
            closed.select("reference", event_id="ledger_event_ids")
            .explode("event_id")
            .join(exp.select("event_id"), on="event_id", how="semi")["reference"],
        ]
    ).drop_nulls()
    about = closed.filter(pl.col("reference").is_not_null() & ~pl.col("reference").is_in(busy.implode()))
    if about.is_empty():
        return None
    books_of = books.select(book="account", currency="currency")
    versions = pl.col("source_file").n_unique().over("account", "statement_id", "sequence")
    line = (
        bank.with_columns(ref=reference(), one_version=(pl.col("statement_id").fill_null("") == "") | (versions == 1))
        .filter(pl.col("ref").is_in(about["reference"].implode()))
        .group_by("ref")
        .agg(
            n_bank=pl.len(),
            account=pl.col("account").first(),
            currency=pl.col("amount_currency").first(),
            bank_minor=pl.col("amount_minor").first(),
            booked=pl.col("booking_date").first(),
            bank_last=pl.max_horizontal("booking_date", "value_date").first(),
            one_version=pl.col("one_version").all(),
        )
        .join(books_of, on="currency", how="left")
        .with_columns(ok=pl.col("one_version") & (pl.col("book") == pl.col("account")))
    )
    move = (
        moves.filter(pl.col("reference").is_in(about["reference"].implode()))
        .group_by(ref="reference")
        .agg(
            n_moves=pl.len(),
            kind=pl.col("kind").first(),
            m_currency=pl.col("amount_currency").first(),
            m_minor=pl.col("amount_minor").first(),
            expected=pl.col("expected_on").first(),
        )
        .join(books_of.rename({"currency": "m_currency", "book": "m_book"}), on="m_currency", how="left")
    )
    ids = about.select("variance_id", ref="reference")
    entries = adjustments.join(ids, on="variance_id")
    legs = adjusted.bank_legs(entries, books).join(ids, on="variance_id")
    entry_last = entries.group_by("ref").agg(entry_last=pl.col("approved_at").dt.date().max())
    shape = (
        ids.select("ref")
        .unique()
        .join(line, on="ref", how="left")
        .join(move, on="ref", how="left")
        .join(entry_last, on="ref", how="left")
        .with_columns(pl.col("n_bank", "n_moves").fill_null(0))
    )
    bank_only = (pl.col("n_bank") == 1) & (pl.col("n_moves") == 0) & pl.col("ok")
    move_only = (
        (pl.col("n_bank") == 0)
        & (pl.col("n_moves") == 1)
        & (pl.col("kind") != _PAYOUT)
        & pl.col("m_book").is_not_null()
    )
    last = pl.max_horizontal("bank_last", "expected")
    settled = shape.filter((bank_only | move_only) & (pl.max_horizontal(last, "entry_last") <= cutoff)).with_columns(
        unit=retire.hashed(retire.joined_key("E", "ref")), last=last
    )
    if settled.is_empty():
        return None
    units = settled.select("ref", "unit")
    # what moved the ledger's bank cash, each on its day: the movement, each entry's bank leg
    ledger = pl.concat(
        [
            settled.filter(pl.col("n_moves") == 1).select(
                "unit", account="m_book", currency="m_currency", day="expected", minor="m_minor"
            ),
            legs.join(units, on="ref").select("unit", "account", "currency", "day", "minor"),
        ]
    )
    carry = pl.concat(
        [
            # the bank line: a pair matching itself on its day; the bank's amount is not the ledger's
            settled.filter(pl.col("n_bank") == 1).select(
                "unit",
                "account",
                "currency",
                day="booked",
                booked="booked",
                amount_minor="bank_minor",
                worked=-pl.col("bank_minor"),
            ),
            ledger.select(
                "unit", "account", "currency", "day", booked="day", amount_minor=pl.lit(0, pl.Int64), worked="minor"
            ),
        ]
    ).cast({"unit": pl.UInt64} | retire.CARRY_SCHEMA)
    return Plan(
        units.rename({"ref": "reference"}),
        carry,
        ids.join(units, on="ref").select("variance_id", "unit"),
        settled.select("unit", "last").cast(DATED_SCHEMA),
    )


def unit_keys(refs: pl.DataFrame, variance_ids: pl.DataFrame, bank: pl.DataFrame) -> pl.DataFrame:
    """`retire.INDEX_SCHEMA` rows naming each unit: its reference, its variances, the
    statement of its bank line (`bank`, with `unit`)."""
    return (
        pl.concat(
            [
                refs.select(key=retire.joined_key("p", "reference"), unit="unit"),
                variance_ids.select(key=retire.joined_key("v", "variance_id"), unit="unit"),
                bank.select(key=retire.statement_key(), unit="unit"),
            ]
        )
        .drop_nulls("key")
        .with_columns(key=retire.hashed(pl.col("key")))
        .unique()
        .cast(retire.INDEX_SCHEMA)
    )
