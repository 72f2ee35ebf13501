"""A processor line's raw row as a table of (field, value), with the field that differs marked.

Intake keeps a CSV row as JSON text of column -> value in file order (a Checkout.com
action, several breakdown rows, as a JSON list of them); the variance's page shows it as a
two-column table per row rather than as JSON. Bank lines keep their raw text (an MT940
statement's lines), which is not a table and stays text (`table` returns None).

Which cell is "the field that differs": the variance names a field of the normalised
line (`fee`, `net`, `gross`, `fx_rate`, `available_on`, `settlement currency`...) and the
value reported for it ("19.06 GBP"); each processor spells the field its own way (Adyen's
fee is Commission/Markup/Scheme Fees/Interchange, Checkout.com writes a fee as a row whose
Breakdown Type names it). A cell is marked when its column's words, or its text's, hold
one of the field's words (`WORDS`), or when its number is the reported one, sign aside
(Checkout.com's "-19.06" for a reported fee of 19.06 GBP). It points the eye; the variance's
own line (field, expected, reported) stays the statement of what differs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

# the words a processor's column (or breakdown row) uses for a variance's field
WORDS: dict[str, frozenset[str]] = {
    "fee": frozenset({"fee", "fees", "commission", "markup", "interchange"}),
    "gross": frozenset({"gross", "amount"}),
    "net": frozenset({"net"}),
    "converted net": frozenset({"net"}),
    "fx_rate": frozenset({"fx", "exchange"}),
    "available_on": frozenset({"available", "booking"}),
    "settlement currency": frozenset({"currency"}),
}
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Cell:
    name: str
    value: str
    differs: bool


def words(text: str) -> set[str]:
    """Lower-case words of a column name or value ("Net Credit (NC)" -> net, credit, nc);
    an underscore separates words too (available_on_utc -> available, on, utc)."""
    return set(_WORD.findall(text.lower()))


def number(text: Any) -> Decimal | None:
    """The magnitude of a decimal at the start of `text` ("-19.06", "19.06 GBP"), else None."""
    head = str(text).strip().split(" ", 1)[0] if text is not None else ""
    try:
        value = abs(Decimal(head))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def differs(name: str, value: Any, field: str | None, reported: str | None) -> bool:
    """Whether the cell (name, value) is the variance's differing field (module docstring)."""
    wanted = WORDS.get(field or "", frozenset(words(field or "")))
    text = value if isinstance(value, str) else ""
    if wanted & (words(name) | words(text)):
        return True
    amount = number(reported)
    return bool(amount) and number(value) == amount


def table(raw: str | None, field: str | None, reported: str | None) -> list[list[Cell]] | None:
    """The raw row as tables of cells (one per row of the file the line was made from), or
    None when it is not a JSON object or list of objects (a bank line's text)."""
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    rows = parsed if isinstance(parsed, list) else [parsed]
    if not rows or not all(isinstance(r, dict) for r in rows):
        return None
    return [[cell(name, value, field, reported) for name, value in row.items()] for row in rows]


def cell(name: str, value: Any, field: str | None, reported: str | None) -> Cell:
    shown = "" if value is None else str(value)
    return Cell(str(name), shown, differs(str(name), value, field, reported))
