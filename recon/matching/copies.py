"""Lines that came more than once: a processor line id, or a bank statement, in more than one file.

Processors re-send reports and banks re-issue statements, and a copy is rarely the same
bytes. It is recognised by what its sender calls it: a processor line by (processor,
line id), a bank statement by (account, statement id, sequence). Intake takes in nothing
of a copy that says what it already holds, so what reaches matching twice is a copy that
says something else (a corrected line or statement), or one stored before intake knew
its identity, or read straight from a folder (`clearline recon --world`).

Before any matching rule runs, each identity (a statement's with the day it states, see
`_versions`) keeps its first version (by file, then line: the same whatever order the
inputs came in, so the stream and a batch agree) and a version in a later file that says
the same is dropped without a word; one that differs is one variance naming what changed
(`corrected_line`, `corrected_statement`), and matching goes on with the first version,
so nothing is counted twice. What one file says
twice is not a copy: a line id twice in one report is the report's own (the processor
paid it twice; the line rules call it a duplicate), identical lines inside one
statement are two payments and both stay, and a bank line with no statement id is left
to the bank rules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import polars as pl

from clearline.recon.lines import STATEMENT_SCHEMA
from clearline.recon.matching.rules import evidence, first_rows
from clearline.recon.matching.variance import RAW_SCHEMA, money_text

if TYPE_CHECKING:
    from clearline.recon.matching.reconcile import Inputs

LINE_KEY = ["processor", "line_id"]
STATEMENT_KEY = ["account", "statement_id", "sequence"]
WHERE = ["source_file", "line_no"]  # where a line sits, not what it says
# A statement says the same in any format, and a report re-exported with its columns in
# another order or with a merchant's extra column says the same as long as every field
# matching reads does (`raw` keeps the row as the file gave it, all columns).
_NOT_CONTENT = {*WHERE, "format", "raw"}
# What a corrected processor line may have changed, most telling first; money as text.
_LINE_FIELDS = ("net", "gross", "fee", "fx_rate", "value_date", "payout_id", "record_type", "payment_id", "merchant_id")
_NO_STRINGS = pl.lit([], pl.List(pl.String))
Repeats = tuple[pl.DataFrame, pl.DataFrame]  # (later lines, first line of each id that repeats)


def content_columns(columns: list[str]) -> list[str]:
    """The columns that say what a line says (all but where it sits, its file's format and
    its raw row)."""
    return [c for c in columns if c not in _NOT_CONTENT]


def _value(name: str, suffix: str = "") -> pl.Expr:
    if name in ("net", "gross", "fee"):
        return money_text(pl.col(f"{name}_minor{suffix}"), pl.col(f"{name}_currency{suffix}"))
    return pl.col(f"{name}{suffix}").cast(pl.String).fill_null("none")


def _differs(name: str, suffix: str) -> pl.Expr:
    cols = [f"{name}_minor", f"{name}_currency"] if name in ("net", "gross", "fee") else [name]
    return pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}{suffix}")) for c in cols)


def _resent(lines: pl.DataFrame | pl.LazyFrame, known: Repeats | None = None) -> tuple[pl.LazyFrame, pl.DataFrame]:
    """(the lines without those a later file repeats under an id an earlier file
    reported, those repeats with their first version's columns suffixed `_first`).
    Repeats are found by `first_rows` (one hash per line), or are `known` (the later lines
    and the first of each id that repeats, as `first_rows` gives them): the common case of
    no repeat costs no join."""
    copies = sent_again(known if known is not None else first_rows(lines.lazy(), LINE_KEY, WHERE)[1:])
    if copies.is_empty():
        return lines.lazy(), copies
    return lines.lazy().join(copies.lazy().select(*LINE_KEY, *WHERE), on=[*LINE_KEY, *WHERE], how="anti"), copies


def sent_again(repeats: Repeats) -> pl.DataFrame:
    """The copies among `repeats` (the later lines and the first of each id that repeats):
    the later lines a later file sent of an id an earlier file reported, with their first
    version's columns suffixed `_first`."""
    later, originals = repeats
    if later.is_empty():
        return later.join(later, on=LINE_KEY, suffix="_first")
    return later.join(originals, on=LINE_KEY, suffix="_first").filter(
        pl.col("source_file") != pl.col("source_file_first")
    )


def taken_once(lines: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """The processor lines without the copies later files sent of lines already reported."""
    return _resent(lines)[0]


def processor_copies(
    lines: pl.DataFrame | pl.LazyFrame, known: Repeats | None = None
) -> tuple[pl.LazyFrame, pl.DataFrame]:
    """(the processor lines without copies, raw `corrected_line` variances)."""
    kept, copies = _resent(lines, known)
    if copies.is_empty():
        return kept, pl.DataFrame(schema=RAW_SCHEMA)
    said = content_columns([c for c in copies.columns if not c.endswith("_first")])
    changed = (
        copies.sort(*LINE_KEY, *WHERE)
        .unique(subset=said, keep="first", maintain_order=True)  # one variance per version, however often sent
        .filter(pl.any_horizontal(_differs(f, "_first") for f in _LINE_FIELDS))
    )
    pick = lambda part: [(_differs(f, "_first"), part(f)) for f in _LINE_FIELDS]  # noqa: E731

    def first_of(choices: list[tuple[pl.Expr, pl.Expr]]) -> pl.Expr:
        chain = pl.when(choices[0][0]).then(choices[0][1])
        for condition, value in choices[1:]:
            chain = chain.when(condition).then(value)
        return chain

    net_moved = (pl.col("net_minor") - pl.col("net_minor_first")).abs()
    raw = changed.select(
        category=pl.lit("corrected_line"),
        processor="processor",
        merchant_id="merchant_id_first",
        reference="line_id",
        payout_id="payout_id_first",
        # at stake: what the net moved, else (a date, a batch, an id changed) the whole line
        amount_minor=pl.when((pl.col("net_currency") == pl.col("net_currency_first")) & (net_moved > 0))
        .then(net_moved)
        .otherwise(pl.col("net_minor_first").abs()),
        currency="net_currency_first",
        field=first_of(pick(pl.lit)),
        expected=first_of(pick(lambda f: _value(f, "_first"))),
        actual=first_of(pick(_value)),
        since="value_date_first",
        ledger_event_ids=_NO_STRINGS,
        evidence=pl.concat_list(evidence("source_file_first", "line_no_first"), evidence()),
        key=pl.concat_str("processor", pl.lit("|"), "line_id", pl.lit("|"), evidence()),
    )
    return kept, raw.select(list(RAW_SCHEMA)).cast(RAW_SCHEMA)


def _entries(prefix: str = "") -> pl.Expr:
    """'3 entries, net 12.00 EUR, closing 80.00 EUR' of a statement version."""
    col = lambda name: pl.col(f"{name}{prefix}")  # noqa: E731
    closing = pl.concat_str(pl.lit(", closing "), money_text(col("closing"), col("currency")))
    return pl.concat_str(
        col("entries").cast(pl.String),
        pl.lit(" entries, net "),
        money_text(col("total"), col("currency")),
        closing.fill_null(""),
    )


def _versions(bank: pl.DataFrame, statements: pl.DataFrame) -> pl.DataFrame:
    """One row per statement identity and file: what its lines and its own figures say
    (sorted hashes), its entries, their net, its closing balance, its day, where it
    starts, ranked by file and line within its identity and day. The day is part of who
    a statement is: many banks write one constant `:20:` and start `:28C:` again every
    year, so a number alone comes back next year as another statement."""
    named = pl.col("statement_id").fill_null("") != ""
    lines = (
        bank.filter(named)
        .group_by(*STATEMENT_KEY, "source_file")
        .agg(
            line_no=pl.col("line_no").min(),
            booked=pl.col("booking_date").min(),
            entries=pl.len(),
            total=pl.col("amount_minor").sum(),
            currency=pl.col("amount_currency").min(),
            said=pl.struct(content_columns(bank.columns)).hash().sort(),
        )
    )
    own = (
        statements.filter(named)
        .group_by(*STATEMENT_KEY, "source_file")
        .agg(
            stmt_line=pl.col("line_no").min(),
            day=pl.coalesce("closing_date", "opening_date").min(),
            closing=pl.col("closing_minor").first(),
            closing_currency=pl.col("closing_currency").first(),
            stated=pl.struct(content_columns(statements.columns)).hash().sort(),
        )
    )
    empty = pl.lit([], pl.List(pl.UInt64))
    return (
        lines.join(own, on=[*STATEMENT_KEY, "source_file"], how="full", coalesce=True, nulls_equal=True)
        .with_columns(
            line_no=pl.min_horizontal("line_no", "stmt_line"),
            booked=pl.coalesce("booked", "day"),
            entries=pl.col("entries").fill_null(0),
            total=pl.col("total").fill_null(0),
            currency=pl.coalesce("currency", "closing_currency"),
            said=pl.col("said").fill_null(empty),
            stated=pl.col("stated").fill_null(empty),
        )
        .sort(*STATEMENT_KEY, "source_file", "line_no", nulls_last=True)
        .with_columns(rank=pl.int_range(pl.len()).over(*STATEMENT_KEY, "day"))
    )


def statement_copies(bank: pl.DataFrame, statements: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(the bank lines and statements of each statement's first version, with every
    line that has no statement id; raw `corrected_statement` variances)."""
    versions = _versions(bank, statements)
    if versions.is_empty() or versions["rank"].max() == 0:
        return bank, statements, pl.DataFrame(schema=RAW_SCHEMA)
    first = versions.filter(pl.col("rank") == 0)
    same = [*STATEMENT_KEY, "day"]
    later = versions.filter(pl.col("rank") > 0).join(first, on=same, suffix="_first", nulls_equal=True)
    changed = later.filter((pl.col("said") != pl.col("said_first")) | (pl.col("stated") != pl.col("stated_first")))
    changed = changed.unique(subset=[*same, "said", "stated"], keep="first", maintain_order=True)
    only = lambda a, b: pl.col(a).list.set_difference(b).list.len().cast(pl.String)  # noqa: E731
    raw = changed.select(
        category=pl.lit("corrected_statement"),
        processor=pl.lit(None, pl.String),
        merchant_id=pl.lit(None, pl.String),
        reference=pl.concat_str(
            "account", pl.lit(" statement "), "statement_id", pl.lit("/"), pl.col("sequence").fill_null("")
        ),
        payout_id=pl.lit(None, pl.String),
        amount_minor=(pl.col("total") - pl.col("total_first")).abs(),
        currency="currency_first",
        field=pl.lit("entries"),
        expected=_entries("_first"),
        actual=pl.concat_str(
            _entries(),
            pl.lit(" (entries: "),
            only("said", "said_first"),
            pl.lit(" changed or added, "),
            only("said_first", "said"),
            pl.lit(" changed or gone)"),
        ),
        since="booked_first",
        ledger_event_ids=_NO_STRINGS,
        evidence=pl.concat_list(evidence("source_file_first", "line_no_first"), evidence()),
        key=pl.concat_str("account", "statement_id", pl.col("sequence").fill_null(""), "source_file", separator="|"),
    )
    dropped = later.select(*STATEMENT_KEY, "source_file")
    kept_lines, kept_statements = (
        frame.join(dropped, on=[*STATEMENT_KEY, "source_file"], how="anti", nulls_equal=True)
        for frame in (bank, statements)
    )
    return kept_lines, kept_statements, raw.select(list(RAW_SCHEMA)).cast(RAW_SCHEMA)


def sort_out(inputs: Inputs, known: Repeats | None = None) -> tuple[Inputs, pl.DataFrame]:
    """(the inputs with every copy taken out, raw variances of the copies that differ);
    `known` as in `_resent`. The settlement lines come back as the very frame handed in
    when no line was a copy."""
    lines, corrected_lines = processor_copies(inputs.settlement_lines, known)
    bank, statements, corrected_statements = statement_copies(
        inputs.bank_lines.lazy().collect(), inputs.statements.lazy().collect().cast(STATEMENT_SCHEMA)
    )
    taken = replace(inputs, settlement_lines=lines, bank_lines=bank, statements=statements)
    return taken, pl.concat([corrected_lines, corrected_statements])
