"""Intake reads a report from its file as a stream and says exactly what reading it whole says.

`reading.scan` hashes a file and checks its UTF-8 in one pass a block at a time; a report
it passes is parsed from the file (`parse.parse_path`), never held whole as bytes or
text. Whatever the bytes, scan must agree with `reading.decode` on which files can be
read so (the others are read whole and refused or read exactly as before), and a report
with a byte-order mark or CRLF endings must give the lines, line numbers and verdict
it gives read whole. Real files: a generated world's reports.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from clearline.recon.intake import reading
from clearline.recon.intake.model import ParseError
from clearline.recon.intake.parse import parse_bytes, parse_path
from clearline.recon.intake.reading import decode, scan
from clearline.recon.intake.suites import validate_many
from tests.recon.test_intake_chunks import reports  # noqa: F401  (the fixture: a generated world's reports)


def _streams_by_decode(data: bytes) -> bool:
    """What `decode` says: the file is UTF-8 text (no other encoding declared, no NUL, not blank)."""
    declared = reading._XML_DECLARATION.match(data)
    if declared and reading.codecs_name(declared.group(1).decode("ascii")) != "utf-8":
        return False
    try:
        decode(data)
    except ParseError:
        return False
    return True


pieces = st.sampled_from(
    [b"", b"\xef\xbb\xbf", b"\x00", b"\xff", b"\xc3", b"\xc3\xa9", b"\r\n", b" ", b"a,b\n", b"\xe2\x82\xac"]
    + [b'<?xml version="1.0" encoding="ISO-8859-1"?>', b'<?xml version="1.0" encoding="utf-8"?>']
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.one_of(pieces, st.binary(max_size=8)), max_size=12), block=st.sampled_from([1, 2, 3, 64]))
def test_scan_hashes_the_bytes_and_agrees_with_decode(tmp_path, parts, block, monkeypatch) -> None:
    """In blocks of any size (a character split between blocks included), scan's hash is
    the file's SHA-256 and it streams exactly the files `decode` reads as UTF-8."""
    monkeypatch.setattr(reading, "BLOCK", block)
    data = b"".join(parts)
    path = tmp_path / "file"
    path.write_bytes(data)
    found = scan(path)
    assert found.sha256 == hashlib.sha256(data).hexdigest()
    assert found.streams == _streams_by_decode(data)


@pytest.mark.parametrize("processor", ["adyen", "stripe", "checkoutcom"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_a_report_read_as_a_stream_says_what_it_says_read_whole(reports, tmp_path, processor, bom, ending) -> None:
    data = bom + reports[processor].read_bytes().replace(b"\r\n", b"\n").replace(b"\n", ending)
    path = tmp_path / f"{processor}.csv"
    path.write_bytes(data)
    scanned = scan(path)
    assert scanned.streams
    whole = parse_bytes(data, path.name, path)
    streamed = parse_path(path, scanned.streams, chunk_rows=7, spill=tmp_path / "spill.parquet")
    assert streamed.spill is not None and streamed.line_count == whole.lines.height > 7
    for part in ("lines", "controls", "problems"):
        assert_frame_equal(getattr(streamed, part), getattr(whole, part))
    assert validate_many([streamed]) == validate_many([whole])


def test_a_report_that_is_not_utf8_is_read_whole_and_refused_as_before(reports, tmp_path) -> None:
    """A Latin-1 byte in a report: scan does not stream it, and parse_path refuses it with
    decode's error naming the line, as reading it whole does."""
    # line 4 starts with the byte
    data = reports["stripe"].read_bytes().replace(b"\n", b"\n\xe9", 3).replace(b"\n\xe9", b"\n", 2)
    path = tmp_path / "latin.csv"
    path.write_bytes(data)
    scanned = scan(path)
    assert not scanned.streams
    with pytest.raises(ParseError) as streamed:
        parse_path(path, scanned.streams)
    with pytest.raises(ParseError) as whole:
        parse_bytes(data, path.name, path)
    assert (streamed.value.line_no, streamed.value.reason) == (whole.value.line_no, whole.value.reason)
    assert whole.value.line_no == 4 and "not valid UTF-8: byte 0xe9" in whole.value.reason
