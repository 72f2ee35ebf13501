"""ISO 4217: the active currency codes and their minor-unit exponents.

Money in Clearline is an integer count of minor units plus a code from this table, so the
exponent is what turns 1999 USD-minor into "19.99" (and 1999 JPY into "1999") in files and
reports. Kept as data here rather than a dependency: the table changes once a year at most.
"""

from __future__ import annotations

import re

_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UZS VED VES "
    "WST XCD XCG YER ZAR ZMW ZWG"
)

EXPONENT: dict[str, int] = {
    **{c: 2 for c in _TWO.split()},
    **{c: 0 for c in _ZERO.split()},
    **{c: 3 for c in _THREE.split()},
    **{c: 4 for c in _FOUR.split()},
}


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code in EXPONENT


def minor_to_decimal(minor: int, currency: str) -> str:
    """Exact decimal text of an amount in minor units: (-1999, 'USD') -> '-19.99'."""
    exp = EXPONENT[currency]
    sign = "-" if minor < 0 else ""
    units, frac = divmod(abs(minor), 10**exp)
    return f"{sign}{units}.{frac:0{exp}d}" if exp else f"{sign}{units}"


_DECIMAL_TEXT = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?")


def decimal_to_minor(text: str, currency: str) -> int:
    """Exact minor units of a decimal text; refuses more decimals than the currency has."""
    exp = EXPONENT[currency]
    m = _DECIMAL_TEXT.fullmatch(text.strip())
    if not m or not (m.group(2) or m.group(3)):
        raise ValueError(f"not a decimal amount: {text!r}")
    sign, units, frac = m.group(1), m.group(2) or "0", (m.group(3) or "").rstrip("0")
    if len(frac) > exp:
        raise ValueError(f"{text!r} has more decimals than {currency} allows ({exp})")
    minor = int(units) * 10**exp + int(frac.ljust(exp, "0") or "0")
    return -minor if sign == "-" else minor
