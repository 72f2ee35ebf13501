"""BAI2 text into logical records: our own reader of the record layer.

Why not the `bai2` package any more: real files break it. Banks put several records on
one physical line (`…PPD/ 16,142,500,…`), wrap a long text onto a line of its own without
an `88`, end text records without the `/` delimiter, and use type codes of their own
(900–999); the package refuses or misreads these. The record layer is small, so intake
reads it here, following the BAI2 specification (Cash Management Balance Reporting
Specifications, version 2):

* A record starts with its two-digit code (01, 02, 03, 16, 88, 49, 98, 99) and a comma,
  at the start of a physical line or after the `/` that ends the record before it. A
  physical line that starts with no record code continues the text of the record before
  it (a wrapped line).
* `/` ends a record's fields. In a 16 the text field is last and runs to the end of the
  record, commas and slashes included (`AB/GS/0001`); a final `/` is the delimiter.
* What the format itself cannot tell apart is read the common way: a `/` at the very end
  of a text is the delimiter, and a `/` followed by a record code and a comma inside a
  text starts the next record.
* `88` continues the record before it: its fields carry on the field list (an 03's
  summaries, a 16 cut before its text) or, once a 16 has reached its text, add a line of
  text. Every 88 counts as a record in the trailers' record counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from clearline.recon.intake.model import ParseError

CODES = ("01", "02", "03", "16", "88", "49", "98", "99")
_START = re.compile(r"^\s*(01|02|03|16|88|49|98|99),")
_NEXT = re.compile(r"/\s*(?=(?:01|02|03|16|88|49|98|99),)")
# fields a funds type adds after itself: V a value date and time, S three availability
# amounts; D a count n and then n pairs of (days, amount); 0, 1, 2, Z and blank none
FUNDS_TYPES = ("", "0", "1", "2", "Z", "V", "S", "D")
# the fields of a 16 before its funds type, and after it before the text
_DETAIL_HEAD, _DETAIL_REFS = 2, 2


@dataclass
class Record:
    code: str
    line_no: int
    body: str  # the record's fields after its code, delimiter and continuations included
    continuations: int = 0  # 88 records folded into this one
    text_lines: list[str] = field(default_factory=list)  # text continued by 88s once a 16 reached its text

    def fields(self) -> list[str]:
        """The fields, the final `/` removed (for records without a text field)."""
        return _unterminated(self.body).split(",")


def _unterminated(body: str) -> str:
    body = body.rstrip()
    return body[:-1] if body.endswith("/") else body


def records(lines: Iterable[str]) -> Iterator[Record]:
    """The file's logical records in order, 88 continuations folded into their record;
    `lines` are the file's lines (`reading.text_lines`), read one at a time: a record is
    yielded once the next one starts (until then an 88 or a wrapped line may continue it)."""
    last: Record | None = None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not _START.match(line):
            if last is None:
                raise ParseError(f"not a BAI2 record: {line.strip()[:40]!r} (records start with a code and a comma)", n)
            _append_text(last, line.rstrip())
            continue
        for piece in _split(line.strip()):
            code, body = piece[:2], piece[3:]
            if code == "88":
                if last is None:
                    raise ParseError("an 88 continuation before any record", n)
                _continue(last, body)
            else:
                if last is not None:
                    yield last
                last = Record(code, n, body)
    if last is not None:
        yield last


def _split(line: str) -> list[str]:
    """A physical line's records: a `/` followed by a record code starts the next one."""
    pieces, start = [], 0
    for match in _NEXT.finditer(line):
        pieces.append(line[start : match.start() + 1])
        start = match.end()
    pieces.append(line[start:])
    return [piece for piece in pieces if piece.strip()]


def detail_complete(body: str) -> bool:
    """Whether a 16's fields reach its customer reference (what follows is text)."""
    fields = body.split(",")
    if len(fields) < _DETAIL_HEAD + 1:
        return False
    extra = funds_extra(fields[_DETAIL_HEAD:])
    return extra is not None and len(fields) >= _DETAIL_HEAD + 1 + extra + _DETAIL_REFS


def funds_extra(fields: list[str]) -> int | None:
    """How many fields follow a funds type (fields[0]); None when they are not all there yet."""
    kind = fields[0].strip().upper() if fields else ""
    if kind == "V":
        return 2
    if kind == "S":
        return 3
    if kind == "D":
        if len(fields) < 2 or not fields[1].strip().isdigit():
            return None
        return 1 + 2 * int(fields[1])
    return 0


def _continue(record: Record, body: str) -> None:
    record.continuations += 1
    if record.code == "16" and detail_complete(_unterminated(record.body)):
        record.text_lines.append(_unterminated(body).strip())
    else:
        record.body = f"{_unterminated(record.body)},{body}"


def _append_text(record: Record, line: str) -> None:
    """A wrapped physical line: the text continues without a break."""
    if record.text_lines:
        record.text_lines[-1] = record.text_lines[-1] + line
    else:
        record.body = record.body + line
