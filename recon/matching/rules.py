"""The tolerances and deadlines every matching rule reads, and the small rules they share.

Tolerances decide what still counts as the same (an amount a minor unit off, a date a day
off); deadlines decide when "not arrived yet" becomes a break. Both come from the
`matching:` section of configs/recon.yaml, handed in as a dict (recon/ reads no files).
Deadlines are in event time: a record is overdue when the watermark's day reaches its
expected day plus the deadline, so a replay decides exactly as the live run did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import polars as pl


class MatchingConfigError(ValueError):
    """The `matching:` section of configs/recon.yaml is missing a setting or has a bad one."""


_KEYS = {
    "amount_tolerance_minor",
    "date_window_days",
    "bank_date_window_days",
    "deadline_days",
    "unknown_payout_arrival_days",
}
_DEADLINES = {"processor_line", "ledger_record", "bank_line", "unexplained_bank_line"}


@dataclass(frozen=True, slots=True)
class Tolerances:
    amount_minor: int
    date_window_days: int
    bank_date_window_days: int
    processor_line_deadline_days: int
    ledger_record_deadline_days: int
    bank_line_deadline_days: int
    unexplained_deadline_days: int
    unknown_payout_arrival_days: int

    @classmethod
    def from_config(cls, matching: dict) -> Tolerances:
        """From the `matching:` dict; names the setting that is missing or not a count."""
        deadlines = matching.get("deadline_days") or {}
        values = {
            "amount_minor": matching.get("amount_tolerance_minor"),
            "date_window_days": matching.get("date_window_days"),
            "bank_date_window_days": matching.get("bank_date_window_days"),
            "processor_line_deadline_days": deadlines.get("processor_line"),
            "ledger_record_deadline_days": deadlines.get("ledger_record"),
            "bank_line_deadline_days": deadlines.get("bank_line"),
            "unexplained_deadline_days": deadlines.get("unexplained_bank_line"),
            "unknown_payout_arrival_days": matching.get("unknown_payout_arrival_days"),
        }
        unknown = sorted(set(matching) - _KEYS) + sorted(f"deadline_days.{k}" for k in set(deadlines) - _DEADLINES)
        if unknown:
            raise MatchingConfigError(f"configs/recon.yaml matching: unknown setting(s) {', '.join(unknown)}")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MatchingConfigError(
                    f"configs/recon.yaml matching: {name} must be a whole number >= 0, got {value!r}"
                )
        return cls(**values)


def as_of_day(watermark: datetime | date) -> date:
    """The UTC day of the watermark: deadlines count whole days."""
    if isinstance(watermark, datetime):
        return watermark.astimezone(timezone.utc).date()
    return watermark


def overdue(since: str, days: int, as_of: date) -> pl.Expr:
    """True where the day in column `since` plus `days` has been reached by `as_of`."""
    return pl.col(since).dt.offset_by(f"{days}d") <= pl.lit(as_of)


def evidence(file_col: str = "source_file", line_col: str = "line_no") -> pl.Expr:
    """'file:line' of a reported line, the way a person opens it."""
    return pl.concat_str(pl.col(file_col), pl.lit(":"), pl.col(line_col).cast(pl.String))


def first_per(
    frame: pl.LazyFrame, keys: list[str], order: list[str], hashes: pl.Series | None = None
) -> tuple[pl.LazyFrame, pl.DataFrame]:
    """(the first row of each key, every later row): first by `order`, whatever order the
    frame came in (ties by the other fields). The firsts are a lazy filter of `frame`, so
    the query that reads them (a join at ten million rows) never holds a copy. Only the
    keys are read to find the repeats, from sorted key hashes, and only the rows whose hash
    repeats are read whole and sorted, so the common case of unique keys costs one hash
    and one integer sort. `hashes`, when the caller already has them, are
    a hash of `keys` (equal keys hash alike, as `pl.struct(keys).hash()`) of `frame` in its row order."""
    firsts, later, _ = first_rows(frame, keys, order, hashes)
    return firsts, later


def first_rows(
    frame: pl.LazyFrame, keys: list[str], order: list[str], hashes: pl.Series | None = None
) -> tuple[pl.LazyFrame, pl.DataFrame, pl.DataFrame]:
    """`first_per` and the first row of each key that repeats (whole, as the later rows
    are): what a caller compares the repeats against, without reading `frame` again."""
    if hashes is None:
        hashes = frame.select(pl.struct(keys).hash()).collect(engine="streaming").to_series()
    maybe = repeated(hashes)
    if maybe.is_empty():
        empty = frame.clear().collect()
        return frame, empty, empty
    numbered = frame.with_row_index("_row")
    # joins, not `is_in`: a file loaded twice repeats millions of keys; streamed, so only
    # the rows picked are ever held
    groups = numbered.join(maybe.to_frame("_row").lazy(), on="_row", how="semi").collect(engine="streaming")
    later, heads = ranked(groups, keys, order)
    firsts = numbered.join(later.lazy().select("_row"), on="_row", how="anti").drop("_row")
    return firsts, later.drop("_row"), heads.drop("_row")


def repeated(hashes: pl.Series) -> pl.Series:
    """The row numbers (UInt32) of the rows whose key hash another row shares: every row of
    each key that repeats (and of the rare keys whose hashes collide)."""
    ordered = hashes.sort()
    # equal keys hash alike; the few collisions of unequal keys sort apart in `ranked`
    clashing = ordered.filter(ordered == ordered.shift(1))
    if clashing.is_empty():
        return pl.Series("_row", [], pl.UInt32)
    frame = hashes.to_frame("_hash").with_row_index("_row")
    return frame.join(clashing.to_frame("_hash"), on="_hash", how="semi")["_row"]


def ranked(groups: pl.DataFrame, keys: list[str], order: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the later rows, the first row of each key that repeats) among `groups`, rows read
    whole: first by `order`, ties by the record's other fields (not the caller's "_"
    bookkeeping columns such as row numbers), so even two lines at one file position rank
    alike in any input order."""
    rest = [c for c in groups.columns if c not in {*keys, *order} and not c.startswith("_")]
    groups = groups.sort(*keys, *order, *rest, nulls_last=True)
    rank = pl.int_range(pl.len()).over(keys)
    return groups.filter(rank > 0), groups.filter((rank == 0) & (pl.len().over(keys) > 1))


def first_difference(rules: list[tuple[pl.Expr, ...]]) -> list[pl.Expr]:
    """Rules are (condition, value, value, ...) in priority order; per value position, the
    value of the first rule whose condition holds, null where none does. One broken record
    is then one variance, named by its most telling difference."""
    picked = []
    for i in range(1, len(rules[0])):
        chain = pl.when(rules[0][0]).then(rules[0][i])
        for rule in rules[1:]:
            chain = chain.when(rule[0]).then(rule[i])
        picked.append(chain.otherwise(None))
    return picked
