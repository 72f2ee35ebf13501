"""SWIFT MT940 statements into bank lines and statements (tokenized by `mt940_fields`).

Statements: a file holds one or many (one per day, many empty); each runs from its `:20:`.
A statement continued over several messages (pages: `:28C:` 5/1, 5/2, …, the first
closing with an intermediate `:62M:`, the next opening with `:60M:`) is one statement:
its opening is the first page's, its closing the last page's; every page's own
opening + lines = closing is a control, and so is each page opening at the balance the
page before it closed with.

Identity: `statement_id` is the first page's `:20:`, `sequence` the `:28C:` statement
number (the part before `/`, the page dropped: the pages are merged), or the whole
`:28C:` as written when the file holds only part of a statement (it opens with `:60M:` or
closes with `:62M:`). Banks that do not number statements (`:28C:` of zeros, as Rabobank's
`00000` or ING's `000`) get the closing balance's date as the sequence, so two days in one
file stay two statements.

Signs: the D/C mark: C and RD (a debit reversed: money back) are +, D and RC (a credit
reversed) are -. Value date from `:61:`; booking date its entry date (the value date when
the bank leaves it out). References: the `:61:` bank reference after `//`; the customer
reference is the end-to-end reference of a structured `:86:` (`EREF+`, `/EREF/`: the full
one, the `:61:` field holds only 16 characters), else the `:61:` reference unless NONREF;
the text is the `:86:` remittance text (`SVWZ+`, `/REMI/`, the `?2x` lines) or the whole
`:86:` (see `mt940_details`), else the `:61:` supplementary details.

Read in two passes over the file's lines, neither holding the text or its entries: the
first reads the pages (balances, numbers, how many `:61:` each holds) and groups them into
statements, as a statement's identity and currency are known only at its end (`:62F:`);
the second reads the entries one at a time into the statements (`BankFile` keeps them a
chunk at a time).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import islice
from pathlib import Path

from clearline.recon.intake import mt940_details
from clearline.recon.intake.bank import BankFile, Sum
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.model import ParseError
from clearline.recon.intake.mt940_fields import Balance, Entry, Page, entries, fields, pages
from clearline.recon.intake.normalise import currency_code, minor, optional
from clearline.recon.intake.reading import TextFile, text_lines

PLUS = ("C", "RD")


def parse(text: str | TextFile, source_file: str, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None) -> BankFile:
    """The statements of `text` (whole, or a file streamed); with `spill`, the lines go to
    that Parquet file a chunk at a time (`BankFile`)."""
    out = BankFile(source_file=source_file, chunk_rows=chunk_rows, spill=spill)
    found = pages(fields(text_lines(text)))
    if not found:
        raise ParseError("no :20: statement in the file", 1)
    read = entries(fields(text_lines(text)))
    for statement in _statements(found):
        _statement(statement, read, out)
    return out


def _statements(found: list[Page]) -> list[list[Page]]:
    """Pages grouped into statements: a page that opens with :60M: continues the one
    before it when that closed with :62M: on the same account."""
    groups: list[list[Page]] = []
    for page in found:
        if page.opening is None:
            what = "an MT942 interim report, not a statement:" if page.tags & {"34F", "90D", "90C"} else "statement"
            raise ParseError(f"{what} {page.reference} has no opening balance :60F:/:60M:", page.line_no)
        if page.closing is None:
            raise ParseError(
                f"statement {page.reference} has no closing balance :62F:/:62M: (truncated?)", page.line_no
            )
        last = groups[-1][-1].closing if groups else None
        if last and not last.final and not page.opening.final and groups[-1][-1].account == page.account:
            groups[-1].append(page)
        else:
            groups.append([page])
    return groups


def _sequence(group: list[Page]) -> str | None:
    first, opening, closing = group[0], group[0].opening, group[-1].closing
    number = first.number.split("/")[0].strip()
    if not first.number or opening is None or closing is None:
        return None
    if not opening.final or not closing.final:
        return first.number
    if number.strip("0") == "" and closing.day is not None:
        return closing.day.isoformat()
    return number


def _minor(value: Decimal | None, currency: str, what: str, line_no: int, out: BankFile) -> int | None:
    return None if value is None else minor(format(value, "f"), currency, what, line_no, out.problems)


def _statement(group: list[Page], read: Iterator[Entry], out: BankFile) -> None:
    first, last = group[0], group[-1]
    assert first.opening is not None and last.closing is not None  # _statements refused pages without them
    currency = currency_code(last.closing.currency)
    out.open_statement("mt940", first.account, first.reference, _sequence(group), first.line_no)
    before: int | None = None
    for n, page in enumerate(group):
        page_open, page_close = page.opening, page.closing
        assert page_open is not None and page_close is not None
        opened, closed = _balance(page_open, out), _balance(page_close, out)
        if currency_code(page_open.currency) != currency:
            out.problems.note(
                page_open.line_no, f"the opening balance is in {page_open.currency}, the closing in {currency}"
            )
        amounts = Sum()
        for entry in islice(read, page.entries):
            amounts.add(_entry(entry, currency, out))
        name = f"statement {page.reference} {page.number}".strip()
        if n:
            out.control(f"{name}: :60M: opening = the page before's :62M: closing", page_open.line_no, opened, before)
        out.balance(name, page_close.line_no, opened, closed, amounts)
        before = closed
    out.close_statement(_balance(first.opening, out), first.opening.day, before, last.closing.day, currency)


def _balance(balance: Balance, out: BankFile) -> int | None:
    return _minor(balance.amount, currency_code(balance.currency), "balance", balance.line_no, out)


def _entry(entry: Entry, currency: str, out: BankFile) -> int | None:
    if entry.problem:
        out.problems.note(entry.line_no, entry.problem)
    amount = _minor(entry.amount, currency, ":61: amount", entry.line_no, out)
    if amount is not None:
        amount = amount if entry.mark in PLUS else -amount
    details = mt940_details.read(entry.details) if entry.details else mt940_details.Details(None, None)
    short = entry.customer_reference
    reference = details.reference or (None if short.upper() in mt940_details.NONE_GIVEN else optional(short))
    out.add(
        optional(entry.bank_reference),
        reference,
        details.text or optional(entry.supplementary),
        amount,
        currency,
        entry.entry_date or entry.value_date,
        entry.value_date,
        entry.line_no,
    )
    return amount
