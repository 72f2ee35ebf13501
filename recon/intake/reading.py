"""Bytes to text and CSV rows, with the line number of whatever goes wrong.

Settlement reports and statements are text; a file that is not valid UTF-8 (or has NUL
bytes, as a binary or a half-copied file does) is refused here with the line of the first
bad byte, so the quarantine report can point at it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from clearline.recon.intake.model import ParseError


def line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode(data: bytes) -> str:
    """UTF-8 text (a byte-order mark is dropped); refuses empty files and bad bytes."""
    if not data.strip():
        raise ParseError("the file is empty", 1)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}", line_of(data, exc.start)
        ) from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ParseError(f"NUL byte at offset {nul}: not a text file", line_of(data, nul))
    return text


def csv_rows(text: str, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row by column name) for each data row of a CSV with exactly `columns`.

    The header must be exactly `columns` (detection already chose the layout by it); a row
    with another number of fields is refused as truncated or shifted.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        if tuple(header) != columns:
            raise ParseError(f"the header is not the expected {len(columns)} columns", 1)
        for row in reader:
            if not row:
                continue
            if len(row) != len(columns):
                raise ParseError(
                    f"{len(row)} fields where the header has {len(columns)} (truncated or shifted row)",
                    reader.line_num,
                )
            yield reader.line_num, dict(zip(columns, row))
    except csv.Error as exc:
        raise ParseError(f"not valid CSV: {exc}", reader.line_num) from None
