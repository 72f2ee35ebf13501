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
from clearline.recon.intake.model import ParsedFile
from clearline.recon.intake.reading import decode

Frames = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]


def _frames(module) -> Callable[[str, str], Frames]:
    return lambda text, name: module.parse(text, name).frames()


PARSERS: dict[str, Callable[[str, str], Frames]] = {
    "adyen": _frames(adyen),
    "stripe": _frames(stripe),
    "checkoutcom": _frames(checkoutcom),
    "bai2": _frames(bai2_statement),
    "camt053": _frames(camt053),
    "mt940": _frames(mt940_statement),
}


def parse_bytes(data: bytes, name: str, path: Path | None = None) -> ParsedFile:
    text = decode(data)
    fmt = detect(text)
    lines, controls, problems = PARSERS[fmt](text, name)
    return ParsedFile(path or Path(name), fmt, lines, controls, problems)


def parse_file(path: Path) -> ParsedFile:
    """The file at `path` detected, parsed and normalised; its name becomes `source_file`."""
    path = Path(path)
    return parse_bytes(path.read_bytes(), path.name, path)
