"""Processor reports read as CSV by column name, with the line number of whatever goes wrong.

Processors let merchants add, drop and reorder report columns and change how reports are
made, so a parser names the columns it needs (`Layout.required`, with the spelling
variants any one of which will do) and the ones it uses when present (`optional`), reads
each row by name (`csv_rows`) and keeps every other column in the row's raw text.
Delimiter: the one of `,`, `;` and tab that splits the header into the most cells.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from clearline.recon.intake.model import ParseError
from clearline.recon.intake.reading import TextFile

# A report's text: whole, or a file read as a stream (`reading.TextFile`, what intake reads)
Text = str | TextFile

DELIMITERS = (",", ";", "\t")


def _key(name: str) -> str:
    """Header names compare without case and surrounding spaces ("Psp Reference" = "PSP reference ")."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class Layout:
    """A processor report's columns as its parser reads them.

    `required` lists what the parser cannot reconcile without: a column name, or a tuple of
    names any one of which will do (spelling variants, as Stripe's `created_utc` and
    `created`). `optional` are used when present. Every name is its canonical spelling;
    a header matches it without regard to case or surrounding spaces.
    """

    name: str
    required: tuple[str | tuple[str, ...], ...]
    optional: tuple[str, ...] = ()
    hint: str = ""  # said after a missing-columns error: what the missing columns usually mean
    ignored: str = ""  # a regex of columns the sender always writes and the parser ignores by design

    def unexpected(self, header: list[str]) -> list[str]:
        """The header's columns the layout neither names nor ignores by design: a refusal lists
        them, as a misspelt or renamed column is usually among them."""
        ignored = re.compile(self.ignored, re.IGNORECASE) if self.ignored else None
        known = {_key(c) for c in self.columns}
        return [h.strip() for h in header if _key(h) not in known and not (ignored and ignored.fullmatch(h.strip()))]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the layout names, required first, in declaration order."""
        names = [n for r in self.required for n in ((r,) if isinstance(r, str) else r)]
        return tuple(dict.fromkeys([*names, *self.optional]))

    def canonical(self, header: list[str]) -> list[str]:
        """The header with the layout's columns in their canonical spelling, others as given."""
        known = {_key(c): c for c in self.columns}
        return [known.get(_key(h), h.strip()) for h in header]

    def missing(self, header: list[str]) -> list[str]:
        """The requirements `header` does not meet ("a or b" for a set of variants)."""
        present = {_key(h) for h in header}
        groups = [(r,) if isinstance(r, str) else r for r in self.required]
        return [" or ".join(g) for g in groups if not any(_key(c) in present for c in g)]

    def met(self, header: list[str]) -> int:
        """How many requirements `header` meets (detection picks the closest layout by it)."""
        return len(self.required) - len(self.missing(header))


@dataclass(frozen=True)
class CsvRow:
    """One data row: `cells` by column name (canonical for the layout's columns, as the file
    spells them for the rest), and `raw`, the whole row as JSON text of column -> value in
    file order, extra columns included, which the settlement line keeps as evidence."""

    line_no: int
    cells: dict[str, str]
    raw: str

    def get(self, *names: str) -> str:
        """The first of `names` the file has, stripped; "" when it has none of them."""
        for name in names:
            if name in self.cells:
                return self.cells[name].strip()
        return ""

    def has(self, name: str) -> bool:
        return name in self.cells


def split_header(text: Text) -> tuple[list[str], str]:
    """(header cells, delimiter) of a CSV's first line. The delimiter is the one of `,`, `;`
    and tab that splits the header into the most cells (spreadsheets in many locales
    export with `;`)."""
    first = text.first_line() if isinstance(text, TextFile) else text.lstrip("\ufeff").split("\n", 1)[0]
    first = first.lstrip("\ufeff").rstrip("\r")
    best: tuple[list[str], str] = ([], ",")
    for delimiter in DELIMITERS:
        try:
            cells = next(csv.reader([first], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        if len(cells) > len(best[0]):
            best = (cells, delimiter)
    return best


def _unique(names: list[str]) -> list[str]:
    """Column names made unique (a repeated name gets " (2)", " (3)"...), so no cell is lost."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


# one physical line with its ending, as a file opened with newline="" splits them
_LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+\Z")


def text_lines(text: str) -> Iterator[str]:
    """The lines of `text` one at a time, endings kept (what `csv.reader` wants), without
    a copy of the whole: `io.StringIO` would hold the text again, at four bytes a character."""
    return (match.group() for match in _LINE.finditer(text))


def _lines(text: Text) -> Iterator[str]:
    """The text's lines for the CSV reader, leading byte-order marks dropped."""
    if isinstance(text, str):
        yield from text_lines(text.lstrip("\ufeff"))
        return
    lines = text.lines()
    for first in lines:
        yield first.lstrip("\ufeff")
        break
    yield from lines


def csv_rows(text: Text, layout: Layout) -> Iterator[CsvRow]:
    """Each data row of a CSV report read by column name.

    A header missing a required column is a ParseError naming the columns and the layout.
    Blank rows are skipped; a row with fewer fields than the header, or more that are not
    empty, is refused as truncated or shifted.
    """
    header, delimiter = split_header(text)
    missing = layout.missing(header)
    if missing:
        raise ParseError(
            f"the {layout.name} layout needs column(s) {missing}, which the header does not have{layout.hint}", 1
        )
    names = _unique(layout.canonical(header))
    shown = _unique([h.strip() for h in header])
    reader = csv.reader(_lines(text), delimiter=delimiter)
    try:
        next(reader)
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(names) or any(cell.strip() for cell in row[len(names) :]):
                raise ParseError(
                    f"{len(row)} fields where the header has {len(names)} (truncated or shifted row)", reader.line_num
                )
            row = row[: len(names)]
            raw = json.dumps(dict(zip(shown, row)), ensure_ascii=False, separators=(",", ":"))
            yield CsvRow(reader.line_num, dict(zip(names, row)), raw)
    except csv.Error as exc:
        raise ParseError(f"not valid CSV: {exc}", reader.line_num) from None
