"""Payouts and transfers ↔ the bank: every bank line explained, every expected one booked.

What may explain a bank line (a candidate):

* a processor payout batch, as the processor reported it: the sum of its lines' net
  (many-to-one: many settlement lines, one bank credit), expected on the day the ledger's
  `processor.payout` says, or a few days after its last line when the ledger has no
  payout event for it (a late line can open a batch of its own);
* a payout the ledger expects whose lines no processor report has shown yet; it explains
  a bank line but is never itself a break (its missing lines are, at line level);
* a merchant payout (debit) or a buyer repayment (credit) the ledger recorded.

Matching is by reference first (the payout or repayment id the bank line carries), then,
for what is left on both sides, by currency and exact amount within the date window when
exactly one candidate and one bank line pair up. A pair is compared in a fixed order:
currency, amount, booking day. Left-over candidates become payout_not_in_bank after their
deadline; left-over bank lines unexplained_bank_line (or duplicate, when an earlier line
carries the same reference).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from clearline.recon.matching.copies import taken_once
from clearline.recon.matching.rules import Tolerances, evidence, first_difference, first_per, overdue
from clearline.recon.matching.variance import ABSENT, PENDING_SCHEMA, RAW_SCHEMA, money_text

CANDIDATE_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String(),
    "processor": pl.String(),
    "merchant_id": pl.String(),
    "reference": pl.String(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "expected_on": pl.Date(),
    "date_known": pl.Boolean(),
    "may_be_missing": pl.Boolean(),
    "ledger_event_ids": pl.List(pl.String()),
    "evidence": pl.List(pl.String()),
}
_NONE = pl.lit([], pl.List(pl.String))
_LINE = ["source_file", "line_no"]  # what tells one bank line from another


def payout_batches(lines: pl.DataFrame | pl.LazyFrame, copies_taken_out: bool = False) -> pl.DataFrame:
    """Each processor payout as its report shows it: the sum of its lines' net and its last
    line's value date. A line a later report sends again under its id counts once, as its
    first report says it (`copies.taken_once`; `copies_taken_out` says the caller already
    did, as `reconcile` does, which spares hashing every line again); lines one report
    gives twice count twice, as the processor paid them (the line rules call the second a
    `duplicate`)."""
    return (
        (lines.lazy() if copies_taken_out else taken_once(lines))
        .select("processor", "payout_id", "net_minor", "net_currency", "value_date")
        .group_by("processor", "payout_id")
        .agg(
            amount_minor=pl.col("net_minor").sum(),
            currency=pl.col("net_currency").min(),
            last_value=pl.col("value_date").max(),
        )
        .collect(engine="streaming")
    )


def _batch_evidence(
    batches: pl.DataFrame, lines: pl.DataFrame | pl.LazyFrame, reference: str = "reference"
) -> pl.DataFrame:
    """`batches` (kind, processor, `reference`) with every line of each processor payout
    as its evidence, in file order."""
    if batches.is_empty():  # nothing to look up among ten million lines
        return batches
    # the filter first: the scan then decodes the other columns only where a payout id is
    # one of theirs (and skips row groups whose statistics rule them all out); the semi
    # join alone decodes every line (0.43 against 0.02 CPU s at ten million lines)
    own = (
        lines.lazy()
        .select("processor", "payout_id", *_LINE)
        .filter(pl.col("payout_id").is_in(batches[reference].drop_nulls().implode()))
        .join(
            batches.lazy().select("processor", payout_id=reference),
            on=["processor", "payout_id"],
            how="semi",
        )
        .collect(engine="streaming")
    )
    found = own.sort("source_file", "line_no").group_by("processor", "payout_id").agg(found=evidence())
    return (
        batches.join(found, left_on=["processor", reference], right_on=["processor", "payout_id"], how="left")
        .with_columns(
            evidence=pl.when(pl.col("kind") == "processor_payout")
            .then(pl.col("found").fill_null([]))
            .otherwise("evidence")
        )
        .drop("found")
    )


def candidates(
    movements: pl.DataFrame, lines: pl.DataFrame | pl.LazyFrame, tol: Tolerances, copies_taken_out: bool = False
) -> pl.DataFrame:
    """Everything that may explain a bank line, from the ledger's expected bank movements
    (`expectations.BANK_SCHEMA`) and the processors' reported lines (`payout_batches`)."""
    if "merchant_id" not in movements.columns:  # an older frame: merchants unknown
        movements = movements.with_columns(merchant_id=pl.lit(None, pl.String))
    ledger = first_per(movements.lazy(), ["kind", "reference"], ["event_id"])[0].collect()
    payouts = ledger.filter(pl.col("kind") == "processor_payout")
    batches = payout_batches(lines, copies_taken_out).join(
        payouts.select("reference", "event_id", "expected_on"), left_on="payout_id", right_on="reference", how="left"
    )
    # a batch whose lines net to zero (a negative balance carried to the next batch by a
    # balance transfer, a refund that cancels its charge) pays nothing: no bank line is due
    from_reports = batches.filter(pl.col("amount_minor") != 0).select(
        kind=pl.lit("processor_payout"),
        processor="processor",
        merchant_id=pl.lit(None, pl.String),
        reference="payout_id",
        amount_minor="amount_minor",
        currency="currency",
        expected_on=pl.coalesce(
            "expected_on", pl.col("last_value").dt.offset_by(f"{tol.unknown_payout_arrival_days}d")
        ),
        date_known=pl.col("expected_on").is_not_null(),
        may_be_missing=pl.lit(True),
        ledger_event_ids=pl.concat_list("event_id").list.drop_nulls(),
        evidence=_NONE,
    )
    from_ledger = ledger.join(
        batches, left_on=["processor", "reference"], right_on=["processor", "payout_id"], how="anti"
    ).select(
        "kind",
        "processor",
        "reference",
        "amount_minor",
        currency="amount_currency",
        expected_on="expected_on",
        merchant_id=pl.when(pl.col("kind") != "processor_payout").then("merchant_id"),  # a batch spans merchants
        date_known=pl.lit(True),
        may_be_missing=pl.col("kind") != "processor_payout",
        ledger_event_ids=pl.concat_list("event_id"),
        evidence=_NONE,
    )
    return pl.concat(
        [part.select(list(CANDIDATE_SCHEMA)).cast(CANDIDATE_SCHEMA) for part in (from_reports, from_ledger)]
    )


def _pairs_by_amount(lines: pl.DataFrame, cands: pl.DataFrame, tol: Tolerances) -> pl.DataFrame:
    """Bank lines and candidates left without a reference match that pair up one-to-one
    on currency and exact amount, booked between the window before the expected day and
    the deadline after it."""
    pairs = lines.join(
        cands,
        left_on=["amount_currency", "amount_minor"],
        right_on=["currency", "amount_minor"],
        how="inner",
        coalesce=False,
        suffix="_exp",
    )
    days = (pl.col("booking_date") - pl.col("expected_on")).dt.total_days()
    pairs = pairs.filter(days.is_between(-tol.bank_date_window_days, tol.bank_line_deadline_days))
    return pairs.filter((pl.len().over(_LINE) == 1) & (pl.len().over("kind", "reference_exp") == 1))


def compare(pairs: pl.DataFrame, settlement_lines: pl.DataFrame | pl.LazyFrame, tol: Tolerances) -> pl.DataFrame:
    """Raw variances of (bank line, candidate) pairs: the first difference only, with the
    bank line and the payout's settlement lines as evidence."""
    col, lit = pl.col, pl.lit
    off = (col("amount_minor") - col("amount_minor_exp")).abs()
    days = (col("booking_date") - col("expected_on")).dt.total_days().abs()
    money = lambda m, c: money_text(col(m), col(c))  # noqa: E731
    rules = [  # (condition, category, field, expected, actual, amount, currency)
        (
            col("amount_currency") != col("currency"),
            lit("currency_fx_mismatch"),
            lit("currency"),
            col("currency"),
            col("amount_currency"),
            col("amount_minor").abs(),
            col("amount_currency"),
        ),
        (
            off > tol.amount_minor,
            lit("amount_mismatch"),
            lit("amount"),
            money("amount_minor_exp", "currency"),
            money("amount_minor", "amount_currency"),
            off,
            col("currency"),
        ),
        (
            col("date_known") & (days > tol.bank_date_window_days),
            lit("late_settlement"),
            lit("booking_date"),
            col("expected_on").cast(pl.String),
            col("booking_date").cast(pl.String),
            col("amount_minor").abs(),
            col("currency"),
        ),
    ]
    category, field, expected, actual, amount, currency = first_difference(rules)
    pairs = _batch_evidence(
        pairs.filter(pl.any_horizontal(rule[0] for rule in rules)), settlement_lines, "reference_exp"
    )
    return pairs.select(
        category=category,
        processor="processor",
        merchant_id="merchant_id",
        reference="reference_exp",
        payout_id=pl.when(col("kind") == "processor_payout").then(col("reference_exp")),
        amount_minor=amount.cast(pl.Int64),
        currency=currency,
        field=field,
        expected=expected,
        actual=actual,
        since="booking_date",
        ledger_event_ids="ledger_event_ids",
        evidence=pl.concat_list(pl.concat_list(evidence()), "evidence"),
        key=pl.concat_str("kind", lit("|"), "reference_exp", lit("|"), evidence()),
    ).filter(col("category").is_not_null())


def match(
    movements: pl.DataFrame,
    settlement_lines: pl.DataFrame | pl.LazyFrame,
    bank_lines: pl.DataFrame,
    tol: Tolerances,
    as_of: date,
    copies_taken_out: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(raw variances, pending) of the bank's lines against everything that should explain
    them. Inputs: `expectations.BANK_SCHEMA`, `clearline.recon.lines` settlement and bank frames (the
    settlement lines may be lazy: only the columns a payout's total and evidence need are read;
    `copies_taken_out` as in `payout_batches`).
    The result does not depend on the order of any input."""
    cands = candidates(movements, settlement_lines, tol, copies_taken_out)
    referenced = bank_lines.filter(pl.col("reference").is_not_null())
    firsts, repeats = first_per(referenced.lazy(), ["reference"], ["booking_date", "account", "bank_ref", *_LINE])
    firsts = firsts.collect()
    keyed = firsts.join(
        cands.rename({"reference": "reference_exp"}),
        left_on="reference",
        right_on="reference_exp",
        how="inner",
        coalesce=False,
        suffix="_exp",
    )
    open_lines = pl.concat([firsts, bank_lines.filter(pl.col("reference").is_null())]).join(
        keyed.select(_LINE), on=_LINE, how="anti"
    )
    open_cands = cands.join(keyed.select("kind", reference="reference_exp"), on=["kind", "reference"], how="anti")
    by_amount = _pairs_by_amount(open_lines, open_cands.rename({"reference": "reference_exp"}), tol)
    pairs = pl.concat([keyed, by_amount.select(keyed.columns)])
    unbooked = open_cands.join(
        by_amount.select("kind", reference="reference_exp"), on=["kind", "reference"], how="anti"
    )
    unexplained = open_lines.join(by_amount.select(_LINE), on=_LINE, how="anti")

    may_miss = unbooked.filter("may_be_missing")
    late_cands = overdue("expected_on", tol.bank_line_deadline_days, as_of)
    late_lines = overdue("booking_date", tol.unexplained_deadline_days, as_of)
    raw = [
        compare(pairs, settlement_lines, tol),
        _batch_evidence(may_miss.filter(late_cands), settlement_lines).select(
            category=pl.lit("payout_not_in_bank"),
            processor="processor",
            merchant_id="merchant_id",
            reference="reference",
            payout_id=pl.when(pl.col("kind") == "processor_payout").then(pl.col("reference")),
            amount_minor=pl.col("amount_minor").abs(),
            currency="currency",
            field=pl.lit("bank line"),
            expected=pl.concat_str(
                pl.col("kind").str.replace("_", " "),
                pl.lit(" "),
                money_text(pl.col("amount_minor"), pl.col("currency")),
            ),
            actual=pl.lit(ABSENT),
            since="expected_on",
            ledger_event_ids="ledger_event_ids",
            evidence="evidence",
            key=pl.concat_str("kind", pl.lit("|"), "reference"),
        ),
        repeats.join(firsts.select("reference", original=evidence()), on="reference").select(
            category=pl.lit("duplicate"),
            processor=pl.lit(None, pl.String),
            merchant_id=pl.lit(None, pl.String),
            reference="reference",
            payout_id=pl.lit(None, pl.String),
            amount_minor=pl.col("amount_minor").abs(),
            currency="amount_currency",
            field=pl.lit("reference"),
            expected=pl.concat_str(pl.lit("one bank line "), "reference"),
            actual=pl.concat_str(pl.lit("again as "), "bank_ref"),
            since="booking_date",
            ledger_event_ids=_NONE,
            evidence=pl.concat_list("original", evidence()),
            key=pl.concat_str(pl.lit("bank|"), evidence()),
        ),
        unexplained.filter(late_lines).select(
            category=pl.lit("unexplained_bank_line"),
            processor=pl.lit(None, pl.String),
            merchant_id=pl.lit(None, pl.String),
            reference=pl.coalesce("reference", "bank_ref"),
            payout_id=pl.lit(None, pl.String),
            amount_minor=pl.col("amount_minor").abs(),
            currency="amount_currency",
            field=pl.lit("bank line"),
            expected=pl.lit(ABSENT),
            actual=pl.concat_str(
                pl.col("text").fill_null(""), pl.lit(" "), money_text(pl.col("amount_minor"), pl.col("amount_currency"))
            ),
            since="booking_date",
            ledger_event_ids=_NONE,
            evidence=pl.concat_list(evidence()),
            key=pl.concat_str("account", pl.lit("|"), "bank_ref", pl.lit("|"), pl.col("booking_date").cast(pl.String)),
        ),
    ]
    pending = pl.concat(
        [
            may_miss.filter(~late_cands).select(
                awaiting=pl.lit("bank line"),
                processor="processor",
                reference="reference",
                amount_minor="amount_minor",
                currency="currency",
                since="expected_on",
                due_on=pl.col("expected_on").dt.offset_by(f"{tol.bank_line_deadline_days}d"),
            ),
            unexplained.filter(~late_lines).select(
                awaiting=pl.lit("ledger record"),
                processor=pl.lit(None, pl.String),
                reference=pl.coalesce("reference", "bank_ref"),
                amount_minor="amount_minor",
                currency="amount_currency",
                since="booking_date",
                due_on=pl.col("booking_date").dt.offset_by(f"{tol.unexplained_deadline_days}d"),
            ),
        ]
    ).cast(PENDING_SCHEMA)
    return pl.concat([r.select(list(RAW_SCHEMA)).cast(RAW_SCHEMA) for r in raw]), pending
