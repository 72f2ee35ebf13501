"""Letting go of bank statements: a stream's statements, and the balance variances that
name its open items, stop being judged again once nothing can change them.

Every statement's closing is tied to the ledger's bank cash on its day, and its
`bank_balance_mismatch` names every open item of its account on that day
(`continuity.mismatches`), so a stream that judges every statement it ever held does
work that grows with history times open items. A statement whose variances no input to
come can change is cut out, with them kept as published ("frozen"), along a prefix of
each account's chain (`plan`):

* its day is the horizon behind the watermark, its identity came in one version only,
  and no item open on its day is awaited by a pending item (one that comes due turns
  into a variance and changes what explains the difference: time alone would change it);
* the last statement cut out of an account stays in the statements the stream hands to
  each reconciliation, as the anchor its chain goes on from: the next statement's
  opening is compared to its closing, and the next difference to its difference (so it
  must be a statement whose balance is tied: else the prefix stops one before). Its own
  variances, judged without its predecessor, are not taken from that pass but from
  when it was cut out (`ghost_ids`);
* the jump of each `balance_break` or `statement_gap` cut out stays an open item of the
  later statements: it is handed in as a `continuity.CARRIED` row.

What would change a cut-out statement's variances brings it back, with every later one
of its account (`reach`): an input dated within `margin` days of it or before (a
ledger movement, or an adjusting entry's bank leg, moves the bank cash on every later
day, a bank line or a statement the open items and the chain), or one touching a
reference open on its day (a payout's line, a bank line naming it, a ledger
expectation), or an adjustment naming one of its variances or an open variance its
balance mismatch names (their ids are keys, as the other cut-out units' are: `named_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from clearline.recon.lines import STATEMENT_SCHEMA
from clearline.recon.matching import continuity, retire
from clearline.recon.matching.rules import Tolerances
from clearline.recon.matching.variance import ids as variance_ids
from clearline.recon.matching.variance import variance_id

# one unit per account and day cut out: what comes back together
UNIT_SCHEMA = {"unit": pl.UInt64(), "account": pl.String(), "day": pl.Date()}
HELD_SCHEMA = STATEMENT_SCHEMA | {"unit": pl.UInt64()}
# Statements are cut out a week's worth at a time: the plan reads every open item, so
# running it every advance for one day's statements would cost what it saves.
EVERY_DAYS = 7
_DATES = {
    "expected_settlements": (pl.col("available_on"),),
    "expected_movements": (pl.col("expected_on"),),
    "settlement_lines": (pl.col("value_date"),),
    "bank_lines": (pl.col("booking_date"), pl.col("value_date")),
    "statements": (pl.col("opening_date"), pl.col("closing_date")),
    # an adjusting entry that moves the bank cash moves it from its day on (adjusted.bank_movements)
    "adjustments": (pl.when(pl.col("bank").list.len() > 0).then(pl.col("approved_at").dt.date()),),
}


@dataclass(frozen=True)
class Cut:
    """What `plan` cuts out: the statements' rows (`HELD_SCHEMA`), their own variances'
    ids (variance_id, unit), their jumps as `continuity.CARRIED` rows (`HELD_SCHEMA`), the index rows
    that bring them back (`retire.INDEX_SCHEMA`) and their units (`UNIT_SCHEMA`)."""

    statements: pl.DataFrame
    variance_ids: pl.DataFrame
    jumps: pl.DataFrame
    keys: pl.DataFrame
    units: pl.DataFrame


def margin(tol: Tolerances) -> int:
    """Days before a cut-out statement within which an input may still change it: the
    widest window or deadline a rule reads (a bank line booked that many days after a
    payout's expected day may still be matched to it by amount)."""
    return max(
        tol.date_window_days,
        tol.bank_date_window_days,
        tol.processor_line_deadline_days,
        tol.ledger_record_deadline_days,
        tol.bank_line_deadline_days,
        tol.unexplained_deadline_days,
        tol.unknown_payout_arrival_days,
    )


def _unit() -> pl.Expr:
    return retire.hashed(retire.joined_key("S", "account", pl.col("day").cast(pl.String)))


def anchors(held: pl.DataFrame) -> pl.DataFrame:
    """The anchor of each account: the rows of its last day cut out (`HELD_SCHEMA` in)."""
    day = pl.coalesce("closing_date", "opening_date")
    return held.filter(day == day.max().over("account")).select(list(STATEMENT_SCHEMA))


def ghost_ids(anchor: pl.DataFrame) -> list[str]:
    """Ids of the `bank_balance_mismatch` a pass may find at an anchor judged without its
    predecessor: the anchor's true variances are the frozen ones."""
    days = anchor.select("account", day=pl.coalesce("closing_date", "opening_date").cast(pl.String)).unique()
    return [variance_id("bank_balance_mismatch", f"{a}|{d}") for a, d in days.iter_rows()]


def plan(
    statements: pl.DataFrame,
    anchor: pl.DataFrame,
    carried: pl.DataFrame,
    books: pl.DataFrame,
    movements: pl.DataFrame,
    bank_lines: pl.DataFrame,
    pending: pl.DataFrame,
    expected: pl.DataFrame,
    lines: pl.DataFrame,
    cutoff: date,
) -> Cut | None:
    """The statements (held, `STATEMENT_SCHEMA`) to cut out at `cutoff`, given the
    anchors, the carried jumps, the books, the movements and bank lines the pass saw, its
    pending items, and the expected settlements and lines (what a pending item's payout
    is). None: nothing to cut."""
    real = statements.filter(pl.col("format") != continuity.CARRIED)
    if real.is_empty() or books.is_empty():
        return None
    chained = continuity.chain(pl.concat([anchor, real]))
    jumps = continuity.breaks(chained)
    all_jumps = pl.concat([jumps.select(continuity.JUMP_COLUMNS), continuity.jumps_of_carried(carried)])
    anchored = anchor.select("account", day=pl.coalesce("closing_date", "opening_date")).unique()
    days = (
        real.with_columns(day=pl.coalesce("closing_date", "opening_date"))
        .filter(pl.col("day").is_not_null())
        .join(anchored, on=["account", "day"], how="anti")
        .with_columns(versions=pl.col("source_file").n_unique().over("account", "statement_id", "sequence", "day"))
        .group_by("account", "day")
        .agg(pl.col("versions").max())
    )
    # what a pending item is about, and the payout it is in: when it comes due, the
    # variance it turns into explains that reference on every day it is open
    awaited = pl.concat(
        [
            pending.select("reference"),
            expected.join(
                pending.select("processor", settlement_id="reference"), on=["processor", "settlement_id"]
            ).select(reference="payout_id"),
            lines.join(pending.select("processor", line_id="reference"), on=["processor", "line_id"]).select(
                reference="payout_id"
            ),
        ]
    ).drop_nulls()["reference"]
    items = continuity.open_items(books, movements, bank_lines, all_jumps)
    open_on = (
        days.select("account", "day")
        .join(items, on="account")
        .filter((pl.col("start") <= pl.col("day")) & (pl.col("end").is_null() | (pl.col("end") > pl.col("day"))))
        .select("account", "day", "ref")
    )
    busy = open_on.filter(pl.col("ref").is_in(awaited.implode())).select("account", "day").unique()
    last = chained.filter(pl.col("position") == pl.col("position").max().over("account", "day"))
    tied = last.join(
        books.select("account", closing_currency="currency", opened_on="opened_on"), on=["account", "closing_currency"]
    ).filter(pl.col("closing_minor").is_not_null() & (pl.col("day") >= pl.col("opened_on")))
    kept = books["account"]
    ok = (
        days.join(busy.with_columns(busy=pl.lit(True)), on=["account", "day"], how="left")
        .join(tied.select("account", "day", anchorable=pl.lit(True)), on=["account", "day"], how="left")
        .with_columns(
            ok=(pl.col("day") <= cutoff) & (pl.col("versions") == 1) & pl.col("busy").is_null(),
            anchorable=pl.col("anchorable").fill_null(False) | ~pl.col("account").is_in(kept.implode()),
        )
        .sort("account", "day")
        # a prefix of each account's days, ending on one that can be the next anchor
        .with_columns(prefix=pl.col("ok").cum_min().over("account"))
        .filter("prefix")
        .with_columns(end=pl.col("day").filter("anchorable").max().over("account"))
        .filter(pl.col("day") <= pl.col("end"))
        .select("account", "day")
    )
    if ok.is_empty():
        return None
    units = ok.with_columns(unit=_unit()).select(list(UNIT_SCHEMA)).cast(UNIT_SCHEMA)
    rows = (
        real.with_columns(day=pl.coalesce("closing_date", "opening_date"))
        .join(units, on=["account", "day"])
        .select(list(HELD_SCHEMA))
    )
    own = jumps.join(units, left_on=["account", "since"], right_on=["account", "day"])
    ids = pl.DataFrame(
        {
            "variance_id": variance_ids(own).to_list()
            + [variance_id("bank_balance_mismatch", f"{a}|{d}") for a, d in units.select("account", "day").iter_rows()],
            "unit": pl.concat([own["unit"], units["unit"]]),
        },
        schema={"variance_id": pl.String, "unit": pl.UInt64},
    )
    # a reference open on a cut-out day touches the earliest such day of its account
    refs = (
        open_on.join(units, on=["account", "day"])
        .sort("day")
        .unique(["account", "ref"], keep="first")
        .select(key=retire.joined_key("p", "ref"), unit="unit")
    )
    keys = pl.concat(
        [
            rows.select(key=retire.statement_key(), unit="unit"),
            refs,
            ids.select(key=retire.joined_key("v", "variance_id"), unit="unit"),
        ]
    )
    keys = keys.drop_nulls("key").with_columns(key=retire.hashed(pl.col("key"))).unique().cast(retire.INDEX_SCHEMA)
    carry = continuity.carried_jumps(own).with_columns(unit=own["unit"]).cast(HELD_SCHEMA)
    return Cut(rows.cast(HELD_SCHEMA), ids, carry, keys, units)


def named_keys(frozen: pl.DataFrame) -> pl.DataFrame:
    """`retire.INDEX_SCHEMA` rows of the open variances each cut-out balance mismatch
    names as explaining it (`frozen`: variances with their `unit`): an entry that closes
    one moves its share into the mismatch's closed figure, so the entry (its 'v|id' key)
    brings the statement back."""
    named = pl.col("named")
    return (
        frozen.filter(pl.col("category") == "bank_balance_mismatch")
        .select("unit", named="evidence")
        .explode("named")
        .filter(named.str.contains(r"^var_[0-9a-f]{20}$"))
        .select(key=retire.hashed(retire.joined_key("v", "named")), unit="unit")
        .unique()
        .cast(retire.INDEX_SCHEMA)
    )


def reach(frames: dict[str, pl.DataFrame], margin_days: int) -> date | None:
    """The earliest day an input among `frames` (named as `reconcile.Inputs` fields) may
    change a cut-out statement of: its earliest date, less `margin_days`."""
    days = [
        frame.select(dated.min()).item()
        for name, frame in frames.items()
        if frame is not None and frame.height
        for dated in _DATES.get(name, ())
        if set(dated.meta.root_names()) <= set(frame.columns)
    ]
    days = [d for d in days if d is not None]
    return min(days) - timedelta(days=margin_days) if days else None


def touch_keys(frames: dict[str, pl.DataFrame], expected: pl.DataFrame, lines: pl.DataFrame) -> pl.Series:
    """Hashed 'p|reference' keys of what arriving `frames` are about: the references and
    payouts they carry, a bank line's own reference when it names none, and the payouts
    the held `expected` settlements and `lines` put an arriving line or expectation in
    (a line paid in another batch than the ledger's moves both)."""
    refs = [pl.Series("ref", [], pl.String)]
    for name, frame in frames.items():
        if frame is None or frame.is_empty():
            continue
        if name in ("expected_settlements", "settlement_lines"):
            refs.append(frame["payout_id"])
            other, mine, theirs = (
                (lines, "settlement_id", "line_id")
                if name == "expected_settlements"
                else (expected, "line_id", "settlement_id")
            )
            refs.append(
                frame.select("processor", id=mine).join(
                    other.select("processor", "payout_id", id=theirs), on=["processor", "id"]
                )["payout_id"]
            )
        elif name == "expected_movements":
            refs.append(frame["reference"])
        elif name == "bank_lines":
            refs.append(frame.select(pl.coalesce("reference", "bank_ref")).to_series())
    ref = pl.concat([r.cast(pl.String).rename("ref") for r in refs]).drop_nulls().unique()
    return ref.to_frame().select(key=retire.hashed(retire.joined_key("p", "ref")))["key"]
