"""`parse_file(path)`: detect the format, read the file, normalise its lines.

The pure half of intake: no suite, no side effects. A file that cannot be read raises
`ParseError` with the line; everything readable comes back as a `ParsedFile` for the
suite to judge.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from recon.intake import adyen, checkoutcom, stripe
from recon.intake.detect import detect
from recon.intake.model import ParsedFile
from recon.intake.reading import decode

Frames = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]


def _processor(module) -> Callable[[str, str], Frames]:
    return lambda text, name: module.parse(text, name).frames()


PARSERS: dict[str, Callable[[str, str], Frames]] = {
    "adyen": _processor(adyen), "stripe": _processor(stripe), "checkoutcom": _processor(checkoutcom),
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
