"""Automatic fixes, the first tier of escalation: rules from `configs/recon.yaml`
(`autofix:`) that clear a known, harmless pattern with a recorded reason, so no person
spends time on it. The rules decide; the caller records (the variance sink and the batch
run move each fixed variance to resolved with the reason, code "autofix", actor "autofix").

Two rules, each off unless configured:

* `timing_cleared`: a break that was only "not arrived yet" (a missing record, a late
  payout) which the matcher stopped finding because the record arrived, inside the
  tolerance: its category's `within_days` after the day it is counted from, or, for a
  variance a person watched as a timing difference, by its `watch_until` day. A record that
  arrived later than that is still withdrawn by the matcher, but without this reason: a
  person should ask why it took so long.
* `bank_fee_netted`: a processor payout the bank credited short by no more than the
  configured fee for its currency (the receiving bank kept its fee). Only the bank-level
  amount difference of a payout is cleared, never a line's gross or net, never a payout the
  bank credited more than expected, and never a currency the rule does not name.

`autofix` is a pure function of the variances (the store's rows, plus `cleared_on` — the
day the matcher stopped finding a variance, null while it still finds it) and the rules;
`AutofixRules.from_config` reads and checks the section, naming the key that is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from clearline.currency import EXPONENT, decimal_to_minor, is_currency
from clearline.recon.matching.variance import CATEGORIES, money_text

CODE = "autofix"  # the resolution code and the actor an automatic fix is recorded under
SCHEMA: dict[str, pl.DataType] = {"variance_id": pl.String(), "rule": pl.String(), "reason": pl.String()}
_WHERE = "configs/recon.yaml: autofix"


class AutofixConfigError(ValueError):
    """The autofix section cannot be applied; the message names the key and what is wrong."""


@dataclass(frozen=True, slots=True)
class AutofixRules:
    """`timing_days`: category -> days after `since` within which a withdrawn break of that
    category cleared on time (empty: the timing rule only honours people's `watch_until`,
    and only when `timing_watched` is on). `bank_fee_max_minor`: currency -> the largest bank
    fee, in minor units, netted from a payout (empty: the fee rule is off)."""

    timing_days: Mapping[str, int] = field(default_factory=dict)
    timing_watched: bool = False
    bank_fee_max_minor: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> AutofixRules:
        """From the loaded `configs/recon.yaml` (the whole file); no `autofix:` section
        means no automatic fix."""
        section = (cfg or {}).get("autofix")
        if section is None:
            return cls()
        _mapping(section, _WHERE)
        unknown = sorted(set(section) - {"timing_cleared", "bank_fee_netted"})
        if unknown:
            raise AutofixConfigError(f"{_WHERE}: unknown rule {unknown[0]!r} (rules: timing_cleared, bank_fee_netted)")
        timing = section.get("timing_cleared") or {}
        _mapping(timing, f"{_WHERE}.timing_cleared")
        days = timing.get("within_days") or {}
        _mapping(days, f"{_WHERE}.timing_cleared.within_days")
        for category, n in days.items():
            where = f"{_WHERE}.timing_cleared.within_days.{category}"
            if category not in CATEGORIES:
                raise AutofixConfigError(f"{where}: {category!r} is not a variance category ({', '.join(CATEGORIES)})")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise AutofixConfigError(f"{where}: must be a whole number of days >= 0, got {n!r}")
        watched = timing.get("watched", False)
        if not isinstance(watched, bool):
            raise AutofixConfigError(f"{_WHERE}.timing_cleared.watched: must be true or false, got {watched!r}")
        fee = section.get("bank_fee_netted") or {}
        _mapping(fee, f"{_WHERE}.bank_fee_netted")
        limits = fee.get("max_fee") or {}
        _mapping(limits, f"{_WHERE}.bank_fee_netted.max_fee")
        return cls(
            dict(days),
            watched,
            {ccy: _fee_minor(ccy, text, f"{_WHERE}.bank_fee_netted.max_fee.{ccy}") for ccy, text in limits.items()},
        )


def _mapping(value: object, where: str) -> None:
    if not isinstance(value, Mapping):
        raise AutofixConfigError(f"{where}: must be a mapping of keys to values, got {value!r}")


def _fee_minor(currency: object, amount: object, where: str) -> int:
    """A fee limit as exact minor units: a decimal text ('2.50') or a whole number of major
    units; a float is refused (YAML's 2.50 is a binary fraction, money is never one)."""
    if not is_currency(currency):
        raise AutofixConfigError(f"{where}: {currency!r} is not an ISO 4217 currency code")
    if isinstance(amount, bool) or not isinstance(amount, (int, str)):
        raise AutofixConfigError(
            f"{where}: write the amount as quoted decimal text in {currency} (e.g. '2.50'), got {amount!r}"
        )
    try:
        minor = amount * 10 ** EXPONENT[currency] if isinstance(amount, int) else decimal_to_minor(amount, currency)
    except ValueError as exc:
        raise AutofixConfigError(f"{where}: {exc}") from None
    if minor <= 0:
        raise AutofixConfigError(f"{where}: must be more than zero, got {amount!r}")
    return minor


def _column(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    """A column the caller may leave out (an older store has no `code`): nulls then."""
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype)


def timing_cleared(variances: pl.DataFrame, rules: AutofixRules) -> pl.DataFrame:
    """Withdrawn breaks that cleared inside their tolerance (see the module doc)."""
    cleared = _column(variances, "cleared_on", pl.Date())
    watched_until = _column(variances, "watch_until", pl.Date())
    category_days = pl.col("category").replace_strict(rules.timing_days, default=None, return_dtype=pl.Int64)
    deadline = pl.col("since").dt.offset_by(pl.format("{}d", category_days))
    if rules.timing_watched:
        deadline = pl.coalesce(watched_until, deadline)
    on_time = cleared.is_not_null() & deadline.is_not_null() & (cleared <= deadline)
    return variances.filter(on_time).select(
        "variance_id",
        rule=pl.lit("timing_cleared"),
        reason=pl.format(
            "autofix:timing_cleared: the missing record arrived on {} (the break counted from {}, cleared by {} at "
            "the latest)",
            cleared.cast(pl.String),
            pl.col("since").cast(pl.String),
            deadline.cast(pl.String),
        ),
    )


def _minor_of(text: str, currency: str) -> int | None:
    """The minor units of a variance's money text ('1234.56 EUR', see `money_text`); None
    for text that is not one (the rule then clears nothing)."""
    number, _, code = text.rpartition(" ")
    if code != currency or not is_currency(currency):
        return None
    try:
        return decimal_to_minor(number, currency)
    except ValueError:
        return None


def bank_fee_netted(variances: pl.DataFrame, rules: AutofixRules) -> pl.DataFrame:
    """Payouts the bank credited short by at most the currency's fee limit."""
    limit = pl.col("currency").replace_strict(rules.bank_fee_max_minor, default=None, return_dtype=pl.Int64)
    # the bank-level difference of a processor payout (matching/bank.py): field "amount",
    # its reference the payout; a line's gross or net difference is not a bank fee
    candidates = variances.filter(
        (pl.col("category") == "amount_mismatch")
        & (pl.col("field") == "amount")
        & pl.col("payout_id").is_not_null()
        & (pl.col("payout_id") == pl.col("reference"))
        & (pl.col("amount_minor") > 0)
        & (pl.col("amount_minor") <= limit)
    )
    short = [
        (paid := _minor_of(r["expected"], r["currency"])) is not None
        and (got := _minor_of(r["actual"], r["currency"])) is not None
        and paid - got == r["amount_minor"]
        for r in candidates.select("expected", "actual", "currency", "amount_minor").iter_rows(named=True)
    ]
    fixed = candidates.filter(pl.Series(short, dtype=pl.Boolean))
    return fixed.select(
        "variance_id",
        rule=pl.lit("bank_fee_netted"),
        reason=pl.format(
            "autofix:bank_fee_netted: bank fee {} netted from payout {} ({} paid, {} credited; fees up to {} clear)",
            money_text(pl.col("amount_minor"), pl.col("currency")),
            "payout_id",
            "expected",
            "actual",
            money_text(limit, pl.col("currency")),
        ),
    )


def autofix(variances: pl.DataFrame, rules: AutofixRules) -> pl.DataFrame:
    """(variance_id, rule, reason) of every variance a rule clears, once each (the first
    rule that applies, in the order timing_cleared, bank_fee_netted). `variances`: the store's
    rows (`VARIANCE_SCHEMA` with `status`, and `code`, `watch_until` where the store has
    them) and `cleared_on`, the day the matcher stopped finding the variance (null, or left
    out, while it still finds it). A variance already resolved is left alone."""
    status = _column(variances, "status", pl.String())
    live = variances.filter(status.is_null() | (status != "resolved"))
    found = pl.concat([timing_cleared(live, rules), bank_fee_netted(live, rules)]).cast(SCHEMA)
    return found.unique("variance_id", keep="first", maintain_order=True)


def mark_cleared(variances: pl.DataFrame, gone: list[str], on: date) -> pl.DataFrame:
    """The variances with `cleared_on` set to `on` for the ids in `gone` (what the matcher
    withdrew at a watermark on that day), null for the rest: the input `autofix` wants."""
    return variances.with_columns(
        cleared_on=pl.when(pl.col("variance_id").is_in(gone)).then(pl.lit(on)).otherwise(pl.lit(None, pl.Date()))
    )
