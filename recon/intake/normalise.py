"""Text from files to the typed values of `clearline.recon.lines`: amounts, currencies, dates.

Amounts: decimal text to integer minor units with `clearline.currency.decimal_to_minor`,
exponent-aware (JPY 0 decimals, KWD 3), never through a float. A value that does not
convert becomes None and a problem naming the column, the text and why; an amount in a
currency that is not ISO 4217 becomes None without a problem of its own, because the
suite's currency rule already names that row. Sign conventions are each parser's: they
are listed in docs/intake.md and checked by the suites.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone, tzinfo
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


def fx_rate(text: str, gross_currency: str, net_currency: str) -> str | None:
    """The rate as decimal text, None when no conversion happened (same currency)."""
    text = text.strip()
    return None if gross_currency == net_currency or not text else text


# Zone abbreviations processors write in time-zone columns (Adyen's TimeZone), as the
# fixed offsets they stand for: "CET" is +01:00 and "CEST" +02:00 (an abbreviation names
# the offset in force, unlike the tz database's "CET" zone, which observes summer time).
ABBREVIATIONS = {
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "WET": 0,
    "WEST": 60,
    "BST": 60,
    "CET": 60,
    "CEST": 120,
    "MET": 60,
    "MEST": 120,
    "EET": 120,
    "EEST": 180,
    "MSK": 180,
    "IST": 330,
    "SGT": 480,
    "HKT": 480,
    "AWST": 480,
    "JST": 540,
    "KST": 540,
    "ACST": 570,
    "AEST": 600,
    "AEDT": 660,
    "NZST": 720,
    "NZDT": 780,
    "BRT": -180,
    "ART": -180,
    "AST": -240,
    "EST": -300,
    "EDT": -240,
    "CST": -360,
    "CDT": -300,
    "MST": -420,
    "MDT": -360,
    "PST": -480,
    "PDT": -420,
    "AKST": -540,
    "AKDT": -480,
    "HST": -600,
}
_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d\d))?$")


def zone(text: str) -> tzinfo | None:
    """A time zone as processors name it: a tz database name ("Europe/Amsterdam"), an
    abbreviation (`ABBREVIATIONS`), or an offset ("+01:00", "UTC+1", "GMT-05:30"); an empty
    field is UTC. None when it is none of these."""
    text = text.strip()
    if not text:
        return timezone.utc
    if text.upper() in ABBREVIATIONS:
        return timezone(timedelta(minutes=ABBREVIATIONS[text.upper()]))
    match = _OFFSET.match(text.upper())
    if match:
        sign = -1 if match.group(1) == "-" else 1
        minutes = int(match.group(2)) * 60 + int(match.group(3) or 0)
        return timezone(sign * timedelta(minutes=minutes)) if minutes < 24 * 60 else None
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_time(text: str, what: str, line_no: int, problems: Problems, tz: tzinfo | None) -> datetime | None:
    """An ISO 8601 date-time as processors write it ("2026-01-05 09:30:15", "…T09:30",
    fractions of a second, a "Z" or an offset of its own, or a bare date), in `tz` unless it
    states an offset, as UTC. `tz` None (an unknown zone) is a problem naming the column."""
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        problems.note(line_no, f"{what}: {text!r} is not a date and time (YYYY-MM-DD HH:MM:SS)")
        return None
    if moment.tzinfo is None:
        if tz is None:
            problems.note(line_no, f"{what}: its time zone is not one intake knows")
            return None
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(timezone.utc)


def local_day(text: str, what: str, line_no: int, problems: Problems) -> date | None:
    """The calendar day of an ISO 8601 date or date-time, as the file writes it (no zone
    conversion: a value date or booking date is a day in the processor's books)."""
    text = text.strip()
    try:
        return datetime.fromisoformat(text[:-1] if text.endswith("Z") else text).date()
    except ValueError:
        problems.note(line_no, f"{what}: {text!r} is not a date (YYYY-MM-DD)")
        return None
