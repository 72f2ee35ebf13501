"""BAI2 cash management files, read with the `bai2` package (PyPI, maintained).

The package parses with its integrity checks off: control totals and record counts are
recomputed here and handed to the suite as controls (49 account, 98 group, 99 file), so a
broken total quarantines the file with a report naming the trailer line instead of
failing the parse. Amounts are in the currency's minor units already (BAI2 has implied
decimals); a group or account without a currency is in USD, as the BAI2 specification
says. A detail's sign is its type code's direction (credit +, debit -), checked against the
account's 100 (total credits) and 400 (total debits) summaries where given; its booking date
is the group's as-of date, its value date the availability date of funds type V.
"""

from __future__ import annotations

from collections.abc import Iterator

from bai2 import bai2
from bai2.exceptions import IntegrityException, NotSupportedYetException, ParsingException

from clearline.recon.intake.bank import BankFile
from clearline.recon.intake.model import ParseError
from clearline.recon.intake.normalise import currency_code, optional

DEFAULT_CURRENCY = "USD"


class _Numbered:
    """The file's non-empty lines for the parser, remembering where it got to."""

    def __init__(self, text: str) -> None:
        self.numbers = [i for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        self.lines = [line.strip() for line in text.splitlines() if line.strip()]
        self.consumed = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            self.consumed += 1
            yield line


def parse(text: str, source_file: str) -> BankFile:
    numbered = _Numbered(text)
    if not numbered.lines[-1].startswith("99,"):
        raise ParseError(
            f"the file ends without its 99 file trailer (last record {numbered.lines[-1][:3]!r}): truncated",
            numbered.numbers[-1],
        )
    try:
        parsed = bai2.parse_from_lines(numbered, check_integrity=False)
    except (
        ParsingException,
        NotSupportedYetException,
        IntegrityException,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        TypeError,
        StopIteration,
    ) as exc:  # what the package raises on bad input
        line = numbered.numbers[max(numbered.consumed - 1, 0)]
        raise ParseError(f"not a readable BAI2 file: {exc or type(exc).__name__}", line) from None
    if numbered.consumed < len(numbered.lines):
        raise ParseError("records after the 99 file trailer", numbered.numbers[numbered.consumed])
    out = BankFile(source_file=source_file)
    position = len(parsed.header.rows)  # records read so far, in document order
    group_totals = []
    for group in parsed.children:
        position += len(group.header.rows)
        account_totals = []
        for account in group.children:
            header_line, first = numbered.numbers[position], len(out.lines)
            position += len(account.header.rows)
            currency = currency_code(account.header.currency or group.header.currency or DEFAULT_CURRENCY)
            number = account.header.customer_account_number
            out.open_statement("bai2", number, group.header.as_of_date.isoformat(), None, header_line)
            for detail in account.children:
                line_no = numbered.numbers[position]
                position += len(detail.rows)
                sign = 1 if detail.type_code.transaction.value == "credit" else -1
                if detail.amount < 0:
                    out.problems.note(
                        line_no,
                        f"16 amount {detail.amount} is signed: BAI2 amounts are unsigned, "
                        f"the type code {detail.type_code.code} gives the direction",
                    )
                value = (
                    (detail.availability or {}).get("date")
                    if detail.funds_type and detail.funds_type.value == "V"
                    else None
                )
                out.add(
                    optional(detail.bank_reference),
                    optional(detail.customer_reference),
                    optional(detail.text),
                    sign * detail.amount,
                    currency,
                    group.header.as_of_date,
                    value,
                    line_no,
                )
            summaries = {s.type_code.code: (s.amount, s.item_count) for s in account.header.summary_items}
            mine = out.lines[first:]
            for code, direction in (("100", "credits"), ("400", "debits")):
                if code in summaries:
                    amounts = [d.amount for d in account.children if d.type_code.transaction.value == direction[:-1]]
                    out.control(
                        f"03 account {number} {code} total {direction} = sum of {direction[:-1]} details",
                        header_line,
                        summaries[code][0],
                        sum(amounts),
                    )
                    if summaries[code][1] is not None:
                        out.control(
                            f"03 account {number} {code} number of {direction} = count of {direction[:-1]} details",
                            header_line,
                            summaries[code][1],
                            len(amounts),
                        )
            if "010" in summaries and "015" in summaries:
                out.balance(
                    f"03 account {number} (010 opening, 015 closing ledger)",
                    header_line,
                    summaries["010"][0],
                    summaries["015"][0],
                    [line.amount.minor for line in mine],
                )
            out.close_statement(
                summaries.get("010", (None,))[0],
                group.header.as_of_date,
                summaries.get("015", (None,))[0],
                group.header.as_of_date,
                currency,
            )
            computed = sum(s.amount or 0 for s in account.header.summary_items) + sum(
                d.amount for d in account.children
            )
            trailer_line = numbered.numbers[position]
            out.control(
                f"49 account {number} control total", trailer_line, account.trailer.account_control_total, computed
            )
            out.control(
                f"49 account {number} number of records",
                trailer_line,
                account.trailer.number_of_records,
                len(account.rows),
            )
            account_totals.append(computed)
            position += len(account.trailer.rows)
        trailer_line = numbered.numbers[position]
        out.control("98 group control total", trailer_line, group.trailer.group_control_total, sum(account_totals))
        out.control("98 group number of accounts", trailer_line, group.trailer.number_of_accounts, len(group.children))
        out.control("98 group number of records", trailer_line, group.trailer.number_of_records, len(group.rows))
        group_totals.append(sum(account_totals))
        position += len(group.trailer.rows)
    trailer_line = numbered.numbers[position]
    out.control("99 file control total", trailer_line, parsed.trailer.file_control_total, sum(group_totals))
    out.control("99 file number of groups", trailer_line, parsed.trailer.number_of_groups, len(parsed.children))
    out.control("99 file number of records", trailer_line, parsed.trailer.number_of_records, len(parsed.rows))
    return out
