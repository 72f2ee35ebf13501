"""Validated lines at rest: one Parquet file per accepted source file, named by its hash.

`<state_dir>/lines/processor/<format>/<sha256>.parquet` and `.../bank/<format>/...`, with
exactly the columns of `clearline.recon.lines`, which the batch matcher and the batch-parity re-run
read with `read_lines`. Written to a temporary name and renamed, so a reader never sees
half a file, and writing the same file again replaces it with the same rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from clearline.recon.intake.model import ParsedFile
from clearline.recon.lines import BANK_SCHEMA, SETTLEMENT_SCHEMA

SCHEMAS = {"processor": SETTLEMENT_SCHEMA, "bank": BANK_SCHEMA}


def lines_path(state_dir: Path, parsed: ParsedFile, sha256: str) -> Path:
    return state_dir / "lines" / parsed.kind / parsed.format / f"{sha256}.parquet"


def write_lines(state_dir: Path, parsed: ParsedFile, sha256: str) -> Path:
    path = lines_path(state_dir, parsed, sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".parquet.tmp")
    parsed.lines.write_parquet(temporary)
    os.replace(temporary, path)
    return path


def read_lines(state_dir: Path, kind: str) -> pl.DataFrame:
    """Every validated line of `kind` ("processor" or "bank"), in file and line order."""
    files = sorted((state_dir / "lines" / kind).glob("*/*.parquet"))
    if not files:
        return pl.DataFrame(schema=SCHEMAS[kind])
    return pl.read_parquet(files).cast(SCHEMAS[kind]).sort("source_file", "line_no")
