"""SWIFT MT940 text into statements of tagged fields: our own small tokenizer.

Why not the `mt-940` package any more: it cannot read valid files banks send. A `:61:`
statement line's supplementary details (subfield 9) sit on the line after it, as the SWIFT
standard puts them, and the package then fails or takes them for another field (the
ASN Bank and Citi files); it also reads a wrapped `:86:` line that happens to start with
`:12:` as a tag. The format itself is small, so intake reads it here:

* SWIFT envelopes (`{1:…}{2:…}{3:…}{4:` … `-}{5:…}`, with the SOH and ETX characters that
  frame FIN messages, the next message on the same line or not), a `-` or `-XXX` closing a
  message, a bank's preamble before the first tag (ING's `0000 01INGB…` lines, Rabobank's
  `:940:`) and a Ctrl-Z end mark frame messages and carry no statement data: skipped.
* A field starts at a line `:TAG:` for a tag MT940 defines (20, 21, 25, 28, 60, 61, 62,
  64, 65, 86 with their letters, and MT942's 13, 34, 90); every other line, blank ones
  included, continues the field before it (so `:12:11` inside a wrapped `:86:` stays
  text).
* A statement runs from one `:20:` to the next; several per file, each with its own
  `:25:`, `:28C:` and balances. `:86:` after a `:61:` belongs to that line (several `:86:`
  in a row are joined, as old Rabobank files write them); after `:62F:` it is the
  statement's own information and not a line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from clearline.recon.intake.model import ParseError

# MT940's own tags (and MT942's), by number: a bank's letter variant (`:65F:`) is still one
TAG_NUMBERS = {"20", "21", "25", "28", "60", "61", "62", "64", "65", "86", "13", "34", "90", "NS"}
_TAG = re.compile(r"^:([0-9]{2}[A-Z]?|NS):(.*)$")
# {1:basic header}{2:application header}{3:{108:…}…}{4:  (block 3 holds nested fields)
_ENVELOPE = re.compile(r"^\{1:[^}]*\}(?:\{2:[^}]*\})?(?:\{3:(?:\{[^}]*\})*\})?\{4:")
_MESSAGE_END = re.compile(r"^\s*-(\}|XXX)?(\{5:.*)?\s*$|^\{5:")
_NEXT_MESSAGE = re.compile(r"(?<=[}\x01\x03])(?=\{1:)")
_FRAMING = str.maketrans("", "", "\x01\x03\x1a")  # SOH and ETX around FIN messages; Ctrl-Z, a DOS end mark
# :60F: / :62F: and friends: D/C mark, date YYMMDD, currency, amount with a decimal comma
_BALANCE = re.compile(r"^\s*([CDcd])\s*(\d{6})\s*([A-Z]{3})\s*([0-9]+(?:[,.][0-9]*)?|[,.][0-9]+)\s*$")
# :61: value date, optional entry date (MMDD, or blanks), D/C mark (RC/RD reversals), an
# optional funds code (the currency's third letter), amount, transaction type, customer
# reference, optional //bank reference. Some banks write the mark in lower case, or a
# decimal point for the comma. The type is N, S or F and three characters (some
# banks leave them blank, Sberbank's `S   `, or out, Zenith Bank's). Banks exceed the 16-character references (ASN Bank
# writes an 18-character IBAN): the references are read to the end of the line.
_LINE = re.compile(
    r"^(?P<value>\d{6})(?P<entry>\d{4}|\s{4})?\s*(?P<mark>RC|RD|C|D|rc|rd|c|d)(?P<funds>[A-Z])?"
    r"(?P<amount>[0-9]+(?:[,.][0-9]*)?|[,.][0-9]+)(?P<type>[A-Z][A-Z0-9 ]{3})?(?P<ref>.*?)(?://(?P<bank_ref>.*))?$"
)


@dataclass(frozen=True)
class Field:
    tag: str
    text: str  # the field's lines joined with "\n", the tag removed
    line_no: int


@dataclass(frozen=True)
class Balance:
    amount: Decimal  # signed: C +, D -
    currency: str
    day: date | None
    final: bool  # F (first/last page) or M (intermediate, a statement continued on another page)
    line_no: int


@dataclass
class Entry:
    """One :61: line with its :86: details; `mark` is C, D, RC or RD."""

    line_no: int
    raw: str
    value_date: date | None = None
    entry_date: date | None = None
    mark: str = ""
    amount: Decimal | None = None
    type_code: str = ""
    customer_reference: str = ""
    bank_reference: str = ""
    supplementary: str = ""
    details: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass
class Page:
    """One statement message: `:20:` up to the next `:20:`."""

    reference: str
    line_no: int
    account: str = ""
    number: str = ""  # :28C: as written (statement number / page)
    opening: Balance | None = None
    closing: Balance | None = None
    entries: int = 0  # its :61: lines (read by `entries`)
    tags: set[str] = field(default_factory=set)


def fields(lines: Iterable[str]) -> Iterator[Field]:
    """Every tagged field of the file in order, envelopes and preambles skipped; `lines`
    are the file's lines (`reading.text_lines`), read one at a time: a field is yielded
    once the line that starts the next one (or the end) is read."""
    current: tuple[str, list[str], int] | None = None
    in_message = True
    for n, raw in enumerate(_message_lines(lines), 1):
        line = raw.rstrip("\r").translate(_FRAMING)
        envelope = _ENVELOPE.match(line)
        if envelope:
            in_message, line = True, line[envelope.end() :]
            if not line.strip():
                continue
        if _MESSAGE_END.match(line) and current is not None:
            in_message = False
            continue
        tag = _TAG.match(line)
        if tag and tag.group(1)[:2] in TAG_NUMBERS:
            in_message = True
            if current is not None:
                yield _field(*current)
            current = (tag.group(1), [tag.group(2)], n)
        elif current is not None and in_message:
            current[1].append(line)
    if current is not None:
        yield _field(*current)


def _message_lines(lines: Iterable[str]) -> Iterator[str]:
    """The lines with a message that starts on the line where the one before ended
    (`-}{1:…`) starting a line of its own."""
    for line in lines:
        yield from _NEXT_MESSAGE.sub("\n", line).split("\n")


def _field(tag: str, lines: list[str], n: int) -> Field:
    return Field(tag, "\n".join(lines).rstrip("\n"), n)


def pages(found: Iterable[Field]) -> list[Page]:
    """The file's statement messages with their parsed balances; each page's `:61:` lines
    are counted, not kept (`entries` reads them in a second pass over the fields)."""
    out: list[Page] = []
    for f in found:
        if f.tag == "20":
            out.append(Page(f.text.strip(), f.line_no))
            continue
        if not out:
            raise ParseError(f"a :{f.tag}: field before any :20: transaction reference", f.line_no)
        page = out[-1]
        page.tags.add(f.tag)
        if f.tag == "25":
            page.account = " ".join(f.text.split())
        elif f.tag in ("28", "28C"):
            page.number = f.text.strip()
        elif f.tag in ("60F", "60M"):
            page.opening = balance(f)
        elif f.tag in ("62F", "62M"):
            page.closing = balance(f)
        elif f.tag == "61":
            if page.closing is not None:
                raise ParseError(
                    f"a :61: statement line after the closing balance of statement {page.reference}", f.line_no
                )
            page.entries += 1
    return out


def entries(found: Iterable[Field]) -> Iterator[Entry]:
    """Every `:61:` line with its `:86:` details, in file order (the pages of `pages` hold
    `Page.entries` of them each): `:86:` after a `:61:` belongs to it until the page's
    closing balance; after that it is the statement's own information."""
    pending: Entry | None = None
    for f in found:
        if f.tag in ("20", "61", "62F", "62M") and pending is not None:
            yield pending
            pending = None
        if f.tag == "61":
            pending = statement_line(f)
        elif f.tag == "86" and pending is not None:
            pending.details.append(f.text)
    if pending is not None:
        yield pending


def amount(text: str) -> Decimal:
    """SWIFT amount text (decimal comma, possibly no decimals: `1000,`) as a Decimal."""
    text = text.strip().replace(",", ".")
    return Decimal(text.rstrip(".") or "0") if text != "." else Decimal(0)


def swift_date(text: str) -> date:
    """YYMMDD; a day past the month's end (a `300` February value date some banks write
    for end-of-month interest, a 30/360 convention) is the month's last day."""
    year, month, day = 2000 + int(text[:2]), int(text[2:4]), int(text[4:6])
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise ValueError(f"{text!r} is not a date (YYMMDD)")
    for last in (day, 30, 29, 28):
        try:
            return date(year, month, min(day, last))
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (YYMMDD)")


def balance(f: Field) -> Balance:
    match = _BALANCE.match(f.text.replace("\n", ""))
    if not match:
        raise ParseError(f":{f.tag}: {f.text!r} is not a balance (D/C mark, YYMMDD, currency, amount)", f.line_no)
    mark, day, currency, value = match.groups()
    try:
        when = swift_date(day)
    except ValueError as exc:
        raise ParseError(f":{f.tag}: {exc}", f.line_no) from None
    signed = amount(value) * (1 if mark.upper() == "C" else -1)
    return Balance(signed, currency, when, f.tag.endswith("F"), f.line_no)


def statement_line(f: Field) -> Entry:
    """A :61: field; what cannot be read is the entry's `problem`, never an exception."""
    first, _, rest = f.text.partition("\n")
    entry = Entry(f.line_no, first, supplementary=" ".join(part.strip() for part in rest.splitlines()).strip())
    match = _LINE.match(first.strip())
    if not match:
        entry.problem = (
            f":61: {first.strip()!r} is not a statement line (value date, entry date, D/C mark, amount, type)"
        )
        return entry
    try:
        entry.value_date = swift_date(match["value"])
        entry.amount = amount(match["amount"])
    except (ValueError, InvalidOperation) as exc:
        entry.problem = f":61: {exc}"
        return entry
    entry.entry_date = _entry_date(match["entry"], entry.value_date)
    entry.mark, entry.type_code = match["mark"].upper(), match["type"] or ""
    entry.customer_reference = (match["ref"] or "").strip()
    entry.bank_reference = (match["bank_ref"] or "").strip()
    return entry


def _entry_date(text: str | None, value: date) -> date | None:
    """MMDD in the year that puts it nearest the value date (a statement of 2 January may
    book a line entered on 31 December)."""
    if not text or not text.strip():
        return None
    month, day = int(text[:2]), int(text[2:])
    candidates = []
    for year in (value.year - 1, value.year, value.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:
            continue
    return min(candidates, key=lambda d: abs((d - value).days)) if candidates else None
