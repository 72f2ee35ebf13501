"""SWIFT MT940 statements, read with the `mt-940` package (PyPI `mt-940`, maintained).

A file may hold several statements; each (from its `:20:`) is parsed on its own so that
its opening (:60F:/:60M:) and closing (:62F:/:62M:) balances check its own lines, as a
control. Signs: the D/C mark (the package signs the amount: D and RC -, C and RD +). Value date
from :61:, booking date its entry date (the value date when
the bank leaves it out). References: the :61: bank reference after `//`; the customer
reference is the `/EREF/` field of a structured :86: (the full one: the :61: field holds
only 16 characters) or else the :61: reference unless NONREF; the text is `/REMI/` or the
whole :86:.
"""

from __future__ import annotations

import re
from decimal import Decimal

import mt940

from clearline.recon.intake.bank import BankFile
from clearline.recon.intake.model import ParseError
from clearline.recon.intake.normalise import currency_code, minor, optional

# Sign reversals too: RC (reversal of a credit) takes money out, RD puts it back; and read
# a lower-case d/c mark as its upper-case self (both off by default in mt-940 5.x).
_OPTIONS = mt940.Options(reversal_sign=True, case_insensitive_marks=True)
_STATEMENT = re.compile(r"^:20:", re.MULTILINE)
_FIELD = r"/{key}/(.*?)(?=/[A-Z]{{4}}/|$)"
_EREF, _REMI = re.compile(_FIELD.format(key="EREF")), re.compile(_FIELD.format(key="REMI"))


def parse(text: str, source_file: str) -> BankFile:
    out = BankFile(source_file=source_file)
    starts = [m.start() for m in _STATEMENT.finditer(text)]
    for start, end in zip(starts, [*starts[1:], len(text)]):
        _statement(text[start:end], text.count("\n", 0, start) + 1, source_file, out)
    return out


def _amount(value: Decimal, currency: str, what: str, line_no: int, out: BankFile) -> int | None:
    return minor(format(value, "f"), currency, what, line_no, out.problems)


def _statement(chunk: str, first_line: int, source_file: str, out: BankFile) -> None:
    lines = chunk.splitlines()
    tag_lines = [first_line + i for i, line in enumerate(lines) if line.startswith(":61:")]
    closing_at = next((first_line + i for i, line in enumerate(lines) if line.startswith((":62F:", ":62M:"))), None)
    try:
        parsed = mt940.parse(chunk, options=_OPTIONS)
        transactions = list(parsed)
    except Exception as exc:  # the package raises bare ValueErrors, RuntimeErrors and KeyErrors
        raise ParseError(f"not a readable MT940 statement: {exc}", first_line) from None
    data = parsed.data
    opening = data.get("final_opening_balance") or data.get("intermediate_opening_balance")
    closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
    if closing is None or closing_at is None:
        raise ParseError("the statement has no closing balance :62F:/:62M: (truncated?)", first_line + len(lines) - 1)
    if len(transactions) != len(tag_lines):
        raise ParseError(f"{len(tag_lines)} :61: lines but {len(transactions)} readable transactions", first_line)
    account = data.get("account_identification") or ""
    out.open_statement(
        "mt940", account, data.get("transaction_reference") or "", data.get("statement_number"), first_line
    )
    amounts = []
    for transaction, line_no in zip(transactions, tag_lines):
        t = transaction.data
        currency = currency_code(t.get("currency") or closing.amount.currency)
        amount = _amount(t["amount"].amount, currency, ":61: amount", line_no, out)
        amounts.append(amount)
        details = (t.get("transaction_details") or "").replace("\n", "")
        eref, remi = _EREF.search(details), _REMI.search(details)
        short_ref = t.get("customer_reference")
        reference = (
            optional(eref.group(1)) if eref else (None if short_ref in (None, "NONREF") else optional(short_ref))
        )
        out.add(
            optional(t.get("bank_reference")),
            None if reference == "NOTPROVIDED" else reference,
            optional(remi.group(1)) if remi else optional(details),
            amount,
            currency,
            t.get("entry_date") or t.get("date"),
            t.get("date"),
            line_no,
        )
    closing_ccy = currency_code(closing.amount.currency)
    closing_minor = _amount(closing.amount.amount, closing_ccy, ":62F: balance", closing_at, out)
    opening_minor = None
    if opening is not None:
        ccy = currency_code(opening.amount.currency)
        opening_minor = _amount(opening.amount.amount, ccy, ":60F: balance", first_line, out)
        out.balance(f"statement {data.get('transaction_reference')}", closing_at, opening_minor, closing_minor, amounts)
    out.close_statement(
        opening_minor, opening.date if opening is not None else None, closing_minor, closing.date, closing_ccy
    )
