"""Validated lines at rest: one Parquet file per accepted source file, named by its hash.

`<state_dir>/lines/processor/<format>/<sha256>.parquet` and `.../bank/<format>/...`, with
exactly the columns of `clearline.recon.lines`, which the batch matcher and the batch-parity re-run
read with `read_lines`. A bank file's statements (their identity and stated balances, for
balance continuity) go beside them as a third kind, `.../lines/statement/<format>/...`,
read with `read_statements`, so whatever copies or reads the store's lines has them too.
Written to a temporary name and renamed, so a reader never sees half a file, and writing
the same file again replaces it with the same rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from clearline.recon.intake.model import ParsedFile
from clearline.recon.lines import BANK_SCHEMA, SETTLEMENT_SCHEMA, STATEMENT_SCHEMA

SCHEMAS = {"processor": SETTLEMENT_SCHEMA, "bank": BANK_SCHEMA}


def lines_path(state_dir: Path, parsed: ParsedFile, sha256: str) -> Path:
    return state_dir / "lines" / parsed.kind / parsed.format / f"{sha256}.parquet"


def statements_path(state_dir: Path, parsed: ParsedFile, sha256: str) -> Path:
    return state_dir / "lines" / "statement" / parsed.format / f"{sha256}.parquet"


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".parquet.tmp")
    frame.write_parquet(temporary)
    os.replace(temporary, path)


def write_lines(state_dir: Path, parsed: ParsedFile, sha256: str) -> Path:
    """The file's lines, and a bank file's statements beside them (written first, so
    lines at rest always have their statements); the path of the lines. A spilled
    report's spill (`ParsedFile.spill`, in `state_dir`) is renamed into place: after
    this the spill is gone and the lines are read from the returned path."""
    if parsed.kind == "bank":
        _write(parsed.statements, statements_path(state_dir, parsed, sha256))
    path = lines_path(state_dir, parsed, sha256)
    if parsed.spill is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(parsed.spill, path)
    else:
        _write(parsed.lines, path)
    return path


def _read(folder: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    files = sorted(folder.glob("*/*.parquet"))
    if not files:
        return pl.DataFrame(schema=schema)
    return pl.read_parquet(files).cast(schema).sort("source_file", "line_no")


def read_lines(state_dir: Path, kind: str) -> pl.DataFrame:
    """Every validated line of `kind` ("processor" or "bank"), in file and line order."""
    return _read(state_dir / "lines" / kind, SCHEMAS[kind])


def read_statements(state_dir: Path) -> pl.DataFrame:
    """Every stored bank statement (`STATEMENT_SCHEMA`), in file order."""
    return _read(state_dir / "lines" / "statement", STATEMENT_SCHEMA)
