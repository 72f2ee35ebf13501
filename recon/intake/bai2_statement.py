"""BAI2 cash management files into bank lines and statements (records read by `bai2_records`).

Structure: a file (01 … 99) holds groups (02 … 98), a group accounts (03 … 49), an account
its details (16); any record may be continued by 88s. Each account of a group is one
statement.

Control totals, as BAI2 defines them, all recomputed here and handed to the suite as
controls, so a wrong total quarantines the file with a report naming the trailer line:

* 49 account control total = the algebraic sum of every amount in the account's 03 (its
  summary and status amounts, signed as written) and 16 records (detail amounts, unsigned);
  funds-type availability amounts (S, D) and item counts are not amounts and do not count;
  49 number of records = the account's 03, 16, 88 and 49 records;
* 98 group control total = the sum of its accounts' control totals; number of accounts;
  number of records = its 02, 98 and every account record;
* 99 file control total = the sum of its groups' control totals; number of groups; number
  of records = every record of the file, 01 and 99 included.

An account's 010 opening ledger plus its details must equal its 015 closing ledger (for
an account reported without details: 010 + 100 total credits - 400 total debits = 015).
The 03 summaries are not otherwise compared with the details: BAI2 does not make them
controls (a summary may count items the bank does not itemise, and banks' own type codes
put items in other summaries), and both the specification's own example and real files
differ there.

Amounts are in the currency's minor units already (BAI2 has implied decimals); a group or
account without a currency is in USD, as the BAI2 specification says. A detail's sign is
its type code's direction: 100–399 and 920–959 credit (+), 400–699 and 960–999 debit (-),
the loan codes by the BAI2 table; other codes (status, 890 non-monetary information) move
no money: a non-zero amount under one is a problem. Booking date is the group's as-of
date; value date the funds-type V date, else the as-of date.

Funds types: 0, 1, 2 (availability in days), Z (unknown) and blank carry nothing more;
V a value date and time; S three amounts (immediate, one-day, two-or-more-day); D a
count and that many (days, amount) pairs. Anything else is a problem on the line.

Identity: the account number; `statement_id` the group's as-of date (ISO); `sequence`
its as-of-date modifier where given (1 interim previous-day, 2 final previous-day, 3
interim same-day, 4 final same-day). The 01 file id is not part of it: a bank re-sending
a day's report gives the file a new id, and the account's day is what is re-sent.

Read in two passes over the file's lines, neither holding the text or its records: the
first finds the last record (a file without its 99 trailer is truncated, whatever else is
wrong with it), the second walks the structure a record at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from clearline.recon.intake.bai2_records import FUNDS_TYPES, Record, funds_extra, records
from clearline.recon.intake.bank import BankFile, Sum
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.model import ParseError, Problems
from clearline.recon.intake.normalise import currency_code, optional
from clearline.recon.intake.reading import TextFile, text_lines

DEFAULT_CURRENCY = "USD"
_LOAN_CREDITS = {706, 708, *range(720, 729)}
_LOAN_DEBITS = {760}


def direction(type_code: str) -> int | None:
    """+1 credit, -1 debit, None for a code that moves no money."""
    if not type_code.isdigit():
        return None
    code = int(type_code)
    if 100 <= code <= 399 or 920 <= code <= 959 or code in _LOAN_CREDITS:
        return 1
    if 400 <= code <= 699 or 960 <= code <= 999 or code in _LOAN_DEBITS:
        return -1
    return None


def _number(text: str, what: str, line_no: int, problems: Problems) -> int | None:
    text = text.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isdigit():
        problems.note(line_no, f"{what}: {text!r} is not a BAI2 amount (digits, an optional sign)")
        return None
    return int(text)


def _yymmdd(text: str, what: str, line_no: int, problems: Problems) -> date | None:
    try:
        return datetime.strptime(text.strip(), "%y%m%d").date()
    except ValueError:
        problems.note(line_no, f"{what}: {text.strip()!r} is not a date (YYMMDD)")
        return None


@dataclass
class _Summary:
    code: str
    amount: int | None
    count: int | None


def _summaries(fields: list[str], line_no: int, problems: Problems) -> list[_Summary]:
    """03 summaries: type code, amount, item count, funds type and its extra fields."""
    out, i = [], 0
    while i < len(fields):
        code, amount, count = (fields[i : i + 3] + ["", "", ""])[:3]
        funds = fields[i + 3 : i + 4]
        extra = funds_extra(fields[i + 3 :]) if funds else 0
        if funds and funds[0].strip().upper() not in FUNDS_TYPES:
            problems.note(line_no, f"03 summary {code}: funds type {funds[0]!r} is not a BAI2 funds type")
        i += 4 + (extra or 0)
        if not code.strip():
            continue  # an empty summary slot
        out.append(
            _Summary(
                code.strip(),
                _number(amount, f"03 summary {code.strip()} amount", line_no, problems) if amount.strip() else None,
                int(count) if count.strip().isdigit() else None,
            )
        )
    return out


@dataclass
class _Detail:
    type_code: str
    amount: int | None
    value_date: date | None
    bank_ref: str
    customer_ref: str
    text: str


def _detail(record: Record, problems: Problems) -> _Detail:
    body = record.body.rstrip()
    body = body[:-1] if body.endswith("/") else body
    fields = body.split(",")
    type_code, amount = (fields + ["", ""])[:2]
    rest = fields[2:]
    funds = rest[0].strip().upper() if rest else ""
    value_date = None
    if funds not in FUNDS_TYPES:
        problems.note(record.line_no, f"16 funds type {funds!r} is not a BAI2 funds type (0, 1, 2, V, S, D, Z)")
    extra = funds_extra(rest) or 0
    if funds == "V" and len(rest) > 1:
        value_date = _yymmdd(rest[1], "16 funds type V value date", record.line_no, problems)
    after = rest[1 + extra :]
    bank_ref, customer_ref = (after + ["", ""])[:2]
    text = ",".join(after[2:]).strip()
    text = " ".join(part for part in [text, *record.text_lines] if part)
    return _Detail(
        type_code.strip(),
        _number(amount, "16 amount", record.line_no, problems),
        value_date,
        bank_ref.strip(),
        customer_ref.strip(),
        text,
    )


class _Reader:
    """Walks the records in order, holding the one being looked at (and the last one read,
    which a truncated file's error names)."""

    def __init__(self, found: Iterator[Record]) -> None:
        self.found = found
        self.next: Record | None = next(found, None)
        self.last = self.next

    def peek(self) -> Record | None:
        return self.next

    def take(self, code: str, inside: str) -> Record:
        record = self.next
        if record is None:
            assert self.last is not None  # a BAI2 file opens with its 01 record (`detect`)
            raise ParseError(f"the file ends inside {inside}, without its {code} record: truncated", self.last.line_no)
        if record.code != code:
            raise ParseError(f"a {record.code} record where {inside} expects {code}", record.line_no)
        self.next = next(self.found, None)
        self.last = self.next or self.last
        return record


def _records_in(record: Record) -> int:
    return 1 + record.continuations


def parse(text: str | TextFile, source_file: str, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None) -> BankFile:
    """The statements of `text` (whole, or a file streamed); with `spill`, the lines go to
    that Parquet file a chunk at a time (`BankFile`)."""
    last = deque(records(text_lines(text)), maxlen=1)[0]
    if last.code != "99":
        raise ParseError(
            f"the file ends without its 99 file trailer (last record {last.code!r}): truncated", last.line_no
        )
    out = BankFile(source_file=source_file, chunk_rows=chunk_rows, spill=spill)
    reader = _Reader(records(text_lines(text)))
    header = reader.take("01", "the file")
    count = _records_in(header)
    group_totals: list[int] = []
    groups = 0
    while (next_record := reader.peek()) is not None and next_record.code == "02":
        total, records_in_group = _group(reader, out)
        group_totals.append(total)
        count += records_in_group
        groups += 1
    trailer = reader.take("99", "the file")
    count += _records_in(trailer)
    extra = reader.peek()
    if extra is not None:
        raise ParseError("records after the 99 file trailer", extra.line_no)
    _trailer(out, "99 file", trailer, group_totals, [("number of groups", groups), ("number of records", count)])
    return out


def _trailer(out: BankFile, name: str, record: Record, totals: list[int], counts: list[tuple[str, int]]) -> None:
    """A trailer's declared control total and counts against the recomputed ones."""
    fields = record.fields()
    p = out.problems
    computed = sum(totals)
    out.control(
        f"{name} control total",
        record.line_no,
        _number(fields[0], f"{name} control total", record.line_no, p),
        computed,
    )
    for (label, value), declared in zip(counts, fields[1:]):
        out.control(f"{name} {label}", record.line_no, _number(declared, f"{name} {label}", record.line_no, p), value)


def _group(reader: _Reader, out: BankFile) -> tuple[int, int]:
    p = out.problems
    header = reader.take("02", "the file")
    fields = header.fields() + [""] * 7
    as_of = _yymmdd(fields[3], "02 as-of date", header.line_no, p)
    currency = fields[5].strip() or DEFAULT_CURRENCY
    modifier = fields[6].strip() or None
    count = _records_in(header)
    totals: list[int] = []
    accounts = 0
    while (next_record := reader.peek()) is not None and next_record.code == "03":
        total, records_in_account = _account(reader, out, as_of, currency, modifier)
        totals.append(total)
        count += records_in_account
        accounts += 1
    trailer = reader.take("98", "a group")
    count += _records_in(trailer)
    _trailer(out, "98 group", trailer, totals, [("number of accounts", accounts), ("number of records", count)])
    return sum(totals), count


def _account(
    reader: _Reader, out: BankFile, as_of: date | None, group_currency: str, modifier: str | None
) -> tuple[int, int]:
    p = out.problems
    header = reader.take("03", "a group")
    fields = header.fields()
    number = fields[0].strip()
    currency = currency_code((fields[1] if len(fields) > 1 else "").strip() or group_currency)
    summaries = _summaries(fields[2:], header.line_no, p)
    by_code = {s.code: s for s in summaries}
    out.open_statement("bai2", number, as_of.isoformat() if as_of else "", modifier, header.line_no)
    count, signed, unsigned = _records_in(header), Sum(), 0
    while (next_record := reader.peek()) is not None and next_record.code == "16":
        record = reader.take("16", "an account")
        count += _records_in(record)
        detail = _detail(record, p)
        unsigned += detail.amount or 0
        sign = direction(detail.type_code)
        amount = detail.amount
        if amount is not None and amount < 0:
            p.note(
                record.line_no,
                f"16 amount {amount} is signed: BAI2 detail amounts are unsigned, the type code gives the direction",
            )
        if sign is None and amount:
            p.note(
                record.line_no,
                f"16 type code {detail.type_code!r} is not a credit or debit, but carries amount {amount}",
            )
        kept = out.add(
            optional(detail.bank_ref),
            optional(detail.customer_ref),
            optional(detail.text),
            None if amount is None else (sign or 1) * amount,
            currency,
            as_of,
            detail.value_date or as_of,
            record.line_no,
        )
        signed.add(kept)
    trailer = reader.take("49", "an account")
    count += _records_in(trailer)
    opening, closing = by_code.get("010"), by_code.get("015")
    name = f"03 account {number}"
    if opening and closing and opening.amount is not None:
        movement = signed
        if not signed.count:
            for code, sign in (("100", 1), ("400", -1)):
                if code in by_code:
                    movement.add((by_code[code].amount or 0) * sign)
        out.balance(
            f"{name} (010 opening, 015 closing ledger)", header.line_no, opening.amount, closing.amount, movement
        )
    out.close_statement(
        opening.amount if opening else None, as_of, closing.amount if closing else None, as_of, currency
    )
    # an empty amount field counts 0; one that cannot be read is already a problem on its line
    total = sum(s.amount or 0 for s in summaries) + unsigned
    _trailer(out, f"49 account {number}", trailer, [total], [("number of records", count)])
    return total, count
