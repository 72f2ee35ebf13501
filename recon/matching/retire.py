"""What a long-running stream may let go of: settled items whose every window has passed,
and how a late arrival finds what it touches among them.

A reconciliation over the stream's whole history gives the same variances as one over
what is still open, plus what was settled long ago, when the settled part is cut out
along the seams where nothing couples it to the rest. Three such cuts are exact:

* a processor payout batch (processor, payout id) whose lines and expectations pair only
  among themselves (no line id twice, none named by a variance about no batch), whose
  ledger `processor.payout` is exactly the sum of its lines, and whose bank line, the
  only one under its reference, is exactly that amount; it goes with its payout's ledger
  movement and bank line, in one unit. The batch's own variances (a line a few days
  late) are kept as they were published ("frozen"): nothing live can change them, and
  (the payout booked the day expected) no balance check names them either. The entries
  naming its variances go with it, what one moved in the bank's cash carried as worked.
  More kinds of batch go the same way:
  - one the bank booked at another amount than the ledger expected (a fee the processor
    took that the ledger did not expect; a bank that booked another sum than the lines'
    too), once every variance about it is closed by an adjusting entry: a balance sums
    such a difference as worked and names none of it, so the difference is carried as
    one `continuity.WORKED` movement per account and day, which every later balance sums
    alike;
  - one whose payout the bank never booked, taken back out of the bank's cash by an
    entry, once every variance about it is closed: the ledger's movement is carried as
    worked on its day (`_unbooked`), and the batch comes back, as a line and a movement
    nothing explains do (`retire_entries`), on an input dated near its payout;
  - batches a line couples to each other (paid in another batch than the ledger
    expected it in, or named by a variance about the other batch), cut out together as
    a group when each of them may be: a key of one brings back all of them;
* the pairs of a batch that stays (it has breaks, so its payout is an open item on the
  balance) whose expected settlement and line agree: they are cut out and one summary
  line of a batch kind (`SUMMARY_KIND`, counted in its payout, matched against nothing)
  carries their net, so the payout sums as before. The breaks stay live with their
  expectations, so every variance, and what each claims on a statement, is computed
  as before;
* a bank movement the ledger expected and the one bank line under its reference, the
  same amount and currency, with no variance or pending item about the reference (a
  processor payout only once its batch is cut out whole). Cut out, its amount stays in
  the books as a `retired|account|currency|expected|booked` pair, one per account and
  pair of days, which matches itself: the ledger's bank cash on every statement's day,
  and what is in transit on it, are exactly as before.

A fourth, a reference an adjusting entry settled (a bank line parked in suspense, a
payout the bank never booked taken back out), is `retire_entries`'.

What is cut out is named by keys (`touch_keys`): a line or expectation id, a payout or
movement reference, a statement's identity, a frozen variance's id. A late arrival with
one of those keys (a line sent again, a duplicate, a bank line naming a retired payout,
an adjustment naming a frozen variance) brings its unit back whole, and the next
reconciliation is again the one over every input. Keys are kept as 64-bit hashes: two
keys hashing alike only bring back a unit that did not need to come back.

Pure functions on frames here; `continuous.Continuous` keeps the store and the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from clearline.recon.lines import BANK_SCHEMA, PAYMENT_KINDS, SETTLEMENT_SCHEMA, STATEMENT_SCHEMA
from clearline.recon.matching import continuity, expectations

# Variances of a payout batch's own lines (settlements.match, copies.processor_copies).
LINE_CATEGORIES = (
    "amount_mismatch",
    "fee_mismatch",
    "currency_fx_mismatch",
    "late_settlement",
    "duplicate",
    "missing_at_processor",
    "missing_in_ledger",
    "corrected_line",
    "unclassified_processor_line",
)
INDEX_SCHEMA = {"key": pl.UInt64(), "unit": pl.UInt64()}
CARRY_SCHEMA = {
    "account": pl.String(),
    "currency": pl.String(),
    "day": pl.Date(),  # expected by the ledger
    "booked": pl.Date(),  # booked by the bank
    "amount_minor": pl.Int64(),  # the bank's amount, a pair that matches itself
    # the ledger's movement less the bank's: a payout batch whose every break was closed
    # (continuity.WORKED), in the balance from `day` on
    "worked": pl.Int64(),
}
SUMMARY_SCHEMA = {
    "unit": pl.UInt64(),
    "processor": pl.String(),
    "payout_id": pl.String(),
    "currency": pl.String(),
    "value_date": pl.Date(),
    "net_minor": pl.Int64(),
}
SUMMARY_KIND = "transfer"  # a batch kind: counted in its payout, matched against nothing
_PAYOUT = "processor_payout"


@dataclass(frozen=True)
class Plan:
    """What to cut out: `batches` (processor, payout_id, unit) and `pairs` (reference,
    account, currency, day, booked, amount_minor the bank's, residual the ledger's less
    the bank's, unit); a unit is named 'B|reference', a batch by its payout's reference, so
    a batch and its payout's pair are one unit."""

    batches: pl.DataFrame
    pairs: pl.DataFrame
    # (processor, payout_id, id, unit): pairs of an expected settlement and its line that
    # agree, cut out of a batch that stays (it has breaks): the batch's summary line stands in
    clean: pl.DataFrame
    # (unit, group): batches coupled to each other (a line paid in another batch than the
    # ledger's), cut out together: a key of one brings back every one of its group
    groups: pl.DataFrame
    # (reference, unit, and `CARRY_SCHEMA`): the payouts of batches cut out that the bank
    # never booked, each an entry took back out: the ledger's movement, carried as worked
    unbooked: pl.DataFrame

    @property
    def empty(self) -> bool:
        return self.batches.is_empty() and self.pairs.is_empty() and self.clean.is_empty()


def hashed(text: pl.Expr) -> pl.Expr:
    return text.hash(seed=0)


def joined_key(tag: str, *cols: str | pl.Expr) -> pl.Expr:
    return pl.concat_str(pl.lit(tag), *[pl.col(c) if isinstance(c, str) else c for c in cols], separator="|")


def touch_keys(frames: dict[str, pl.DataFrame]) -> pl.Series:
    """The hashed keys that arriving inputs (named as `reconcile.Inputs` fields) may touch."""
    keys = [
        frame.select(key=hashed(expr)).to_series().drop_nulls()
        for name, frame in frames.items()
        if frame is not None and frame.height
        for expr in _TOUCHED_BY.get(name, ())
    ]
    return pl.concat(keys) if keys else pl.Series("key", [], pl.UInt64)


def statement_key() -> pl.Expr:
    named = pl.col("statement_id").fill_null("") != ""
    return pl.when(named).then(joined_key("s", "account", "statement_id", pl.col("sequence").fill_null("")))


_TOUCHED_BY = {
    "expected_settlements": (joined_key("k", "processor", "settlement_id"), joined_key("p", "payout_id")),
    "settlement_lines": (joined_key("k", "processor", "line_id"), joined_key("p", "payout_id")),
    "expected_movements": (joined_key("p", "reference"),),
    "bank_lines": (joined_key("p", "reference"), statement_key()),
    "statements": (statement_key(),),
    "adjustments": (joined_key("v", "variance_id"),),
}


def plan(
    frames: dict[str, pl.DataFrame],
    variances: pl.DataFrame,
    closed: pl.DataFrame,
    pending: pl.DataFrame,
    books: pl.DataFrame,
    cutoff: date,
) -> Plan:
    """What of the live `frames` (expected_settlements, expected_movements,
    settlement_lines, bank_lines) may be cut out, given the live reconciliation's
    variances, closed variances and pending items, with every date on or before `cutoff`.
    A batch whose clean pairs were cut out before is here as its summary line, which its
    report's total counts, so it is cut out whole by the same rule as any other."""
    exp, lines = frames["expected_settlements"], frames["settlement_lines"]
    moves, bank = frames["expected_movements"], frames["bank_lines"]
    # a reference a variance or pending item is about is not settled (a batch's own line
    # variances name its payout only as payout_id: they go with the batch, kept as published)
    refs_busy = pl.concat([variances["reference"], closed["reference"], pending["reference"]]).drop_nulls()
    pairs = _pairs(moves, bank, books, refs_busy)
    tangled, split, shared, groups = _tangled(exp, lines, variances, closed, pending)
    own = pl.concat([variances, closed.select(variances.columns)]).filter(pl.col("category").is_in(LINE_CATEGORIES))
    worked = _worked(variances, closed, exp)
    unbooked = _unbooked(moves, bank, exp, lines, books, cutoff, tangled, worked)
    batches = pl.concat(
        [
            _batches(lines, exp, pairs, cutoff, tangled, own["payout_id"].drop_nulls(), worked),
            unbooked.select("processor", "payout_id"),
        ]
    )
    # a group of coupled batches goes whole or not at all
    short = groups.join(batches, on="payout_id", how="anti")["group"]
    batches = batches.join(groups.filter(pl.col("group").is_in(short.implode())), on="payout_id", how="anti")
    clean = _clean(exp, lines, variances, closed, pending, batches, cutoff, split, pl.concat([shared, refs_busy]))
    live_payouts = pl.concat(
        [
            exp.join(batches, on=["processor", "payout_id"], how="anti")["payout_id"],
            lines.join(batches, on=["processor", "payout_id"], how="anti")["payout_id"],
        ]
    )
    pairs = pairs.filter(
        (pl.max_horizontal("day", "booked") <= cutoff)
        & ~((pl.col("kind") == _PAYOUT) & pl.col("reference").is_in(live_payouts.implode()))
        # a payout the bank booked another amount of goes only with its batch (`_batches`)
        & ((pl.col("residual") == 0) | pl.col("reference").is_in(batches["payout_id"].implode()))
    )
    return Plan(
        # a batch goes with its payout's pair, in one unit: neither comes back without the other
        batches.with_columns(unit=joined_key("B", "payout_id")),
        pairs.select(
            "reference",
            "account",
            "currency",
            "day",
            "booked",
            "amount_minor",
            "residual",
            unit=joined_key("B", "reference"),
        ),
        clean.with_columns(unit=joined_key("B", "payout_id")),
        batches.join(groups, on="payout_id").select(unit=joined_key("B", "payout_id"), group="group"),
        unbooked.join(batches, on=["processor", "payout_id"], how="semi").select(
            reference="payout_id",
            unit=joined_key("B", "payout_id"),
            account="account",
            currency="currency",
            day="day",
            booked="day",
            amount_minor=pl.lit(0, pl.Int64),
            worked="amount_minor",
        ),
    )


def _alone(frame: pl.DataFrame, **columns: str) -> pl.DataFrame:
    """One row per reference that no other row of `frame` shares, with `columns` (new
    name = old name): a reference on two rows is not a clean pair, so it is never retired."""
    first = {new: pl.col(old).first() for new, old in columns.items()}
    return frame.group_by("reference").agg(n=pl.len(), **first).filter(pl.col("n") == 1)


def _pairs(moves: pl.DataFrame, bank: pl.DataFrame, books: pl.DataFrame, busy: pl.Series) -> pl.DataFrame:
    """Movements and the bank line under their reference that agree in currency and, but
    for a processor payout, exactly in amount: (kind, reference, processor, account,
    currency, day expected, day booked, amount_minor the bank's, residual the ledger's less
    the bank's), one per reference. The days may differ within the window (a repayment
    made on a Saturday, booked on Monday): the carried pair keeps both, so the reference is
    in transit over the same days. A payout of another amount than the ledger's is the
    processor paying what its lines say when the ledger expected otherwise: the batch's
    breaks say why, and it goes only with its batch (`_batches`)."""
    ledger = _alone(
        moves.filter(pl.col("reference").is_not_null()),
        kind="kind",
        processor="processor",
        amount_minor="amount_minor",
        currency="amount_currency",
        day="expected_on",
    )
    # a statement that came in two versions is compared line for line (copies.statement_copies)
    versions = pl.col("source_file").n_unique().over("account", "statement_id", "sequence")
    booked = _alone(
        bank.filter(
            pl.col("reference").is_not_null() & ((pl.col("statement_id").fill_null("") == "") | (versions == 1))
        ),
        account="account",
        b_amount="amount_minor",
        b_currency="amount_currency",
        booked="booking_date",
    )
    accounts = books.select(book_account="account", currency="currency")
    tied = books["account"].implode()
    return (
        ledger.join(booked, on="reference")
        .join(accounts, on="currency", how="left")
        .filter(
            ((pl.col("amount_minor") == pl.col("b_amount")) | (pl.col("kind") == _PAYOUT))
            & (pl.col("currency") == pl.col("b_currency"))
            # the ledger's side counts in its currency's account: the bank line must be there
            # (or in an account the books do not tie, where no balance is checked)
            & (
                (pl.col("book_account") == pl.col("account"))
                | (pl.col("book_account").is_null() & ~pl.col("account").is_in(tied))
            )
            & ~pl.col("reference").is_in(busy.implode())
        )
        .select(
            "kind",
            "reference",
            "processor",
            "account",
            "currency",
            "day",
            "booked",
            amount_minor="b_amount",
            residual=pl.col("amount_minor") - pl.col("b_amount"),
        )
    )


def _worked(variances: pl.DataFrame, closed: pl.DataFrame, exp: pl.DataFrame) -> pl.Series:
    """What only closed variances are about (`continuity.claims`): a balance names none of
    it, it sums it as worked, as it does a stream's carried `continuity.WORKED` movement."""
    about = continuity.claims(
        variances,
        closed,
        continuity.jumps_of_carried(pl.DataFrame(schema=STATEMENT_SCHEMA)),
        pl.Series([], dtype=pl.String),
        exp,
    )
    return about.group_by("ref").agg(pl.col("closed").all()).filter("closed")["ref"]


def _tangled(
    exp: pl.DataFrame, lines: pl.DataFrame, variances: pl.DataFrame, closed: pl.DataFrame, pending: pl.DataFrame
) -> tuple[pl.Series, pl.DataFrame, pl.Series, pl.DataFrame]:
    """(payouts coupled to anything but other batches, the line ids that couple them,
    payouts under two processors, the batches coupled to each other as `_groups`). A line
    id couples when it is there twice (a copy, a duplicate), in two batches (a line paid in
    another batch than the ledger's), or named by a variance or pending item that names
    another batch or none. A batch coupled only to other batches goes with them: their
    group is cut out whole or not at all."""
    keys = _keys(exp, lines)
    named = pl.concat(
        [
            variances.select("processor", "reference", "payout_id"),
            closed.select("processor", "reference", "payout_id"),
            pending.select("processor", "reference", payout_id=pl.lit(None, pl.String)),
        ]
    )
    elsewhere = (
        keys.select("processor", "payout_id", reference="id")
        .join(named, on=["processor", "reference"], suffix="_named")
        .filter(pl.col("payout_id_named").is_null() | (pl.col("payout_id_named") != pl.col("payout_id")))
    )
    spread = keys.filter(pl.col("payout_id").n_unique().over("processor", "id") > 1)
    twice = pl.concat(
        [
            lines.filter(pl.len().over("processor", "line_id") > 1).select("processor", id="line_id"),
            exp.filter(pl.len().over("processor", "settlement_id") > 1).select("processor", id="settlement_id"),
        ]
    )
    split = pl.concat([spread.select("processor", "id"), twice, elsewhere.select("processor", id="reference")]).unique()
    loose = pl.concat(
        [twice, elsewhere.filter(pl.col("payout_id_named").is_null()).select("processor", id="reference")]
    )
    shared = keys.group_by("payout_id").agg(n=pl.col("processor").n_unique()).filter(pl.col("n") > 1)["payout_id"]
    tangled = keys.join(loose, on=["processor", "id"], how="semi")["payout_id"]
    links = pl.concat(
        [
            spread.join(spread, on=["processor", "id"]).select(a="payout_id", b="payout_id_right"),
            elsewhere.filter(pl.col("payout_id_named").is_not_null()).select(a="payout_id", b="payout_id_named"),
        ]
    )
    return pl.concat([tangled, shared]), split, shared, _groups(links)


def _groups(links: pl.DataFrame) -> pl.DataFrame:
    """(payout_id, group) of the batches `links` (a, b) couple, directly or through others,
    each group named by its least payout id. Groups are small (a late line couples two
    days' batches): a union-find over the links, in Python."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links.iter_rows():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return pl.DataFrame(
        {"payout_id": list(parent), "group": [root(p) for p in parent]},
        schema={"payout_id": pl.String, "group": pl.String},
    )


def _keys(exp: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(
        [
            lines.select("processor", "payout_id", id="line_id", day="value_date"),
            exp.select("processor", "payout_id", id="settlement_id", day="available_on"),
        ]
    )


def _unbooked(
    moves: pl.DataFrame,
    bank: pl.DataFrame,
    exp: pl.DataFrame,
    lines: pl.DataFrame,
    books: pl.DataFrame,
    cutoff: date,
    excluded: pl.Series,
    worked: pl.Series,
) -> pl.DataFrame:
    """(processor, payout_id, account, currency, day, amount_minor) of the payout batches
    whose payout the bank never booked (no bank line under its reference), taken back out
    of the bank's cash by an adjusting entry: every variance about it is closed (`worked`).
    The ledger's movement, and the entry's bank leg, are then in every later balance as
    what only closed variances are about, summed as worked: the movement is carried as a
    `continuity.WORKED` movement on its day (the entry's leg goes with the entry)."""
    payouts = _alone(
        moves.filter((pl.col("kind") == _PAYOUT) & pl.col("reference").is_not_null()),
        processor="processor",
        amount_minor="amount_minor",
        currency="amount_currency",
        day="expected_on",
    )
    booked = bank.select(pl.coalesce("reference", "bank_ref"))["reference"]
    last = _keys(exp, lines).group_by("processor", "payout_id").agg(last=pl.col("day").max())
    return (
        payouts.rename({"reference": "payout_id"})
        .join(last, on=["processor", "payout_id"])
        .join(books.select("account", "currency"), on="currency")
        .filter(
            ~pl.col("payout_id").is_in(booked.implode())
            & pl.col("payout_id").is_in(worked.implode())
            & ~pl.col("payout_id").is_in(excluded.implode())
            & (pl.max_horizontal("last", "day") <= cutoff)
        )
        .select("processor", "payout_id", "account", "currency", "day", "amount_minor")
    )


def _batches(
    lines: pl.DataFrame,
    exp: pl.DataFrame,
    pairs: pl.DataFrame,
    cutoff: date,
    excluded: pl.Series,
    with_breaks: pl.Series,
    worked: pl.Series,
) -> pl.DataFrame:
    """(processor, payout_id) of the payout batches that may be cut out whole. One with
    variances of its own (`with_breaks`) only when its payout is booked the day expected:
    its variances are kept as published, out of the live pass, and a payout in transit on a
    statement's day would be named by them there. One whose payout the bank booked at
    another amount than the ledger expected (its lines' sum) only when every variance about
    it is closed (`worked`): the difference stays in every later balance as one carried
    `continuity.WORKED` movement, summed as worked as the batch's was."""
    sums = lines.group_by("processor", "payout_id").agg(
        net=pl.col("net_minor").sum(),
        currencies=pl.col("net_currency").n_unique(),
        net_currency=pl.col("net_currency").first(),
    )
    last = _keys(exp, lines).group_by("processor", "payout_id").agg(last=pl.col("day").max())
    return (
        sums.join(last, on=["processor", "payout_id"])
        .join(
            pairs.filter(pl.col("kind") == _PAYOUT).select(
                "processor",
                "booked",
                "residual",
                payout_id="reference",
                amount="amount_minor",
                currency="currency",
                paid="day",
            ),
            on=["processor", "payout_id"],
        )
        .filter(
            (pl.col("currencies") == 1)
            # a bank that booked another sum than the lines' is a break: closed, it is worked
            & ((pl.col("net") == pl.col("amount")) | pl.col("payout_id").is_in(worked.implode()))
            & (pl.col("net_currency") == pl.col("currency"))
            & (pl.max_horizontal("last", "paid", "booked") <= cutoff)
            & ~pl.col("payout_id").is_in(excluded.implode())
            & ((pl.col("paid") == pl.col("booked")) | ~pl.col("payout_id").is_in(with_breaks.implode()))
            & (
                (pl.col("residual") == 0)
                | ((pl.col("paid") == pl.col("booked")) & pl.col("payout_id").is_in(worked.implode()))
            )
        )
        .select("processor", "payout_id")
    )


def _clean(
    exp: pl.DataFrame,
    lines: pl.DataFrame,
    variances: pl.DataFrame,
    closed: pl.DataFrame,
    pending: pl.DataFrame,
    whole: pl.DataFrame,
    cutoff: date,
    split: pl.DataFrame,
    busy: pl.Series,
) -> pl.DataFrame:
    """(processor, payout_id, id) of the expected settlements and lines that pair and agree,
    both on or before `cutoff`, in a batch that is not cut out whole. Not of a batch whose
    payout a variance or pending item is about (its evidence lists every line), nor of one
    under two processors, nor of one whose lines are in several currencies (the summary
    line has one); not a line `split` (`_tangled`), nor one another line may repeat (a
    duplicate's evidence names the line it repeats)."""
    named = pl.concat(
        [
            variances.select("processor", "reference"),
            closed.select("processor", "reference"),
            pending.select("processor", "reference"),
        ]
    )
    # a part of what makes two lines "the same" (settlements.FINGERPRINT): lines alike in
    # these may be a duplicate and its original
    alike = ["processor", "payment_id", "record_type", "net_minor", "net_currency", "payout_id"]
    twins = pl.concat([lines.filter(pl.len().over(alike) > 1).select("processor", id="line_id"), split])
    mixed = lines.group_by("payout_id").agg(n=pl.col("net_currency").n_unique()).filter(pl.col("n") > 1)["payout_id"]
    paid = lines.filter(pl.col("record_type").is_in(PAYMENT_KINDS) & (pl.col("value_date") <= cutoff)).select(
        "processor", "payout_id", id="line_id"
    )
    due = exp.filter(pl.col("available_on") <= cutoff).select("processor", "payout_id", id="settlement_id")
    return (
        paid.join(due, on=["processor", "payout_id", "id"])
        .join(whole, on=["processor", "payout_id"], how="anti")
        .join(named.rename({"reference": "id"}), on=["processor", "id"], how="anti")
        .join(twins, on=["processor", "id"], how="anti")
        .filter(~pl.col("payout_id").is_in(pl.concat([busy, mixed]).implode()))
    )


def summary_lines(summary: pl.DataFrame) -> pl.DataFrame:
    """Settlement lines standing in for the clean pairs cut out of each batch
    (SUMMARY_SCHEMA): one line of a batch kind with their net, so the batch's payout still
    sums as its report does."""
    ref = joined_key("retired", "processor", "payout_id")
    zero = pl.lit(0, pl.Int64)
    return summary.select(
        processor="processor",
        line_id=ref,
        payment_id=pl.lit(None, pl.String),
        payout_id="payout_id",
        record_type=pl.lit(SUMMARY_KIND),
        merchant_id=pl.lit(None, pl.String),
        gross_minor=zero,
        gross_currency="currency",
        fee_minor=zero,
        fee_currency="currency",
        net_minor="net_minor",
        net_currency="currency",
        fx_rate=pl.lit(None, pl.String),
        created_at=pl.col("value_date").cast(pl.Datetime("us", "UTC")),
        value_date="value_date",
        source_file=ref,
        line_no=pl.lit(0, pl.Int64),
        source_type=pl.lit(None, pl.String),
        raw=pl.lit(None, pl.String),
    ).cast(SETTLEMENT_SCHEMA)


def carry_frames(carry: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(movements, bank lines) standing in for the cut-out pairs: one pair per account,
    currency, day expected and day booked, with their sum, under one reference; and what
    the ledger moved beyond the bank in batches whose breaks were all closed, one
    `continuity.WORKED` movement per account, currency and day, under one reference per
    account and currency (so a balance finds one open item of it on its day)."""
    ref = joined_key("retired", "account", "currency", pl.col("day").cast(pl.String), pl.col("booked").cast(pl.String))
    pairs = carry.filter(pl.col("amount_minor") != 0)  # a row of worked only (an entry's day) has none
    moves = _carried(pairs, "merchant_payout", ref, "amount_minor")
    by_day = carry.filter(pl.col("worked") != 0).group_by("account", "currency", "day").agg(pl.col("worked").sum())
    worked = _carried(
        by_day.sort("account", "currency", "day"),
        continuity.WORKED,
        joined_key(continuity.WORKED, "account", "currency"),
        "worked",
    )
    bank = pairs.select(
        format=pl.lit("retired"),
        account="account",
        bank_ref=ref,
        reference=ref,
        text=pl.lit(None, pl.String),
        amount_minor="amount_minor",
        amount_currency="currency",
        booking_date="booked",
        value_date="booked",
        source_file=ref,
        line_no=pl.lit(0, pl.Int64),
        statement_id=pl.lit("", pl.String),
        sequence=pl.lit(None, pl.String),
    ).cast(BANK_SCHEMA)
    return pl.concat([moves, worked]), bank


def _carried(frame: pl.DataFrame, kind: str, ref: pl.Expr, amount: str) -> pl.DataFrame:
    """Ledger movements (`expectations.BANK_WITH_MERCHANT`) of `kind` carried in `frame`
    (account, currency, day and the `amount` column), each under `ref`."""
    return frame.select(
        event_id=ref,
        kind=pl.lit(kind),
        processor=pl.lit(None, pl.String),
        reference=ref,
        amount_minor=amount,
        amount_currency="currency",
        expected_on="day",
        merchant_id=pl.lit(None, pl.String),
    ).cast(expectations.BANK_WITH_MERCHANT)


def unit_keys(
    batches: pl.DataFrame,
    exp: pl.DataFrame,
    lines: pl.DataFrame,
    frozen: pl.DataFrame,
    pairs: pl.DataFrame,
    bank: pl.DataFrame,
    groups: pl.DataFrame,
) -> pl.DataFrame:
    """INDEX_SCHEMA rows: every key a late arrival may touch a cut-out unit by. `exp` and
    `lines` are the batches' rows (with `unit`), `frozen` their variances (with `unit`),
    `bank` the pairs' bank lines (with `unit`), `groups` (unit, group) the batches cut out
    together: a key of one names every unit of its group."""
    parts = [
        exp.select(key=joined_key("k", "processor", "settlement_id"), unit="unit"),
        lines.select(key=joined_key("k", "processor", "line_id"), unit="unit"),
        batches.select(key=joined_key("p", "payout_id"), unit="unit"),
        frozen.select(key=joined_key("v", "variance_id"), unit="unit"),
        pairs.select(key=joined_key("p", "reference"), unit="unit"),
        bank.select(key=statement_key(), unit="unit"),
    ]
    rows = pl.concat(parts).drop_nulls("key").with_columns(key=hashed(pl.col("key")))
    mates = groups.join(groups.rename({"unit": "mate"}), on="group").select("unit", "mate")
    rows = pl.concat([rows, rows.join(mates, on="unit").select("key", unit="mate")])
    return rows.unique().cast(INDEX_SCHEMA)
