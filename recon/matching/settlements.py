"""Ledger ↔ processor: each expected settlement against the line a processor reported.

Key: (processor, the processor's line id), which the ledger learns from the processor's
settlement notice. One-to-one on the key; a second line under the same id, or a line the
ledger never expected that repeats another line field for field, is a duplicate.

A matched pair is compared field by field in a fixed order, and the first difference
names the variance, so one broken line is one variance: currency, then FX rate (both
currency_fx_mismatch: the net follows the rate), gross (amount_mismatch), fee
(fee_mismatch), net (amount_mismatch; currency_fx_mismatch on a converted line, whose
net moves with the rate), value date outside the window (late_settlement).
An expected line nobody reported is pending until its deadline, then
missing_at_processor; a reported line the ledger has no record of likewise becomes
missing_in_ledger.

Only payment kinds (`clearline.recon.lines.PAYMENT_KINDS`) are the ledger's to expect line
by line. A batch kind (a cost, a correction, a balance transfer, a payout reversal) has no
ledger record of its own: it is answered for by its batch's payout, which counts it and
which the bank must show, so it is never missing_in_ledger. A line of a type intake did
not know ("unclassified") is an unclassified_processor_line variance at once, with its
raw row as evidence, so a person classifies it; it too counts in its batch's payout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import polars as pl

from clearline.recon.lines import PAYMENT_KINDS
from clearline.recon.matching.rules import Tolerances, evidence, first_difference, first_rows, overdue, ranked, repeated
from clearline.recon.matching.variance import ABSENT, PENDING_SCHEMA, RAW_SCHEMA, money_text

# What makes two reported lines "the same line twice" when their ids differ.
FINGERPRINT = [
    "processor",
    "payment_id",
    "record_type",
    "gross_minor",
    "gross_currency",
    "fee_minor",
    "net_minor",
    "net_currency",
    "value_date",
    "payout_id",
]
_EXP = "exp_"


def _rate(col: str) -> pl.Expr:
    """A rate's decimal text in one spelling: '0.927700' and '0.9277' agree, no rate is 1."""
    text = pl.col(col).fill_null("1")
    return (
        pl.when(text.str.contains(r"\.")).then(text.str.strip_chars_end("0").str.strip_chars_end(".")).otherwise(text)
    )


def _list(*cols: str) -> pl.Expr:
    """The non-null values of `cols` as one list column."""
    return pl.concat_list([pl.col(c) for c in cols]).list.drop_nulls()


def _money(prefix: str, name: str) -> pl.Expr:
    return money_text(pl.col(f"{prefix}{name}_minor"), pl.col(f"{prefix}{name}_currency"))


def _rules(tol: Tolerances) -> list[tuple[pl.Expr, ...]]:
    """(condition, category, field, expected, actual, amount, amount's currency) of a
    matched pair (expected columns prefixed `exp_`), in priority order."""
    e, t = _EXP, tol.amount_minor
    off = lambda name: (pl.col(f"{e}{name}_minor") - pl.col(f"{name}_minor")).abs()  # noqa: E731
    days = (pl.col("value_date") - pl.col(f"{e}available_on")).dt.total_days().abs()
    lit, col = pl.lit, pl.col
    # A stand-alone fee line carries its fee as its net (Adyen writes it only as a net
    # debit, with no fee breakdown; no report gives it a gross, so no presentment currency
    # or rate either), so only its net and settlement currency are compared. A converted line whose
    # report gives no rate (Stripe) shows a wrong rate only in its net.
    fee_line = col(f"{e}record_type") == "fee"
    converted = col(f"{e}gross_currency") != col(f"{e}net_currency")
    return [
        (
            ~fee_line & (col(f"{e}gross_currency") != col("gross_currency")),
            lit("currency_fx_mismatch"),
            lit("currency"),
            col(f"{e}gross_currency"),
            col("gross_currency"),
            off("net"),
            col(f"{e}net_currency"),
        ),
        (
            col(f"{e}net_currency") != col("net_currency"),
            lit("currency_fx_mismatch"),
            lit("settlement currency"),
            col(f"{e}net_currency"),
            col("net_currency"),
            col("net_minor").abs(),
            col("net_currency"),
        ),
        (
            ~fee_line & col("fx_rate").is_not_null() & (_rate(f"{e}fx_rate") != _rate("fx_rate")),
            lit("currency_fx_mismatch"),
            lit("fx_rate"),
            col(f"{e}fx_rate").fill_null("none"),
            col("fx_rate"),
            off("net"),
            col(f"{e}net_currency"),
        ),
        (
            ~fee_line & (off("gross") > t),
            lit("amount_mismatch"),
            lit("gross"),
            _money(e, "gross"),
            _money("", "gross"),
            off("gross"),
            col(f"{e}gross_currency"),
        ),
        (
            ~fee_line & (off("fee") > t),
            lit("fee_mismatch"),
            lit("fee"),
            _money(e, "fee"),
            _money("", "fee"),
            off("fee"),
            col(f"{e}fee_currency"),
        ),
        (
            fee_line & (off("net") > t),
            lit("fee_mismatch"),
            lit("fee"),
            _money(e, "fee"),
            money_text(-col("net_minor"), col("net_currency")),
            off("net"),
            col(f"{e}net_currency"),
        ),
        (
            converted & (off("net") > t),
            lit("currency_fx_mismatch"),
            lit("converted net"),
            _money(e, "net"),
            _money("", "net"),
            off("net"),
            col(f"{e}net_currency"),
        ),
        (
            off("net") > t,
            lit("amount_mismatch"),
            lit("net"),
            _money(e, "net"),
            _money("", "net"),
            off("net"),
            col(f"{e}net_currency"),
        ),
        (
            days > tol.date_window_days,
            lit("late_settlement"),
            lit("available_on"),
            col(f"{e}available_on").cast(pl.String),
            col("value_date").cast(pl.String),
            col("net_minor").abs(),
            col("net_currency"),
        ),
    ]


def _differs(rules: list[tuple[pl.Expr, ...]]) -> pl.Expr:
    return pl.any_horizontal(rule[0] for rule in rules)


def compare(pairs: pl.DataFrame, tol: Tolerances) -> pl.DataFrame:
    """Raw variances of matched pairs (expected columns prefixed `exp_`), first difference only."""
    rules = _rules(tol)
    category, field, expected, actual, amount, currency = first_difference(rules)
    pairs = pairs.filter(_differs(rules))  # text only for the few that differ
    return pairs.select(
        category=category,
        processor="processor",
        merchant_id="merchant_id",
        reference="line_id",
        payout_id="payout_id",
        amount_minor=amount.cast(pl.Int64),
        currency=currency,
        field=field,
        expected=expected.cast(pl.String),
        actual=actual.cast(pl.String),
        since=pl.col("value_date"),
        ledger_event_ids=_list(f"{_EXP}event_id"),
        evidence=pl.concat_list(evidence()),
        key=pl.concat_str("processor", pl.lit("|"), "line_id"),
    ).filter(pl.col("category").is_not_null())


@dataclass(frozen=True)
class Reported:
    """Reported lines as matching reads them (`reported`): the lines numbered `_l` (lazy);
    the later lines and the first of each id that repeats, whole (the copies step reads
    its repeats from here too); and, whole, the few rows the digests could not vouch for:
    expected settlements and first payment lines that may differ from their partner or
    have none, and the unclassified first lines; and the first payment lines (`near`)
    whose net is one of `near_nets` (`_n`), the nets of the lines no unsure expectation
    shares a key hash with: what a line the ledger never expected is compared with to
    find it a duplicate. Every line is hashed once and read whole at most once per
    reconciliation."""

    lines: pl.LazyFrame
    later: pl.DataFrame
    heads: pl.DataFrame
    unsure_exp: pl.DataFrame
    unsure_lines: pl.DataFrame
    unclassified: pl.DataFrame
    near: pl.DataFrame
    near_nets: pl.DataFrame

    def without(self, copies: pl.DataFrame) -> Reported:
        """What `reported` says of the lines once `copies` (later lines, `copies.sent_again`)
        are taken out, as `reported` of what is left would say it (short of reading every
        line again): each id's first line stays first, so all read of the first lines
        holds; the later lines lose the copies, and the heads the ids left with none."""
        gone = copies.select(*_KEY, *_WHERE)
        later = self.later.join(gone, on=[*_KEY, *_WHERE], how="anti")
        return replace(
            self,
            lines=self.lines.join(gone.lazy(), on=[*_KEY, *_WHERE], how="anti"),
            later=later,
            heads=self.heads.join(later.select(_KEY).unique(), on=_KEY, how="semi", nulls_equal=True),
        )


def reported(expected: pl.DataFrame | pl.LazyFrame, lines: pl.DataFrame | pl.LazyFrame) -> Reported:
    """At ten million lines nearly every pair agrees field for field, so the rows are
    matched first on their digests: a first row (by key) whose hashes of key and compared
    fields (two 64-bit hashes, two seeds) no row on the other side shares has no partner
    or a partner that differs, and is read whole; the exact join on the real keys that
    follows (`match`) pairs them. A row whose hashes the other side shares has a partner
    with the same key and fields (short of both hashes colliding at once), so no rule can
    fire on it. The digests are paired by `unpaired` (a sort, not a join).

    The lines' digest takes every line, not only the first of each id, because which line
    comes first is known only once the lines of a repeated id are read whole, and those
    are read in the same pass as the unsure ones. A later line that equals its first (two
    of one hash on one side) is unsure with it, so their expected settlement is too; a
    later line that alone equals the expected settlement vouches for it in place of its
    first, so that settlement is read afterwards (the case of a corrected line sent
    again)."""
    exp = expected.lazy().with_row_index("_e")
    exp_dig = _firsts(exp, _digest(exp, "_e", "settlement_id", "available_on"), "_e", _KEY_EXP, ["event_id"])
    numbered = lines.lazy().with_row_index("_l")
    dig = _digest(numbered, "_l", "line_id", "value_date", _pay=_PAYMENT, _unc=_UNCLASSIFIED, _n=pl.col("net_minor"))
    dig = dig.collect(engine="streaming")
    grouped = dig.join(repeated(dig["_k"]).to_frame("_l"), on="_l", how="semi").select("_l", "_k")
    paid = dig.filter("_pay").select("_l", "_k", "_c", "_c2", "_n")
    # a line sent again as it was has its first's hashes: two of one hash on one side are no
    # pair, so such lines are unsure (read whole anyway, as lines of a repeated id)
    twice = paid.join(grouped.select("_l"), on="_l", how="semi").filter(pl.col("_c").is_duplicated())["_c"]
    exp_odd, paid_odd = unpaired(exp_dig.select("_e", "_k", "_c", "_c2"), paid, "_e", "_l", twice.unique())
    nets = paid_odd.join(exp_odd.select("_k"), on="_k", how="anti").select("_n").unique()
    near = paid.join(nets, on="_n", how="semi", nulls_equal=True).select("_l", "_k")
    picked = pl.concat([paid_odd.select("_l", "_k"), dig.filter("_unc").select("_l", "_k"), grouped, near])
    exp_rows, line_rows = pl.collect_all(
        [_rows(exp, _KEY_EXP, exp_odd, "_e"), _rows(numbered, _KEY, picked, "_l")], engine="streaming"
    )
    later, heads = ranked(line_rows.join(grouped.select("_l"), on="_l", how="semi"), _KEY, _WHERE)
    stood_in = paid.join(later.select("_l"), on="_l", how="semi").join(paid_odd.select("_l"), on="_l", how="anti")
    if not stood_in.is_empty():
        vouched = exp_dig.join(stood_in.select("_c"), on="_c", how="semi").join(exp_odd, on="_e", how="anti")
        more = _rows(exp, _KEY_EXP, vouched, "_e").collect(engine="streaming")
        exp_rows = pl.concat([exp_rows, more]).sort("_e")
    del dig, exp_dig, paid
    firsts = line_rows.join(later.select("_l"), on="_l", how="anti")
    return Reported(
        numbered,
        later,
        heads,
        exp_rows.drop("_e"),
        firsts.join(paid_odd.select("_l"), on="_l", how="semi").drop("_l"),
        firsts.filter(_UNCLASSIFIED).drop("_l"),
        firsts.join(near.select("_l"), on="_l", how="semi").drop("_l"),
        nets,
    )


def match(
    expected: pl.DataFrame | pl.LazyFrame,
    lines: pl.DataFrame | pl.LazyFrame,
    tol: Tolerances,
    as_of: date,
    seen: Reported | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(raw variances, pending) of the ledger's expected settlements against reported lines.

    `expected` has `expectations.SETTLEMENT_SCHEMA`, `lines` `clearline.recon.lines.SETTLEMENT_SCHEMA`,
    in memory or lazy (a Parquet scan is then read in parts, never whole); `seen`, when the
    caller has it, is `reported(expected, lines)`.
    The result does not depend on the order of either input."""
    seen = seen or reported(expected, lines)
    unsure_exp, unsure_lines, unclassified = seen.unsure_exp, seen.unsure_lines, seen.unclassified
    repeats, originals = seen.later.drop("_l"), seen.heads.filter(_PAYMENT).drop("_l")
    odd = (
        unsure_exp.rename(lambda c: _EXP + c)
        .with_columns(_e=pl.lit(True))
        .join(
            unsure_lines.with_columns(_l=pl.lit(True)),
            how="full",
            coalesce=False,
            left_on=[f"{_EXP}processor", f"{_EXP}settlement_id"],
            right_on=["processor", "line_id"],
        )
        .filter(pl.col("_e").is_null() | pl.col("_l").is_null() | _differs(_rules(tol)))
    )
    exp_columns = [c for c in odd.columns if c.startswith(_EXP)]
    line_columns = [c for c in odd.columns if c not in exp_columns and c not in ("_e", "_l")]
    pairs = odd.filter(pl.col("_e").is_not_null() & pl.col("_l").is_not_null())
    missing = odd.filter(pl.col("_l").is_null()).select(exp_columns)
    unexpected = odd.filter(pl.col("_e").is_null()).select(line_columns)
    dups = _duplicates(_near(seen, unexpected), repeats, originals, unexpected)
    unknown = unexpected.join(dups.select("processor", "line_id"), on=["processor", "line_id"], how="anti")
    raw = [
        compare(pairs, tol),
        _missing_at_processor(missing, tol, as_of),
        _duplicate(dups),
        _missing_in_ledger(unknown, tol, as_of),
        _unclassified(unclassified),
    ]
    pending = pl.concat(
        [
            missing.filter(~overdue(f"{_EXP}available_on", tol.processor_line_deadline_days, as_of)).select(
                awaiting=pl.lit("processor line"),
                processor=f"{_EXP}processor",
                reference=f"{_EXP}settlement_id",
                amount_minor=f"{_EXP}net_minor",
                currency=f"{_EXP}net_currency",
                since=f"{_EXP}available_on",
                due_on=pl.col(f"{_EXP}available_on").dt.offset_by(f"{tol.processor_line_deadline_days}d"),
            ),
            unknown.filter(~overdue("value_date", tol.ledger_record_deadline_days, as_of)).select(
                awaiting=pl.lit("ledger record"),
                processor="processor",
                reference="line_id",
                amount_minor="net_minor",
                currency="net_currency",
                since="value_date",
                due_on=pl.col("value_date").dt.offset_by(f"{tol.ledger_record_deadline_days}d"),
            ),
        ]
    ).cast(PENDING_SCHEMA)
    return pl.concat([r.select(list(RAW_SCHEMA)).cast(RAW_SCHEMA) for r in raw]), pending


_PAYMENT = pl.col("record_type").is_in(list(PAYMENT_KINDS)).fill_null(False)
_UNCLASSIFIED = (pl.col("record_type") == "unclassified").fill_null(False)


def _hash(*columns: str, seed: int = 0) -> pl.Expr:
    """A 64-bit hash of `columns` by position (names differ between the two sides): each
    column hashed alone with a seed of its own, folded in by hashing the running XOR again.
    Column by column this is about ten times cheaper than hashing a struct of them, which
    Polars does row by row."""
    folded = pl.col(columns[0]).hash(seed=seed)
    for i, column in enumerate(columns[1:], start=1):
        folded = (folded ^ pl.col(column).hash(seed=seed + i)).hash(seed=seed)
    return folded


def _digest(frame: pl.LazyFrame, index: str, key: str, date: str, **flags: pl.Expr) -> pl.LazyFrame:
    """Row number, a hash of the key (for `first_rows`), two hashes of the key and the
    fields the rules compare (in the same order on both sides) and the caller's `flags`:
    about 30 bytes a row in place of the row itself."""
    fields = (
        "processor",
        key,
        "gross_currency",
        "net_currency",
        "fx_rate",
        "gross_minor",
        "fee_minor",
        "net_minor",
        date,
    )
    return frame.select(
        index, _k=_hash("processor", key), _c=_hash(*fields, seed=100), _c2=_hash(*fields, seed=200), **flags
    )


def _firsts(frame: pl.LazyFrame, digest: pl.LazyFrame, index: str, keys: list[str], order: list[str]) -> pl.DataFrame:
    """The digest of each key's first row of `frame` numbered by `index`: `rules.first_rows`
    on the digest's key hashes, so the keys are hashed once."""
    dig = digest.collect(engine="streaming")
    later = first_rows(frame, keys, order, dig["_k"])[1]
    return dig if later.is_empty() else dig.join(later.select(index), on=index, how="anti")


def _rows(frame: pl.LazyFrame, keys: list[str], picked: pl.DataFrame, index: str) -> pl.LazyFrame:
    """The rows of `frame` whose `index` is in `picked` (with their key hashes `_k`), read
    whole: only the rows whose key hash is one of theirs are decoded beyond the keys."""
    near = _hash(*keys).is_in(picked["_k"].implode())
    return frame.filter(near).join(picked.lazy().select(index), on=index, how="semi")


def _xor(frame: pl.DataFrame, column: str) -> int:
    return frame.select(pl.col(column).bitwise_xor()).item() or 0


def unpaired(
    left: pl.DataFrame, right: pl.DataFrame, left_index: str, right_index: str, twice: pl.Series | None = None
):
    """(the rows of `left`, the rows of `right`) that a full join of the two on the hash
    `_c` leaves without a partner, or pairs with a partner of another second hash `_c2`,
    or whose `_c` is one of `twice` (hashes one side holds twice: no pair); otherwise each
    side's `_c` is unique short of a collision, and its rows are told apart by its index
    column.

    At ten million rows a side the join is the dearest part of a reconciliation, and
    nearly every row has its partner, so the partners are found by sorting both sides'
    `_c` together instead: a hash that comes exactly twice is a pair, any other count is
    not. The second hashes then vouch for the pairs in one sum: the XOR of the paired
    rows' `_c2` is the same on both sides when every pair agrees in `_c2` (short of a 64-bit
    coincidence). Should it not be, a collision of `_c` paired rows that differ, and the
    join says which."""
    hashes = pl.concat([left["_c"], right["_c"]]).sort()
    lone = hashes.rle().struct.unnest().filter(pl.col("len") != 2).select(_c="value")
    twice = pl.Series("_c", [], pl.UInt64) if twice is None else twice.rename("_c")
    if len(twice):
        lone = pl.concat([lone, twice.to_frame()]).unique()
    left_lone = left.join(lone, on="_c", how="semi")
    right_lone = right.join(lone, on="_c", how="semi")
    left_paired = left.height - left_lone.height
    vouched = left_paired == right.height - right_lone.height and _xor(left, "_c2") ^ _xor(left_lone, "_c2") == _xor(
        right, "_c2"
    ) ^ _xor(right_lone, "_c2")
    if vouched:
        return left_lone, right_lone
    odd = left.join(right, on="_c", how="full", coalesce=True, suffix="_right").filter(
        pl.col(left_index).is_null()
        | pl.col(right_index).is_null()
        | (pl.col("_c2") != pl.col("_c2_right"))
        | pl.col("_c").is_in(twice.implode())
    )
    picked = lambda frame, index: frame.join(odd.select(index).drop_nulls(), on=index, how="semi")  # noqa: E731
    return picked(left, left_index), picked(right, right_index)


_KEY, _KEY_EXP, _WHERE = ["processor", "line_id"], ["processor", "settlement_id"], ["source_file", "line_no"]


def _missing_at_processor(missing: pl.DataFrame, tol: Tolerances, as_of: date) -> pl.DataFrame:
    e = _EXP
    return missing.filter(overdue(f"{e}available_on", tol.processor_line_deadline_days, as_of)).select(
        category=pl.lit("missing_at_processor"),
        processor=f"{e}processor",
        merchant_id=f"{e}merchant_id",
        reference=f"{e}settlement_id",
        payout_id=f"{e}payout_id",
        amount_minor=pl.col(f"{e}net_minor").abs(),
        currency=f"{e}net_currency",
        field=pl.lit("line"),
        expected=pl.concat_str(pl.lit("net "), _money(e, "net")),
        actual=pl.lit(ABSENT),
        since=f"{e}available_on",
        ledger_event_ids=_list(f"{e}event_id"),
        evidence=pl.lit([], pl.List(pl.String)),
        key=pl.concat_str(f"{e}processor", pl.lit("|"), f"{e}settlement_id"),
    )


def _near(seen: Reported, unexpected: pl.DataFrame) -> pl.DataFrame:
    """The first payment lines that share a net with an `unexpected` line: `seen.near`,
    and, should an unexpected line's net not be among `seen.near_nets` (its key hash is
    an unsure expectation's: a collision), the lines with that net, read now."""
    missed = unexpected.join(seen.near_nets, left_on="net_minor", right_on="_n", how="anti", nulls_equal=True)
    if missed.is_empty():
        return seen.near
    firsts = seen.lines.join(seen.later.lazy().select("_l"), on="_l", how="anti").filter(_PAYMENT).drop("_l")
    nets = missed.lazy().select(_n="net_minor").unique()
    more = firsts.join(nets, left_on="net_minor", right_on="_n", how="semi", nulls_equal=True)
    return pl.concat([seen.near, more.collect(engine="streaming")])


def _duplicates(
    near: pl.DataFrame, repeats: pl.DataFrame, originals: pl.DataFrame, unexpected: pl.DataFrame
) -> pl.DataFrame:
    """Reported lines that repeat another one, each with the `original` line id and its
    evidence: a later line under an id already seen (`originals`: the first line of each
    id that repeats), and a line the ledger never expected whose fields are all those of a
    line that ranks before it (a line the ledger expected first, then by line id). Only
    the few unexpected lines are compared field by field, with the first payment lines
    that share a net with one of them (`near`, `_near`)."""
    alike = near.join(unexpected.select(FINGERPRINT).unique(), on=FINGERPRINT, nulls_equal=True, how="semi")
    same_id = repeats.join(
        originals.select("processor", "line_id", original="line_id", original_evidence=evidence()),
        on=["processor", "line_id"],
    )
    group = alike.join(
        unexpected.select("processor", "line_id", unexpected=pl.lit(True)), on=["processor", "line_id"], how="left"
    )
    group = group.with_columns(expected=pl.col("unexpected").is_null()).sort(
        *FINGERPRINT,
        "expected",
        "line_id",
        "source_file",
        "line_no",
        descending=[False] * len(FINGERPRINT) + [True, False, False, False],
        nulls_last=True,
    )
    same_fields = group.with_columns(
        original=pl.col("line_id").first().over(FINGERPRINT),
        original_evidence=evidence().first().over(FINGERPRINT),
    ).filter(~pl.col("expected") & (pl.col("original") != pl.col("line_id")))
    return pl.concat([same_id, same_fields.select(same_id.columns)])


def _reported(
    lines: pl.DataFrame, category: str, field: str, expected: pl.Expr, actual: pl.Expr, proof: pl.Expr, key: pl.Expr
) -> pl.DataFrame:
    """A variance about each reported line: its net at stake, on its value date."""
    return lines.select(
        category=pl.lit(category),
        processor="processor",
        merchant_id="merchant_id",
        reference="line_id",
        payout_id="payout_id",
        amount_minor=pl.col("net_minor").abs(),
        currency="net_currency",
        field=pl.lit(field),
        expected=expected,
        actual=actual,
        since="value_date",
        ledger_event_ids=pl.lit([], pl.List(pl.String)),
        evidence=proof,
        key=key,
    )


_LINE_KEY = pl.concat_str("processor", pl.lit("|"), "line_id")


def _duplicate(dups: pl.DataFrame) -> pl.DataFrame:
    return _reported(
        dups,
        "duplicate",
        "line_id",
        pl.concat_str(pl.lit("one line "), "original"),
        pl.concat_str(pl.lit("again as "), "line_id"),
        pl.concat_list("original_evidence", evidence()),
        pl.concat_str("processor", pl.lit("|"), "line_id", pl.lit("|"), evidence()),
    )


def _missing_in_ledger(unknown: pl.DataFrame, tol: Tolerances, as_of: date) -> pl.DataFrame:
    return _reported(
        unknown.filter(overdue("value_date", tol.ledger_record_deadline_days, as_of)),
        "missing_in_ledger",
        "line",
        pl.lit(ABSENT),
        pl.concat_str(pl.lit("net "), _money("", "net")),
        pl.concat_list(evidence()),
        _LINE_KEY,
    )


def _unclassified(lines: pl.DataFrame) -> pl.DataFrame:
    """A line whose record type intake did not know: its type as the processor names it,
    its net, and as evidence its place and its raw row."""
    return _reported(
        lines,
        "unclassified_processor_line",
        "record type",
        pl.lit("a record type reconciliation knows"),
        pl.concat_str(pl.col("source_type").fill_null("none"), pl.lit(", net "), _money("", "net")),
        pl.concat_list(evidence(), pl.col("raw").fill_null("")),
        _LINE_KEY,
    )
