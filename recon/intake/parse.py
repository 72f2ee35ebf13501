"""`parse_file(path)`: detect the format, read the file, normalise its lines.

The pure half of intake: no suite, no side effects. A file that cannot be read raises
`ParseError` with the line; everything readable comes back as a `ParsedFile` for the
suite to judge.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from clearline.recon.intake import (
    adyen,
    bai2_statement,
    camt053,
    checkoutcom,
    checkoutcom_breakdown,
    mt940_statement,
    stripe,
)
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.csv_report import Text
from clearline.recon.intake.detect import HEAD_CHARS, detect
from clearline.recon.intake.model import ParsedFile, ParseError
from clearline.recon.intake.reading import TextFile, decode

# lines (a frame, or the Parquet file they were spilled to), controls, problems, and for
# bank formats the statements
Frames = tuple[pl.DataFrame | Path, ...]
Parser = Callable[[Text, str, int, Path | None], Frames]


def _chunked(module) -> Parser:
    """A report or statement read `chunk_rows` lines at a time, each chunk spilled to `spill`
    when given (`processor.ProcessorFile`, `bank.BankFile`)."""
    return lambda text, name, chunk_rows, spill: module.parse(text, name, chunk_rows, spill).frames()


PARSERS: dict[str, Parser] = {
    "adyen": _chunked(adyen),
    "stripe": _chunked(stripe),
    "checkoutcom": _chunked(checkoutcom),
    "checkoutcom_breakdown": _chunked(checkoutcom_breakdown),
    "bai2": _chunked(bai2_statement),
    "camt053": _chunked(camt053),
    "mt940": _chunked(mt940_statement),
}


# Text formats whose banks still send ISO-8859-1 / Windows-1252 (German MT940s, older
# BAI2 files): read so when the bytes are not UTF-8 (see `reading.decode`).
SINGLE_BYTE_FORMATS = ("mt940", "bai2")


def parse_bytes(
    data: bytes, name: str, path: Path | None = None, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None
) -> ParsedFile:
    """The file read; with `spill`, a processor report's lines go to that Parquet file a
    chunk at a time (`ParsedFile.spill`; the caller deletes it when done). A file that
    cannot be read leaves no spill behind."""
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
    return _parsed(text, detect(text), name, path, chunk_rows, spill)


def parse_path(path: Path, streams: bool, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None) -> ParsedFile:
    """The file at `path` as intake reads it. A file whose bytes `reading.scan` found to be
    UTF-8 (`streams`) is read as a stream, so neither its bytes nor its text are ever
    whole in memory; a file whose bytes `decode` must judge is read whole by
    `parse_bytes`. Either gives the same lines."""
    if streams:
        text = TextFile(path)
        return _parsed(text, detect(text.head(HEAD_CHARS)), path.name, path, chunk_rows, spill)
    return parse_bytes(path.read_bytes(), path.name, path, chunk_rows, spill)


def _parsed(text: Text, fmt: str, name: str, path: Path | None, chunk_rows: int, spill: Path | None) -> ParsedFile:
    try:
        return ParsedFile(path or Path(name), fmt, *PARSERS[fmt](text, name, chunk_rows, spill))
    except BaseException:
        if spill is not None:  # half a spill, and its rewrite with settled days (`ProcessorFile.frames`)
            for left in (spill, spill.with_name(spill.name + ".settled")):
                left.unlink(missing_ok=True)
        raise


def parse_file(path: Path, chunk_rows: int = CHUNK_ROWS) -> ParsedFile:
    """The file at `path` detected, parsed and normalised; its name becomes `source_file`."""
    path = Path(path)
    return parse_bytes(path.read_bytes(), path.name, path, chunk_rows)
