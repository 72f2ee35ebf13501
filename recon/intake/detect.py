"""Which format a file is in, from its content (the name is only a hint in messages).

Processor reports are told apart by their exact CSV header; a header that shares most
columns with a known layout but not all is a wrong-columns error naming what is missing
and what is extra, not an unknown file. Bank formats by their first record: BAI2 opens
with a `01,` file header, camt.053 is XML in a camt.053 namespace (any version), MT940
has `:20:` and `:25:` tag lines near the start (after an optional SWIFT envelope).
"""

from __future__ import annotations

import csv
import io
import re

from clearline.recon.intake import adyen, checkoutcom, stripe
from clearline.recon.intake.model import ParseError

CSV_LAYOUTS = {"adyen": adyen.COLUMNS, "stripe": stripe.COLUMNS, "checkoutcom": checkoutcom.COLUMNS}
_CAMT = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.\d\d")
_MT940_TAG = re.compile(r"^:(20|25):", re.MULTILINE)


def detect(text: str) -> str:
    """adyen, stripe, checkoutcom, bai2, camt053 or mt940; ParseError if none fits."""
    head = text[:8192].lstrip()
    if head.startswith("01,"):
        return "bai2"
    if head.startswith("<"):
        if _CAMT.search(head):
            return "camt053"
        raise ParseError("XML, but not an ISO 20022 camt.053 statement (no camt.053.001.xx namespace)", 1)
    if len(set(_MT940_TAG.findall(head))) == 2:
        return "mt940"
    return _csv_layout(head)


def _csv_layout(head: str) -> str:
    try:
        header = tuple(next(csv.reader(io.StringIO(head))))
    except (csv.Error, StopIteration):
        header = ()
    for name, columns in CSV_LAYOUTS.items():
        if header == columns:
            return name
    name, columns = max(CSV_LAYOUTS.items(), key=lambda item: len(set(item[1]) & set(header)))
    if len(set(columns) & set(header)) * 2 >= len(columns):
        missing = [c for c in columns if c not in header]
        extra = [c for c in header if c not in columns]
        order = "" if missing or extra else "; the columns are out of order"
        raise ParseError(f"wrong columns for the {name} layout: missing {missing}, unexpected {extra}{order}", 1)
    first = head.splitlines()[0][:80] if head else ""
    raise ParseError(f"not a known settlement report or bank statement (first line {first!r})", 1)
