"""Balances close the loop: each bank statement opens where the previous one closed, and
each closing balance agrees with the ledger's bank cash on that day, or the open variances
say why not.

Continuity, per account, statements in date order (then by their sequence number):

* `statement_gap`: a statement is missing between two received ones. Known by the
  sequence number (camt.053 `ElctrncSeqNb`, MT940 `:28C:` statement number) jumping by
  more than one, or, where the bank numbers nothing usable (BAI2), by a business day
  between the two on which the balance moved with no statement to show it;
* `balance_break`: consecutive statements whose opening is not the previous closing.

Both name the two statements (evidence) and the jump; a statement delivered twice (same
account, statement id and sequence) counts once.

The tie to the ledger. The ledger's bank cash for the account's currency on day D is its
opening capital (`configs/platform.yaml`, which the ledger posts before any event) plus
every bank movement the ledger recorded that the bank should have booked by D: processor
payouts by arrival date, merchant payouts by value date, repayments by their day (the
`expectations` frame, read from the event archive as every other rule reads it). The
ledger is compared value-dated because the bank is: a payout the ledger booked on Friday
that arrives on Monday is in transit, not a break.

The ledger's balance is end-of-day, so a day's last statement is compared (a statement
continued over pages, MT940 `:28C:` 5/1 and 5/2, closes the day on its last page). A
statement whose closing differs from that balance, by another amount than the previous
statement did, is a `bank_balance_mismatch`: a difference that persists is one variance, at
the statement where it arose (a later one names the new total when it moves again; one
that goes back to zero is none). It
names the difference and the open variances that explain it, found by what they are about:
every movement of the account up to D (bank lines by reference, the ledger's movements by
reference, each jump between statements) is summed per reference, and each reference that
does not net to zero is explained by the variances about it (a bank-level variance's
reference, a line-level variance's payout batch, a continuity variance's own jump). What
only variances an adjusting entry closed are about is summed as one figure, not named
(worked already: an entry that moves no bank cash, a fee written off, leaves the
difference in the balance for good, and naming every such break of the account's history
on each later mismatch would bury the open ones). What no variance claims but a pending
item does is "awaited", what the other side books after the day (within the date
windows: no break) is "in transit"; the rest is unexplained.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from clearline.recon.lines import STATEMENT_SCHEMA
from clearline.recon.matching.rules import evidence
from clearline.recon.matching.variance import RAW_SCHEMA, ids, money_text

# The platform's operating accounts as the ledger opens them: one per currency.
BOOKS_SCHEMA: dict[str, pl.DataType] = {
    "account": pl.String(),
    "currency": pl.String(),
    "opening_minor": pl.Int64(),
    "opened_on": pl.Date(),
}
# A statement is who it is on its day: some banks write one constant :20: and number
# :28C: afresh every year (matching's copies step uses the same identity).
_IDENTITY = ["account", "statement_id", "sequence", "day"]
# A ledger movement of this kind only balances read (bank lines are never matched against
# it): the bank cash difference of payout batches a long-running stream let go of whose
# every break an adjusting entry closed (`retire`), claimed as those closed variances were.
WORKED = "worked"
# A statement row of this format is no statement: it carries the jump of a continuity
# variance whose statements a long-running stream has let go of (`carried_jumps`).
CARRIED = "retired-jump"


def bank_books(platform: dict) -> pl.DataFrame:
    """`BOOKS_SCHEMA` rows from configs/platform.yaml as loaded (`bank_accounts` and
    `opened_on`): the capital the ledger posts into each account before any event."""
    opened = platform["opened_on"]
    opened = opened if isinstance(opened, date) else date.fromisoformat(str(opened))
    rows = [
        (str(spec["account"]), currency, int(spec["opening_balance_minor"]), opened)
        for currency, spec in sorted(platform["bank_accounts"].items())
    ]
    return pl.DataFrame(rows, schema=BOOKS_SCHEMA, orient="row")


def chain(statements: pl.DataFrame) -> pl.DataFrame:
    """The statements of each account once each, in order, with the previous one's
    identity, closing balance and day beside each (`prev_…`, null for the first)."""
    ordered = (
        statements.cast(STATEMENT_SCHEMA)
        .sort("source_file", "line_no")
        .with_columns(day=pl.coalesce("closing_date", "opening_date"))
        .unique(_IDENTITY, keep="first", maintain_order=True)
        .with_columns(
            number=pl.col("sequence").str.extract(r"^\s*(\d+)").cast(pl.Int64, strict=False),
            page=pl.col("sequence").str.extract(r"/\s*(\d+)").cast(pl.Int64, strict=False),  # MT940 :28C: 5/2
            where=evidence(),
        )
        .sort("account", "day", "number", "page", "statement_id", "source_file", "line_no", nulls_last=True)
        .with_row_index("position")
    )
    prev = ["statement_id", "sequence", "closing_minor", "closing_currency", "day", "number", "where"]
    return ordered.with_columns(pl.col(c).shift(1).over("account").alias(f"prev_{c}") for c in prev)


def _named(prefix: str = "") -> pl.Expr:
    """'statement 20260105-00005 (5) of 2026-01-05' for a statement's columns."""
    seq = pl.when(pl.col(f"{prefix}sequence").is_not_null()).then(
        pl.concat_str(pl.lit(" ("), pl.col(f"{prefix}sequence"), pl.lit(")"))
    )
    return pl.concat_str(
        pl.lit("statement "),
        pl.col(f"{prefix}statement_id"),
        seq.fill_null(""),
        pl.lit(" of "),
        pl.col(f"{prefix}day").cast(pl.String).fill_null("an unknown day"),
    )


def breaks(chained: pl.DataFrame) -> pl.DataFrame:
    """Raw `statement_gap` and `balance_break` variances of `chain(statements)`, with the
    signed `jump` (opening − previous closing) each stands for."""
    pairs = chained.filter(pl.col("prev_statement_id").is_not_null())
    same_ccy = pl.col("opening_currency") == pl.col("prev_closing_currency")
    jump = pl.when(same_ccy).then(pl.col("opening_minor") - pl.col("prev_closing_minor"))
    numbered = pl.col("number").is_not_null() & pl.col("prev_number").is_not_null()
    counted = numbered & (pl.col("number") > pl.col("prev_number"))  # a number that advances per statement
    workday_between = (pl.business_day_count(pl.col("prev_day").dt.offset_by("1d"), pl.col("day")) > 0) & pl.col(
        "prev_day"
    ).is_not_null()
    gap = (counted & (pl.col("number") > pl.col("prev_number") + 1)) | (
        ~counted & (jump.fill_null(0) != 0) & workday_between
    )
    found = pairs.with_columns(jump=jump, gap=gap).filter(pl.col("gap") | (pl.col("jump").fill_null(0) != 0))
    closing = money_text(pl.col("prev_closing_minor"), pl.col("prev_closing_currency")).fill_null("no balance")
    opening = money_text(pl.col("opening_minor"), pl.col("opening_currency")).fill_null("no balance")
    skipped = pl.col("number") - pl.col("prev_number") - 1
    missing = (
        pl.when(counted)
        .then(pl.concat_str(skipped.cast(pl.String), pl.lit(" statement(s) missing")))
        .otherwise(pl.lit("a working day without a statement, and the balance moved"))
    )
    return found.select(
        category=pl.when("gap").then(pl.lit("statement_gap")).otherwise(pl.lit("balance_break")),
        processor=pl.lit(None, pl.String),
        merchant_id=pl.lit(None, pl.String),
        reference=pl.concat_str("account", pl.lit(" "), pl.col("day").cast(pl.String).fill_null("?")),
        payout_id=pl.lit(None, pl.String),
        amount_minor=pl.col("jump").abs().fill_null(0),
        currency="opening_currency",
        field=pl.when("gap").then(pl.lit("statements")).otherwise(pl.lit("opening balance")),
        expected=pl.when("gap")
        .then(pl.concat_str(pl.lit("the statement after "), _named("prev_"), pl.lit(", closing "), closing))
        .otherwise(pl.concat_str(closing, pl.lit(" closing "), _named("prev_"))),
        actual=pl.when("gap")
        .then(pl.concat_str(_named(), pl.lit(", opening "), opening, pl.lit(": "), missing))
        .otherwise(pl.concat_str(opening, pl.lit(" opening "), _named())),
        since=pl.coalesce("day", "prev_day"),
        ledger_event_ids=pl.lit([], pl.List(pl.String)),
        evidence=pl.concat_list("prev_where", "where"),
        key=pl.concat_str(
            *[pl.col(c).fill_null("") for c in ("account", "prev_statement_id", "prev_sequence")],
            *[pl.col(c).fill_null("") for c in ("statement_id", "sequence")],
            separator="|",
        ),
        jump=pl.col("jump").fill_null(0),
        account="account",
    )


def _ledger_balances(tied: pl.DataFrame, movements: pl.DataFrame) -> pl.Series:
    """The ledger's bank cash at each statement's day: opening capital plus the signed
    movements expected by then in that currency (an as-of join on running totals)."""
    running = (
        movements.select(currency="amount_currency", day="expected_on", amount="amount_minor")
        .group_by("currency", "day")
        .agg(pl.col("amount").sum())
        .sort("currency", "day")
        .with_columns(total=pl.col("amount").cum_sum().over("currency"))
    )
    joined = (
        tied.with_row_index("_row")
        .sort("closing_currency", "day")
        .join_asof(  # sorted by day within each currency: what an as-of join by group needs
            running, on="day", by_left="closing_currency", by_right="currency", check_sortedness=False
        )
    )
    return joined.sort("_row").select(pl.col("opening_minor_books") + pl.col("total").fill_null(0)).to_series()


def mismatches(
    chained: pl.DataFrame,
    books: pl.DataFrame,
    movements: pl.DataFrame,
    bank_lines: pl.DataFrame,
    jumps: pl.DataFrame,
    claims: pl.DataFrame,
    pending: pl.DataFrame,
) -> pl.DataFrame:
    """Raw `bank_balance_mismatch` variances: per statement of an account the ledger keeps
    (`books`), its closing against the ledger's bank cash on its day, where the difference
    is not zero and not the previous statement's. `jumps` are the continuity variances (`breaks`),
    `claims` what every open variance is about (`claims`), `pending` what is still awaited."""
    day_end = (pl.col("position") == pl.col("position").max().over("account", "day")) & pl.col("day").is_not_null()
    tied = (
        chained.filter(day_end)
        .join(  # the ledger is end-of-day: a day's last statement (or page) tells
            books.rename({"currency": "closing_currency", "opening_minor": "opening_minor_books"}),
            on=["account", "closing_currency"],
            how="inner",
        )
        .filter(pl.col("closing_minor").is_not_null() & (pl.col("day") >= pl.col("opened_on")))
    )
    if tied.is_empty():
        return pl.DataFrame(schema=RAW_SCHEMA)
    tied = tied.with_columns(ledger=_ledger_balances(tied, movements))
    tied = (
        tied.sort("position")
        .with_columns(diff=pl.col("closing_minor") - pl.col("ledger"))
        .with_columns(before=pl.col("diff").shift(1).over("account").fill_null(0))
        .filter((pl.col("diff") != pl.col("before")) & (pl.col("diff") != 0))
    )
    items = open_items(books, movements, bank_lines, jumps)
    return _explained(tied.with_row_index("m"), items, claims, pending)


def claims(
    found: pl.DataFrame,
    closed: pl.DataFrame,
    jumps: pl.DataFrame,
    closes: pl.Series,
    expected: pl.DataFrame | pl.LazyFrame,
) -> pl.DataFrame:
    """(ref, variance id, label, closed): what each variance is about, by which it explains
    a movement: its reference, its payout batch, the batches the ledger expected its
    events' lines in (`expected`: the expected settlements; a line paid in another batch
    than the ledger's moves both), and a continuity variance its own jump. `found` are the
    open variances, `closed` those an adjusting entry closed (`variance.SCHEMA` columns), a
    jump closed when its id is among `closes`. The label ("<category> <reference>") is how
    a mismatch names an open one."""
    columns = ["variance_id", "reference", "payout_id", "ledger_event_ids", "category"]
    about = pl.concat(
        [found.select(columns, closed=pl.lit(False)), closed.select(columns, closed=pl.lit(True))]
    ).with_columns(label=pl.concat_str("category", pl.lit(" "), pl.col("reference").fill_null("?")))
    events = about.select("variance_id", event_id="ledger_event_ids").explode("event_id").drop_nulls()
    batches = (
        expected.lazy()
        .select("event_id", "payout_id")
        .join(events.lazy(), on="event_id", how="inner")
        .collect(engine="streaming")
    )
    kept = ["variance_id", "label", "closed"]
    return (
        pl.concat(
            [
                about.select(kept, ref="reference"),
                about.select(kept, ref="payout_id"),
                batches.join(about.select(kept), on="variance_id").select(kept, ref="payout_id"),
                jumps.select(
                    variance_id=ids(jumps),
                    label=_label(jumps),
                    ref=pl.concat_str(pl.lit("jump|"), "key"),
                )
                .with_columns(closed=pl.col("variance_id").is_in(closes.implode()))
                .select(*kept, "ref"),
            ]
        )
        .filter(pl.col("ref").is_not_null())
        .unique()
    )


def _label(raw: pl.DataFrame) -> pl.Series:
    return raw.select(pl.concat_str("category", pl.lit(" "), pl.col("reference").fill_null("?"))).to_series()


def open_items(
    books: pl.DataFrame, movements: pl.DataFrame, bank_lines: pl.DataFrame, jumps: pl.DataFrame
) -> pl.DataFrame:
    """Per account and reference, the stretches of days over which the bank's and the
    ledger's movements under it do not net to zero: (account, ref, start, end, amount),
    `end` the next day anything under the reference moves (null: nothing more does)."""
    accounts = books.select("account", "currency")
    steps = pl.concat(
        [
            bank_lines.select(
                "account", ref=pl.coalesce("reference", "bank_ref"), day="booking_date", amount="amount_minor"
            ),
            movements.join(accounts, left_on="amount_currency", right_on="currency").select(
                "account", ref="reference", day="expected_on", amount=-pl.col("amount_minor")
            ),
            jumps.select("account", ref=pl.concat_str(pl.lit("jump|"), "key"), day="since", amount="jump"),
        ]
    )
    return (
        steps.group_by("account", "ref", "day")
        .agg(pl.col("amount").sum())
        .sort("account", "ref", "day")
        .with_columns(
            amount=pl.col("amount").cum_sum().over("account", "ref"),
            end=pl.col("day").shift(-1).over("account", "ref"),
        )
        .filter(pl.col("amount") != 0)
        .rename({"day": "start"})
    )


def _explained(tied: pl.DataFrame, items: pl.DataFrame, claims: pl.DataFrame, pending: pl.DataFrame) -> pl.DataFrame:
    """The mismatches (`tied`, numbered `m`) as raw variance rows, each with what explains
    its difference: the references open on its day claimed by an open variance, those
    only variances an adjusting entry closed are about (worked already: summed, not
    named), awaited by a pending item, or moving again later (in transit); the rest
    unexplained."""
    open_now = (
        tied.select("m", "account", "day")
        .join(items, on="account")
        .filter((pl.col("start") <= pl.col("day")) & (pl.col("end").is_null() | (pl.col("end") > pl.col("day"))))
    )
    claimed = open_now.join(claims.filter(~pl.col("closed")), on="ref", how="inner")
    unclaimed = open_now.join(claimed.select("m", "ref"), on=["m", "ref"], how="anti")
    worked = unclaimed.join(claims.filter("closed").select("ref").unique(), on="ref", how="semi")
    unclaimed = unclaimed.join(worked.select("m", "ref"), on=["m", "ref"], how="anti")
    awaited = unclaimed.join(pending.select(ref="reference").drop_nulls().unique(), on="ref", how="semi")
    transit = unclaimed.join(awaited.select("m", "ref"), on=["m", "ref"], how="anti").filter(
        pl.col("end").is_not_null()
    )
    # a movement several variances are about (lines of one batch) is theirs together
    shares = (
        claimed.group_by("m", "ref")
        .agg(pl.col("amount").first(), label=pl.col("label").unique().sort().str.join(" + "))
        .group_by("m", "label")
        .agg(pl.col("amount").sum())
    )
    sums = [
        claimed.unique(["m", "ref"]).group_by("m").agg(explained=pl.col("amount").sum()),
        claimed.group_by("m").agg(by=pl.col("variance_id").unique().sort()),
        shares.join(tied.select("m", "closing_currency"), on="m")
        .sort("m", "label")
        .group_by("m", maintain_order=True)
        .agg(
            shares=pl.concat_str(
                "label", pl.lit(" "), money_text(pl.col("amount"), pl.col("closing_currency"))
            ).str.join(", ")
        ),
        worked.group_by("m").agg(worked=pl.col("amount").sum()),
        awaited.group_by("m").agg(awaited=pl.col("amount").sum()),
        transit.group_by("m").agg(transit=pl.col("amount").sum()),
    ]
    for part in sums:
        tied = tied.join(part, on="m", how="left")
    tied = tied.with_columns(
        pl.col("explained", "worked", "awaited", "transit").fill_null(0), by=pl.col("by").fill_null([])
    )
    money = lambda column: money_text(pl.col(column), pl.col("closing_currency"))  # noqa: E731
    part = lambda when, *text: pl.when(when).then(pl.concat_str(*text))  # noqa: E731
    parts = pl.concat_list(
        pl.concat_str(pl.lit("difference "), money("diff")),
        part(
            pl.col("by").list.len() > 0,
            pl.when(pl.col("explained") == pl.col("diff")).then(pl.lit("all ")).otherwise(pl.lit("")),
            money("explained"),
            pl.lit(" explained by "),
            pl.col("by").list.len().cast(pl.String),
            pl.lit(" open variance(s): "),
            pl.col("shares"),
        ),
        part(
            # by its sum: a stream carries what it let go of as one sum per account and day
            pl.col("worked") != 0,
            money("worked"),
            pl.lit(" in variances closed by adjusting entries"),
        ),
        part(pl.col("m").is_in(awaited["m"].implode()), money("awaited"), pl.lit(" in items still awaited")),
        part(pl.col("m").is_in(transit["m"].implode()), money("transit"), pl.lit(" in transit, booked after the day")),
        part(pl.col("rest") != 0, money("rest"), pl.lit(" unexplained")),
    ).list.drop_nulls()
    day = pl.col("day").cast(pl.String)
    return (
        tied.with_columns(
            rest=pl.col("diff") - pl.col("explained") - pl.col("worked") - pl.col("awaited") - pl.col("transit")
        )
        .sort("m")
        .select(
            category=pl.lit("bank_balance_mismatch"),
            processor=pl.lit(None, pl.String),
            merchant_id=pl.lit(None, pl.String),
            reference=pl.concat_str("account", pl.lit(" "), day),
            payout_id=pl.lit(None, pl.String),
            amount_minor=pl.col("diff").abs(),
            currency="closing_currency",
            field=pl.concat_str(pl.lit("closing balance on "), day),
            expected=pl.concat_str(pl.lit("ledger bank cash "), money("ledger")),
            actual=pl.concat_str(
                pl.lit("bank "), money("closing_minor"), pl.lit(" ("), parts.list.join("; "), pl.lit(")")
            ),
            since="day",
            ledger_event_ids=pl.lit([], pl.List(pl.String)),
            evidence=pl.concat_list(pl.concat_list("where"), "by"),
            key=pl.concat_str("account", pl.lit("|"), day),
        )
    )


def check(
    statements: pl.DataFrame,
    books: pl.DataFrame,
    movements: pl.DataFrame,
    bank_lines: pl.DataFrame,
    found: pl.DataFrame,
    closed: pl.DataFrame,
    closes: pl.Series,
    pending: pl.DataFrame,
    expected: pl.DataFrame | pl.LazyFrame,
) -> pl.DataFrame:
    """Raw continuity and ledger-tie variances (`RAW_SCHEMA`) of bank statements
    (`STATEMENT_SCHEMA`), given the ledger's `books` (`BOOKS_SCHEMA`) and expected bank
    `movements`, the bank lines, the pass's other variances (`found` open, `closed` by an
    adjusting entry, `variance.SCHEMA`), the ids the platform's entries close (`closes`:
    a statement's own break among them is closed), its pending items and the expected
    settlements (whose batches line-level variances are about)."""
    carried = statements.filter(pl.col("format") == CARRIED)
    statements = statements.filter(pl.col("format") != CARRIED)
    if statements.is_empty():
        return pl.DataFrame(schema=RAW_SCHEMA)
    chained = chain(statements)
    own = breaks(chained)
    jumps = pl.concat([own.select(JUMP_COLUMNS), jumps_of_carried(carried)]) if carried.height else own
    about = claims(found, closed, jumps, closes, expected)
    worked = movements.filter(pl.col("kind") == WORKED).select(ref="reference").unique()
    if worked.height:
        about = pl.concat(
            [
                about,
                worked.select(
                    variance_id=pl.lit(None, pl.String), label=pl.lit(None, pl.String), closed=True, ref="ref"
                ),
            ]
        )
    tie = mismatches(chained, books, movements, bank_lines, jumps, about, pending)
    return pl.concat([own.select(list(RAW_SCHEMA)).cast(RAW_SCHEMA), tie.cast(RAW_SCHEMA)])


def carried_jumps(jumps: pl.DataFrame) -> pl.DataFrame:
    """`breaks` rows as statement rows of format `CARRIED`: a stream that let go of the
    statements of a `balance_break` or `statement_gap` keeps its jump, an open item on
    every later statement's balance, and hands it in with the statements it holds."""
    return jumps.select(
        format=pl.lit(CARRIED),
        account="account",
        statement_id=pl.lit(""),  # no identity: never taken for a copy of a statement
        sequence="key",
        opening_minor="jump",
        opening_currency="currency",
        opening_date="since",
        closing_minor=pl.lit(None, pl.Int64),
        closing_currency="currency",
        closing_date="since",
        entries=pl.lit(0),
        source_file=pl.concat_str("category", pl.lit("|"), "reference"),
        line_no=pl.lit(0),
    ).cast(STATEMENT_SCHEMA)


JUMP_COLUMNS = ["category", "reference", "key", "since", "jump", "account"]  # what claims and open items read of a jump


def jumps_of_carried(rows: pl.DataFrame) -> pl.DataFrame:
    """The jumps `carried_jumps` made into statement rows, as `breaks` gives them (`JUMP_COLUMNS`)."""
    parts = pl.col("source_file").str.splitn("|", 2)
    return rows.select(
        category=parts.struct.field("field_0"),
        reference=parts.struct.field("field_1"),
        key="sequence",
        since="opening_date",
        jump="opening_minor",
        account="account",
    )
