"""Processor reports read and validated in chunks say exactly what they say read whole.

The chunk size is a parameter (`chunk_rows`), set small here so a generated report spans
many chunks: lines, controls, problems and the verdict must not depend on where the
chunks fall, a broken row in a late chunk is named by its line, and a payout whose lines
lie in several chunks is checked against all of them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import tempfile
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon.intake.csv_report import text_lines
from clearline.recon.intake.model import ParsedFile
from clearline.recon.intake.parse import parse_bytes, parse_path
from clearline.recon.intake.reading import scan
from clearline.recon.intake.suites import Verdict, validate_many

SMALL = 5  # lines per chunk: a report of a few dozen rows spans many
WHOLE = 1_000_000


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """The largest report of each processor in a generated world."""
    out = tmp_path_factory.mktemp("chunk-world")
    generate(WorldOptions(days=30, merchants=8, seed=11), out)
    found = {}
    for processor in ("adyen", "stripe", "checkoutcom"):
        files = sorted((out / "settlements" / processor).glob("*.csv"), key=lambda p: p.stat().st_size)
        assert files, f"the world wrote no {processor} report"
        found[processor] = files[-1]
    return found


def _read(data: bytes, name: str, chunk_rows: int, spill: Path | None = None) -> tuple[ParsedFile, Verdict]:
    parsed = parse_bytes(data, name, chunk_rows=chunk_rows, spill=spill)
    (verdict,) = validate_many([parsed], chunk_rows=chunk_rows)
    return parsed, verdict


def _same(data: bytes, name: str) -> tuple[ParsedFile, Verdict]:
    """The file read in small chunks, after checking it says the same as read whole, and
    the same again with its chunks spilled to Parquet and judged from there, and again read
    from the file as a stream (as intake reads it: `reading.scan`, `parse_path`)."""
    whole, whole_verdict = _read(data, name, WHOLE)
    chunked, verdict = _read(data, name, SMALL)
    assert whole.lines.height > 3 * SMALL, "the report must span several chunks"
    with tempfile.TemporaryDirectory() as folder:
        spilled, spilled_verdict = _read(data, name, SMALL, Path(folder) / "spill.parquet")
        assert spilled.spill is not None and pq.ParquetFile(spilled.spill).num_row_groups >= 1
        assert spilled.line_count == whole.lines.height
        assert_frame_equal(pl.concat(list(spilled.chunks(SMALL + 2))), whole.lines)
        for got in (chunked, spilled):
            for part in ("lines", "controls", "problems"):
                assert_frame_equal(getattr(got, part), getattr(whole, part))
        assert spilled_verdict == whole_verdict
        path = Path(folder) / name
        path.write_bytes(data)
        scanned = scan(path)
        assert scanned.streams and scanned.sha256 == hashlib.sha256(data).hexdigest()
        streamed = parse_path(path, scanned.streams, SMALL, Path(folder) / "streamed.parquet")
        assert streamed.spill is not None
        for part in ("lines", "controls", "problems"):
            assert_frame_equal(getattr(streamed, part), getattr(whole, part))
        assert validate_many([streamed]) == [whole_verdict]
    assert verdict == whole_verdict
    return chunked, verdict


def _rows(data: bytes) -> tuple[list[str], list[list[str]]]:
    header, *rows = csv.reader(io.StringIO(data.decode()))
    return header, rows


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue().encode()


@pytest.mark.parametrize("processor", ["adyen", "stripe", "checkoutcom"])
def test_a_report_read_in_chunks_is_the_report_read_whole(reports, processor) -> None:
    path = reports[processor]
    parsed, verdict = _same(path.read_bytes(), path.name)
    assert verdict.passed, verdict.failures
    assert parsed.controls.height > 0 and (parsed.controls["declared"] == parsed.controls["computed"]).all()


def test_a_broken_row_in_a_late_chunk_is_named_by_its_line(reports) -> None:
    header, rows = _rows(reports["stripe"].read_bytes())
    last = max(i for i, r in enumerate(rows) if r[header.index("reporting_category")] == "charge")
    rows[last][header.index("currency")] = "usx"
    line_no = last + 2  # the header is line 1
    _, verdict = _same(_csv(header, rows), "late.csv")
    assert line_no > 3 * SMALL
    failures = [f for f in verdict.failures if "ISO 4217" in f.rule]
    assert failures and all(f.count == 1 and [row["line_no"] for row in f.rows] == [line_no] for f in failures)


def test_a_line_repeated_chunks_later_appears_twice(reports) -> None:
    data = reports["stripe"].read_bytes()
    header, rows = _rows(data)
    _, verdict = _same(_csv(header, [*rows, rows[0]]), "twice.csv")
    (failure,) = [f for f in verdict.failures if "appears twice" in f.rule]
    assert failure.count == 2 and {row["line_no"] for row in failure.rows} == {2, len(rows) + 2}


def test_the_payout_control_spans_chunks(reports) -> None:
    """A payout whose lines lie in several chunks holds on all of them, and fails when one
    line in its first chunk no longer adds up to what it paid."""
    data = reports["stripe"].read_bytes()
    header, rows = _rows(data)
    col = {name: header.index(name) for name in ("automatic_payout_id", "reporting_category", "net", "gross")}
    lines = [i for i, r in enumerate(rows) if r[col["reporting_category"]] == "charge"]
    batches = {rows[i][col["automatic_payout_id"]] for i in lines}
    batch = max(sorted(batches), key=lambda b: sum(rows[i][col["automatic_payout_id"]] == b for i in lines))
    own = [i for i in lines if rows[i][col["automatic_payout_id"]] == batch]
    assert len({i // SMALL for i in own}) > 1, "the payout's lines must lie in several chunks"
    parsed, verdict = _same(data, "payout.csv")
    assert verdict.passed
    first = own[0]
    for c in ("net", "gross"):  # still net = gross - fee on the line: only the payout's sum breaks
        rows[first][col[c]] = str(Decimal(rows[first][col[c]]) + 1)
    parsed, verdict = _same(_csv(header, rows), "payout.csv")
    (failure,) = [f for f in verdict.failures if "control total" in f.rule]
    (broken,) = failure.rows
    assert broken["control"] == f"payout {batch} = sum of its lines' net"
    assert broken["declared"] - broken["computed"] == -100
    payout_row = parsed.controls.filter(pl.col("control") == broken["control"])["line_no"].item()
    assert broken["line_no"] == payout_row


@given(st.text(alphabet='\r\n",a\u00e9', max_size=60))
def test_text_lines_split_as_a_file_opened_with_newline_empty(text) -> None:
    """`text_lines` feeds the CSV reader the lines `io.StringIO(text, newline="")` would,
    without its copy of the text."""
    assert list(text_lines(text)) == list(io.StringIO(text, newline=""))


def test_adyen_value_days_settled_by_a_later_payout_row_span_chunks(reports) -> None:
    """Without Booking Dates an Adyen line's value day is its batch's payout row's, which
    comes after its lines: chunked and spilled (the spill rewritten once the rows are in),
    the lines get exactly the days they get read whole."""
    header, rows = _rows(reports["adyen"].read_bytes())
    booking = header.index("Booking Date")
    for row in rows:
        if row[header.index("Type")] != "MerchantPayout":
            row[booking] = ""
    parsed, verdict = _same(_csv(header, rows), "undated.csv")
    assert verdict.passed, verdict.failures
    assert parsed.lines["value_date"].null_count() == 0 and parsed.lines["value_date"].n_unique() >= 1
