"""Bank statements read as a stream (issue 15, intake in bounded memory): MT940 and BAI2
line by line, camt.053 with `iterparse`, the lines a chunk at a time into a spill, give
exactly what reading the file's text whole gives: the same lines, controls, problems and
statements, or the same refusal. And parsing a large statement holds a chunk of it, not
the file (`tracemalloc`, no clock).
"""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from clearline.recon.intake.model import ParsedFile, ParseError
from clearline.recon.intake.parse import parse_bytes, parse_path
from clearline.recon.intake.reading import scan, text_lines

CORPUS = Path(__file__).parents[1] / "data" / "bank_statements"
SAMPLES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and not p.name.startswith(("LICENSE", "SOURCES")))
STREAMED = [p for p in SAMPLES if scan(p).streams]


def outcome(read) -> tuple:
    """What reading gave: the parsed file's format and frames (a spill read back), or the refusal."""
    try:
        parsed: ParsedFile = read()
    except ParseError as exc:
        return ("refused", str(exc))
    return ("read", parsed.format, parsed.lines, parsed.controls, parsed.problems, parsed.statements)


def assert_same(streamed: tuple, whole: tuple) -> None:
    assert streamed[:2] == whole[:2]
    for got, want in zip(streamed[2:], whole[2:]):
        assert_frame_equal(got, want)


def streamed(path: Path, chunk_rows: int, spill: Path) -> tuple:
    scanned = scan(path)
    return outcome(lambda: parse_path(path, scanned.streams, chunk_rows=chunk_rows, spill=spill))


def test_the_corpus_mostly_streams() -> None:
    """Most real statements are UTF-8 and take the streamed path (the others, ISO-8859-1
    MT940s, are decoded whole as before)."""
    assert len(STREAMED) >= len(SAMPLES) - 8
    assert {p.parent.name for p in STREAMED} == {"bai2", "camt053", "mt940"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_a_real_statement_streamed_is_the_statement_read_whole(sample: Path, tmp_path: Path) -> None:
    spill = tmp_path / "spill.parquet"
    got = streamed(sample, 2, spill)
    assert_same(got, outcome(lambda: parse_bytes(sample.read_bytes(), sample.name)))
    if got[0] == "read" and sample in STREAMED:  # the lines went to the spill, two at a time
        assert spill.exists()
        assert pl.read_parquet(spill).height == got[2].height


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(STREAMED),
    endings=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=4),
    bom=st.booleans(),
    cut=st.none() | st.floats(0.05, 0.95),
    chunk_rows=st.integers(1, 40),
)
def test_any_line_endings_cut_or_chunking_read_alike(
    sample: Path, endings: list[str], bom: bool, cut: float | None, chunk_rows: int
) -> None:
    """A real statement rewritten with mixed line endings, a byte-order mark, cut short
    (a truncated file), and read a random number of lines at a time: the stream gives what
    the whole text gives."""
    lines = sample.read_bytes().decode("utf-8-sig").splitlines()
    text = "".join(line + endings[i % len(endings)] for i, line in enumerate(lines))
    data = ("\ufeff" if bom else "").encode() + text.encode()
    if cut is not None:
        data = data[: int(len(data) * cut)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / sample.name
        path.write_bytes(data)
        got = streamed(path, chunk_rows, Path(folder) / "spill.parquet")
    assert_same(got, outcome(lambda: parse_bytes(data, sample.name)))


@given(st.text(alphabet=st.sampled_from("ab:\n\r\x0b\x0c\x1c\x85\u2028"), max_size=60))
def test_text_lines_are_splitlines(text: str) -> None:
    assert list(text_lines(text)) == text.splitlines()


def _mt940(n: int) -> str:
    entries = "".join(
        f":61:2603020302C{100 + i % 900},{i % 100:02d}NTRFref{i:08d}//BANK{i:08d}\n"
        f":86:/EREF/e2e-{i:08d}/REMI/PAYMENT FOR ORDER ord_{i:08d} AND SOME TEXT\n"
        for i in range(n)
    )
    return f":20:STMT1\n:25:DE89370400440532013000\n:28C:1/1\n:60F:C260302EUR0,00\n{entries}:62F:C260302EUR0,00\n"


def _bai2(n: int) -> str:
    details = "".join(
        f"16,195,{10_000 + i},0,BANK{i:08d},ref{i:08d}/\n88,PAYMENT FOR ORDER ord_{i:08d} AND SOME TEXT\n"
        for i in range(n)
    )
    return (
        "01,071000013,CLEARLINE,260302,0600,1,,,2/\n02,CLEARLINE,071000013,1,260302,2400,USD,2/\n"
        f"03,8833004455,USD,010,0,,,015,0,,/\n{details}49,0,0/\n98,0,1,0/\n99,0,1,0/\n"
    )


def _camt053(n: int) -> str:
    entries = "".join(
        f"<Ntry><Amt Ccy='EUR'>{100 + i % 900}.{i % 100:02d}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>"
        f"<BookgDt><Dt>2026-03-02</Dt></BookgDt><ValDt><Dt>2026-03-02</Dt></ValDt><AcctSvcrRef>BANK{i:08d}</AcctSvcrRef>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>e2e-{i:08d}</EndToEndId></Refs>"
        f"<RmtInf><Ustrd>PAYMENT FOR ORDER ord_{i:08d}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>\n"
        for i in range(n)
    )
    balance = (
        "<Bal><Tp><CdOrPrtry><Cd>{}</Cd></CdOrPrtry></Tp><Amt Ccy='EUR'>0.00</Amt>"
        "<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-03-02</Dt></Dt></Bal>"
    )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'><BkToCstmrStmt>"
        "<GrpHdr><MsgId>M1</MsgId></GrpHdr><Stmt><Id>S1</Id><ElctrncSeqNb>1</ElctrncSeqNb>"
        f"<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>"
        f"{balance.format('OPBD')}{balance.format('CLBD')}\n{entries}</Stmt></BkToCstmrStmt></Document>\n"
    )


def _peak(path: Path, spill: Path) -> tuple[ParsedFile, int]:
    """The parsed file and the Python heap's peak while it was parsed, 1,000 lines at a time."""
    tracemalloc.start()
    try:
        parsed = parse_path(path, scan(path).streams, chunk_rows=1_000, spill=spill)
        return parsed, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("fmt", "write"), [("mt940", _mt940), ("bai2", _bai2), ("camt053", _camt053)])
def test_parsing_a_large_statement_holds_a_chunk_not_the_file(fmt: str, write, tmp_path: Path) -> None:
    """A statement of 10,000 entries and one of 40,000, read 1,000 lines at a time: the
    Python heap's peak while parsing does not grow with the file (measured: 1.5 to 2 MB
    for either), and for the larger one stays under three quarters of the file. Reading the text whole
    costs the text itself and, before issue 15, one object per line and entry besides
    (tens of times the file)."""
    peaks, sizes = [], []
    for n in (10_000, 40_000):
        path = tmp_path / f"{n}.{fmt}"
        path.write_text(write(n), encoding="utf-8")
        parsed, peak = _peak(path, tmp_path / f"{n}.parquet")
        assert (parsed.format, parsed.line_count) == (fmt, n)
        peaks.append(peak)
        sizes.append(path.stat().st_size)
    assert peaks[1] < 1.5 * peaks[0], f"{fmt}: peak {peaks} B for {sizes} B statements"
    assert peaks[1] < sizes[1] * 0.75, f"{fmt}: peak {peaks[1]:,} B while parsing a {sizes[1]:,} B statement"
