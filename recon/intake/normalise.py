"""Text from files to the typed values of `clearline.recon.lines`: amounts, currencies, dates.

Amounts: decimal text to integer minor units with `clearline.currency.decimal_to_minor`,
exponent-aware (JPY 0 decimals, KWD 3), never through a float. A value that does not
convert becomes None and a problem naming the column, the text and why; an amount in a
currency that is not ISO 4217 becomes None without a problem of its own, because the
suite's currency rule already names that row. Sign conventions are each parser's: they
are listed in docs/intake.md and checked by the suites.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clearline.currency import EXPONENT, decimal_to_minor
from clearline.recon.intake.model import Problems, fits_i64


def optional(text: str | None) -> str | None:
    """A reference as the file gives it, None when the field is empty."""
    text = (text or "").strip()
    return text or None


def currency_code(text: str) -> str:
    """ISO 4217 codes are upper case; Stripe writes them lower case."""
    return text.strip().upper()


def minor(
    text: str, currency: str, what: str, line_no: int, problems: Problems, *, empty: int | None = None
) -> int | None:
    """`text` in minor units of `currency`; an empty field is `empty` (None: a problem)."""
    text = text.strip()
    if not text:
        if empty is None:
            problems.note(line_no, f"{what}: the amount is missing")
        return empty
    if currency not in EXPONENT:
        return None
    try:
        value = decimal_to_minor(text, currency)
    except ValueError as exc:
        problems.note(line_no, f"{what}: {exc}")
        return None
    if not fits_i64(value):
        problems.note(line_no, f"{what}: {text!r} is beyond the range of a 64-bit count of minor units")
        return None
    return value


def credit_minus_debit(
    credit: str, debit: str, currency: str, what: str, line_no: int, problems: Problems
) -> int | None:
    """One signed amount from an unsigned credit/debit pair, of which at most one is filled."""
    if credit.strip() and debit.strip():
        problems.note(line_no, f"{what}: both debit {debit!r} and credit {credit!r} are filled")
        return None
    c = minor(credit, currency, f"{what} credit", line_no, problems, empty=0)
    d = minor(debit, currency, f"{what} debit", line_no, problems, empty=0)
    if (c is not None and c < 0) or (d is not None and d < 0):
        problems.note(line_no, f"{what}: debit and credit columns are unsigned, found {debit or credit!r}")
        return None
    return None if c is None or d is None else c - d


def moment(text: str, fmt: str, what: str, line_no: int, problems: Problems, zone: str = "UTC") -> datetime | None:
    """A timestamp in `zone` (a tz database name), as UTC."""
    try:
        tz = timezone.utc if zone == "UTC" else ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.note(line_no, f"{what}: unknown time zone {zone!r}")
        return None
    try:
        return datetime.strptime(text.strip(), fmt).replace(tzinfo=tz).astimezone(timezone.utc)
    except ValueError:
        problems.note(line_no, f"{what}: {text!r} is not a time of the form {fmt}")
        return None


def day(text: str, fmt: str, what: str, line_no: int, problems: Problems) -> date | None:
    try:
        return datetime.strptime(text.strip(), fmt).date()
    except ValueError:
        problems.note(line_no, f"{what}: {text!r} is not a date of the form {fmt}")
        return None


def fx_rate(text: str, gross_currency: str, net_currency: str) -> str | None:
    """The rate as decimal text, None when no conversion happened (same currency)."""
    text = text.strip()
    return None if gross_currency == net_currency or not text else text
