"""Intake spills a report's lines to a temporary Parquet file while it reads and judges it,
and leaves nothing of it behind: an accepted report's spill becomes its lines in the store
(renamed into place), a quarantined or unreadable report's spill is deleted.

Real files (a generated world's reports), real Parquet, the real registry.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon.intake.ingest import Intake, IntakeSettings
from clearline.recon.intake.model import ParseError
from clearline.recon.intake.parse import parse_bytes, parse_file
from clearline.recon.intake.store import read_lines


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The largest Stripe report of a generated world."""
    out = tmp_path_factory.mktemp("spill-world")
    generate(WorldOptions(days=20, merchants=6, seed=5), out)
    files = sorted((out / "settlements" / "stripe").glob("*.csv"), key=lambda p: p.stat().st_size)
    assert files, "the world wrote no Stripe report"
    return files[-1]


def _intake(state: Path) -> Intake:
    return Intake(IntakeSettings(state, "unused", poll_seconds=0.1, settle_seconds=0, delivery_timeout_seconds=10))


def _left(state: Path) -> list[Path]:
    """Whatever intake left in its spill folder."""
    return sorted((state / "spill").glob("*")) if (state / "spill").is_dir() else []


def _changed(path: Path, target: Path, column: str, value: str, row: int = -1) -> Path:
    """`path` with one cell of its last charge row (or `row`) set to `value`."""
    header, *rows = csv.reader(io.StringIO(path.read_text()))
    charges = [i for i, r in enumerate(rows) if r[header.index("reporting_category")] == "charge"]
    rows[charges[row]][header.index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    target.write_text(out.getvalue())
    return target


def test_an_accepted_report_is_stored_from_its_spill_and_leaves_none(report, tmp_path) -> None:
    (outcome,) = _intake(tmp_path / "state").ingest([report])
    assert outcome.status == "accepted", outcome
    expected = parse_file(report).lines
    assert outcome.lines == expected.height > 0
    assert_frame_equal(read_lines(tmp_path / "state", "processor"), expected.sort("source_file", "line_no"))
    assert _left(tmp_path / "state") == []


def test_a_quarantined_report_leaves_no_spill_and_nothing_stored(report, tmp_path) -> None:
    broken = _changed(report, tmp_path / "broken.csv", "currency", "usx")
    (outcome,) = _intake(tmp_path / "state").ingest([broken])
    assert outcome.status == "quarantined" and "ISO 4217" in outcome.reason, outcome
    assert outcome.lines == parse_file(broken).lines.height
    assert _left(tmp_path / "state") == []
    assert read_lines(tmp_path / "state", "processor").height == 0


def test_a_report_unreadable_late_leaves_no_spill(report, tmp_path) -> None:
    """A row cut short near the end is found after earlier chunks were spilled: the spill goes."""
    text = report.read_text().rstrip("\n")
    cut = text[: text.rindex(",")] + "\n"  # the last row loses its last field
    spill = tmp_path / "spill" / "late.parquet"
    with pytest.raises(ParseError, match="truncated or shifted"):
        parse_bytes(cut.encode(), "late.csv", chunk_rows=3, spill=spill)
    assert not spill.exists() and list(spill.parent.glob("*")) == []
    broken = tmp_path / "late.csv"
    broken.write_text(cut)
    (outcome,) = _intake(tmp_path / "state").ingest([broken])
    assert outcome.status == "quarantined" and "truncated" in outcome.reason, outcome
    assert _left(tmp_path / "state") == []


def test_a_report_partly_held_stores_only_its_new_lines_from_the_spill(report, tmp_path) -> None:
    """A second report that repeats the first's lines and changes one: only that one is taken
    (the spill rewritten to the taken rows), and no spill is left."""
    state = tmp_path / "state"
    (first,) = _intake(state).ingest([report])
    changed = _changed(report, tmp_path / "changed.csv", "payment_metadata[merchant_reference]", "ref-corrected", row=0)
    (second,) = _intake(state).ingest([changed])
    assert (second.status, second.lines, second.changed) == ("accepted", 1, 1), second
    assert second.already_held == first.lines - 1
    stored = read_lines(state, "processor").filter(pl.col("source_file") == "changed.csv")
    assert stored["payment_id"].to_list() == ["ref-corrected"]
    assert _left(state) == []
