"""`parse_file(path)`: detect the format, read the file, normalise its lines.

The pure half of intake: no suite, no side effects. A file that cannot be read raises
`ParseError` with the line; everything readable comes back as a `ParsedFile` for the
suite to judge.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from clearline.recon.intake import adyen, bai2_statement, camt053, checkoutcom, mt940_statement, stripe
from clearline.recon.intake.detect import detect
from clearline.recon.intake.model import ParsedFile, ParseError
from clearline.recon.intake.processor import CHUNK_ROWS
from clearline.recon.intake.reading import decode

# lines, controls, problems, and for bank formats the statements
Frames = tuple[pl.DataFrame, ...]


def _frames(module) -> Callable[[str, str, int], Frames]:
    return lambda text, name, chunk_rows: module.parse(text, name).frames()


def _chunked(module) -> Callable[[str, str, int], Frames]:
    """A processor report read `chunk_rows` lines at a time (`processor.ProcessorFile`)."""
    return lambda text, name, chunk_rows: module.parse(text, name, chunk_rows).frames()


PARSERS: dict[str, Callable[[str, str, int], Frames]] = {
    "adyen": _chunked(adyen),
    "stripe": _chunked(stripe),
    "checkoutcom": _chunked(checkoutcom),
    "bai2": _frames(bai2_statement),
    "camt053": _frames(camt053),
    "mt940": _frames(mt940_statement),
}


# Text formats whose banks still send ISO-8859-1 / Windows-1252 (German MT940s, older
# BAI2 files): read so when the bytes are not UTF-8 (see `reading.decode`).
SINGLE_BYTE_FORMATS = ("mt940", "bai2")


def parse_bytes(data: bytes, name: str, path: Path | None = None, chunk_rows: int = CHUNK_ROWS) -> ParsedFile:
    try:
        text = decode(data)
    except ParseError as strict:
        text = decode(data, single_byte=True)
        try:
            single_byte_format = detect(text) in SINGLE_BYTE_FORMATS
        except ParseError:
            single_byte_format = False
        if not single_byte_format:
            raise strict from None
    fmt = detect(text)
    return ParsedFile(path or Path(name), fmt, *PARSERS[fmt](text, name, chunk_rows))


def parse_file(path: Path, chunk_rows: int = CHUNK_ROWS) -> ParsedFile:
    """The file at `path` detected, parsed and normalised; its name becomes `source_file`."""
    path = Path(path)
    return parse_bytes(path.read_bytes(), path.name, path, chunk_rows)
