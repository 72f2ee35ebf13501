"""Bank statements in the three formats the platform's banks send: BAI2, camt.053, MT940.

The world generator produces bank lines as a table; reconciliation must read what banks
really deliver. Each operating account in `configs/platform.yaml` (`bank_accounts`) names its
statement format, and this module writes one statement per account per day that has
lines (a day without movements gets no statement; the next statement opens at the last
closing balance). Balances chain: a statement opens at the previous one's closing
balance, starting from the opening balance given for the account, and
opening + credits - debits = closing in every file.

Amounts are integer minor units inside and are formatted from those integers only.
Creation timestamps are the morning after the statement day (06:00 UTC), so the same
world always writes byte-identical files.

A generated world can leave one statement out (`drop_statement`) and tamper with one
statement's balances (`tamper_balance`), which balance continuity must find
(pipelines/world/discrepancies.py chooses them and records the truth).

Files: `<out_dir>/<currency>/<account>_<YYYYMMDD>.<bai|xml|sta>`, out_dir being the world's `bank/`. References a format
cannot carry (a delimiter inside a BAI2 reference, an MT940 bank reference over 16 or a
camt.053 one over 35 characters) raise ValueError instead of being cut. BAI2 and MT940
readers strip line ends, so text should carry no trailing whitespace.

bai2 (USD): 01 file header (sender = routing number, receiver = CUSTOMER_ID, version 2),
    02 group header (as-of date = statement day, status 1, modifier 2 final previous day),
    03 account with summaries 010 opening ledger, 015 closing ledger, 100 total credits and
    400 total debits with item counts, one 16 per line (amount in cents, unsigned, type
    code from BAI2_TYPE_CODES by kind and direction, bank reference, customer reference)
    with its text on an 88 continuation, then 49/98/99 trailers whose control totals and
    record counts are what the BAI2 checks expect. Funds type is 0 (immediate) or, when
    the value date differs from the booking date, V with that value date.

camt053 (EUR): ISO 20022 camt.053.001.08 Document/BkToCstmrStmt with GrpHdr, one Stmt
    (Id, ElctrncSeqNb, CreDtTm, FrToDt, Acct with IBAN, currency, owner and servicer BIC),
    Bal OPBD and CLBD, TxsSummry (count and sum of all, credit and debit entries, net
    entry) and one Ntry per line: Amt, CdtDbtInd, Sts BOOK, BookgDt, ValDt, AcctSvcrRef =
    bank_reference, BkTxCd domain/family/sub-family from CAMT_BANK_TRANSACTION_CODES,
    NtryDtls/TxDtls with Refs/EndToEndId = customer_reference (NOTPROVIDED when empty) and
    RmtInf/Ustrd = text (in 140-character pieces). Valid against the camt.053.001.08 XSD.

mt940 (GBP): :20: :25: (IBAN) :28C: (statement/sequence) :60F: then per line a :61:
    (value date YYMMDD, entry date MMDD, C/D, amount with decimal comma, NTRF or NCHG,
    customer reference or NONREF when it does not fit 16 characters, //bank reference)
    and a :86: of `/EREF/<customer_reference>/REMI/<text>` wrapped at 65 characters (the
    full reference always survives here), then :62F:.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import polars as pl
from lxml import etree

from clearline.currency import EXPONENT, minor_to_decimal

Row = dict[str, Any]

CUSTOMER_ID = "CLEARLINE"
ACCOUNT_OWNER = "Clearline Payments Ltd"
CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"

# (kind, is_credit) -> BAI2 detail type code; anything else is a miscellaneous credit or debit.
BAI2_TYPE_CODES = {
    ("processor_payout", True): "165",  # preauthorized ACH credit
    ("buyer_repayment", True): "195",  # incoming money transfer
    ("other", True): "399",  # miscellaneous credit
    ("processor_payout", False): "455",  # preauthorized ACH debit
    ("buyer_repayment", False): "469",  # miscellaneous ACH debit (a returned repayment)
    ("merchant_payout", False): "495",  # outgoing money transfer
    ("fee", False): "698",  # miscellaneous fees
}
_BAI2_MISC = {True: "399", False: "699"}

# (kind, is_credit) -> ISO 20022 bank transaction code (domain, family, sub-family).
CAMT_BANK_TRANSACTION_CODES = {
    ("processor_payout", True): ("PMNT", "RCDT", "ESCT"),
    ("buyer_repayment", True): ("PMNT", "RCDT", "ESCT"),
    ("processor_payout", False): ("PMNT", "RDDT", "ESDD"),
    ("merchant_payout", False): ("PMNT", "ICDT", "ESCT"),
    ("fee", False): ("ACMT", "MDOP", "CHRG"),
}
_CAMT_OTHER = {True: ("PMNT", "RCDT", "OTHR"), False: ("PMNT", "ICDT", "OTHR")}


@dataclass(frozen=True)
class Statement:
    """One account's movements on one day, with the balance it opens at."""

    account: dict[str, str]
    currency: str
    day: date
    sequence: int
    opening_minor: int
    entries: tuple[Row, ...]

    @property
    def credits(self) -> list[int]:
        return [e["amount_minor"] for e in self.entries if e["amount_minor"] >= 0]

    @property
    def debits(self) -> list[int]:
        return [-e["amount_minor"] for e in self.entries if e["amount_minor"] < 0]

    @property
    def closing_minor(self) -> int:
        return self.opening_minor + sum(self.credits) - sum(self.debits)

    @property
    def created_at(self) -> datetime:
        return datetime.combine(self.day + timedelta(days=1), time(6, 0))


def write_bank_statements(
    bank_lines: pl.DataFrame,
    opening_balances: dict[str, int],
    accounts_cfg: dict[str, dict[str, str]],
    out_dir: Path,
) -> list[Path]:
    """Write every account's daily statements under `out_dir/<currency>/` and list them
    (`daily_statements`, then `write_statements`)."""
    return write_statements(daily_statements(bank_lines, opening_balances, accounts_cfg), out_dir)


def daily_statements(
    bank_lines: pl.DataFrame, opening_balances: dict[str, int], accounts_cfg: dict[str, dict[str, str]]
) -> list[Statement]:
    """Every account's daily statements, each opening at the previous closing balance.

    `bank_lines`: account_currency, line_id, booking_date, value_date, amount_minor
    (+ credit, - debit), currency, bank_reference, customer_reference, text, kind.
    `opening_balances`: minor units per account currency at the start of the world.
    `accounts_cfg`: `bank_accounts` from configs/platform.yaml (format, bank, account, ...).
    """
    unknown = set(bank_lines["account_currency"].unique().to_list()) - set(accounts_cfg)
    if unknown:
        raise ValueError(f"bank lines for accounts not in the configuration: {sorted(unknown)}")
    out = []
    for currency, account in accounts_cfg.items():
        lines = bank_lines.filter(pl.col("account_currency") == currency)
        if lines.height == 0:
            continue
        foreign = set(lines["currency"].unique().to_list()) - {currency}
        if foreign:
            raise ValueError(f"{currency} account has lines in {sorted(foreign)}")
        out.extend(_statements(lines, currency, account, opening_balances[currency]))
    return out


def write_statements(statements: list[Statement], out_dir: Path) -> list[Path]:
    """Each statement as a file in its account's format, `out_dir/<currency>/<account>_<day>.<suffix>`."""
    paths = []
    for statement in statements:
        render, suffix = _FORMATS[statement.account["format"]]
        path = out_dir / statement.currency / f"{statement.account['account']}_{statement.day:%Y%m%d}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(statement))
        paths.append(path)
    return paths


def drop_statement(statements: list[Statement], gone: Statement) -> list[Statement]:
    """The statements without one (a statement day the bank never delivered): the others
    keep their sequence numbers and balances, so the next one opens where the missing
    one closed."""
    return [s for s in statements if s is not gone]


def tamper_balance(statements: list[Statement], tampered: Statement, delta_minor: int) -> list[Statement]:
    """The statements with one statement's stated balances moved by `delta_minor`, opening
    and closing alike: the file adds up, so only its neighbours show it."""
    return [replace(s, opening_minor=s.opening_minor + delta_minor) if s is tampered else s for s in statements]


def _statements(lines: pl.DataFrame, currency: str, account: dict[str, str], opening: int) -> Iterator[Statement]:
    """Daily statements in booking order, each opening at the previous closing balance."""
    balance = opening
    rows = lines.sort("booking_date", maintain_order=True).iter_rows(named=True)  # one pass, not a query a day
    for sequence, (day, day_rows) in enumerate(groupby(rows, key=itemgetter("booking_date")), 1):
        statement = Statement(account, currency, day, sequence, balance, tuple(day_rows))
        balance = statement.closing_minor
        yield statement


def _require_fit(value: str, what: str, *, max_len: int | None = None, forbidden: str = "") -> str:
    """Refuse a value the format cannot carry, rather than cut a reference silently."""
    if (max_len is not None and len(value) > max_len) or any(char in value for char in forbidden):
        raise ValueError(f"{what} {value!r} does not fit (max {max_len} characters, none of {forbidden!r})")
    return value


# --- BAI2 -----------------------------------------------------------------------------


def bai2_bytes(statement: Statement) -> bytes:
    """The statement as a BAI2 file with one group and one account."""
    account = statement.account
    details = [record for entry in statement.entries for record in _bai2_detail(entry)]
    summaries = [statement.opening_minor, statement.closing_minor, sum(statement.credits), sum(statement.debits)]
    control = sum(summaries) + sum(abs(e["amount_minor"]) for e in statement.entries)
    account_records = [_bai2_account(statement), *details]
    account_records.append(f"49,{control},{len(account_records) + 1}/")
    day, created = statement.day, statement.created_at
    group = [
        f"02,{CUSTOMER_ID},{account['routing']},1,{day:%y%m%d},2400,{statement.currency},2/",
        *account_records,
    ]
    group.append(f"98,{control},1,{len(group) + 1}/")
    records = [
        f"01,{account['routing']},{CUSTOMER_ID},{created:%y%m%d},{created:%H%M},{statement.sequence},,,2/",
        *group,
    ]
    records.append(f"99,{control},1,{len(records) + 1}/")
    return ("\n".join(records) + "\n").encode("ascii")


def _bai2_account(statement: Statement) -> str:
    credits, debits = statement.credits, statement.debits
    return (
        f"03,{statement.account['account']},{statement.currency},"
        f"010,{statement.opening_minor},,,015,{statement.closing_minor},,,"
        f"100,{sum(credits)},{len(credits)},,400,{sum(debits)},{len(debits)},/"
    )


def _bai2_detail(entry: Row) -> list[str]:
    """A 16 record and, when there is text, the 88 continuation that carries it."""
    is_credit = entry["amount_minor"] >= 0
    code = BAI2_TYPE_CODES.get((entry["kind"], is_credit), _BAI2_MISC[is_credit])
    funds = "0" if entry["value_date"] == entry["booking_date"] else f"V,{entry['value_date']:%y%m%d},"
    bank_ref = _require_fit(entry["bank_reference"], "BAI2 bank reference", forbidden=",/\n")
    customer_ref = _require_fit(entry["customer_reference"] or "", "BAI2 customer reference", forbidden=",/\n")
    text = entry["text"] or ""
    if text.endswith("/") or "\n" in text:
        raise ValueError(f"BAI2 text cannot end in '/' or span lines: {text!r}")
    record = f"16,{code},{abs(entry['amount_minor'])},{funds},{bank_ref},{customer_ref}/"
    return [record, f"88,{text}"] if text else [record]


# --- camt.053.001.08 ------------------------------------------------------------------


def camt053_bytes(statement: Statement) -> bytes:
    """The statement as an ISO 20022 camt.053.001.08 document."""
    document = etree.Element(f"{{{CAMT_NS}}}Document", nsmap={None: CAMT_NS})
    message = _sub(document, "BkToCstmrStmt")
    created = statement.created_at.isoformat() + "+00:00"
    header = _sub(message, "GrpHdr")
    _sub(header, "MsgId", f"STMT{statement.day:%Y%m%d}{statement.currency}{statement.sequence:06d}")
    _sub(header, "CreDtTm", created)
    stmt = _sub(message, "Stmt")
    _sub(stmt, "Id", f"{statement.day:%Y%m%d}-{statement.sequence:05d}")
    _sub(stmt, "ElctrncSeqNb", str(statement.sequence))
    _sub(stmt, "CreDtTm", created)
    period = _sub(stmt, "FrToDt")
    _sub(period, "FrDtTm", f"{statement.day.isoformat()}T00:00:00+00:00")
    _sub(period, "ToDtTm", f"{statement.day.isoformat()}T23:59:59+00:00")
    _camt_account(stmt, statement)
    _camt_balance(stmt, "OPBD", statement.opening_minor, statement)
    _camt_balance(stmt, "CLBD", statement.closing_minor, statement)
    _camt_summary(stmt, statement)
    skeleton = etree.tostring(document, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    end = skeleton.rindex(b"    </Stmt>")
    entries = "".join(_camt_entry(entry, statement.currency) for entry in statement.entries).encode("utf-8")
    return skeleton[:end] + entries + skeleton[end:]


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CAMT_NS}}}{tag}", attributes)
    element.text = text
    return element


def _camt_amount(parent: etree._Element, tag: str, minor: int, currency: str) -> None:
    _sub(parent, tag, minor_to_decimal(minor, currency), Ccy=currency)


def _indicator(minor: int) -> str:
    return "CRDT" if minor >= 0 else "DBIT"


def _camt_account(stmt: etree._Element, statement: Statement) -> None:
    account = _sub(stmt, "Acct")
    _sub(_sub(account, "Id"), "IBAN", statement.account["account"])
    _sub(account, "Ccy", statement.currency)
    _sub(_sub(account, "Ownr"), "Nm", ACCOUNT_OWNER)
    institution = _sub(_sub(account, "Svcr"), "FinInstnId")
    _sub(institution, "BICFI", statement.account["bic"])
    _sub(institution, "Nm", statement.account["bank"])


def _camt_balance(stmt: etree._Element, code: str, minor: int, statement: Statement) -> None:
    balance = _sub(stmt, "Bal")
    _sub(_sub(_sub(balance, "Tp"), "CdOrPrtry"), "Cd", code)
    _camt_amount(balance, "Amt", abs(minor), statement.currency)
    _sub(balance, "CdtDbtInd", _indicator(minor))
    _sub(_sub(balance, "Dt"), "Dt", statement.day.isoformat())


def _camt_summary(stmt: etree._Element, statement: Statement) -> None:
    """TxsSummry: counts and unsigned sums of all, credit and debit entries, and the net."""
    currency = statement.currency
    credits, debits = statement.credits, statement.debits
    net = sum(credits) - sum(debits)
    summary = _sub(stmt, "TxsSummry")
    total = _sub(summary, "TtlNtries")
    _sub(total, "NbOfNtries", str(len(credits) + len(debits)))
    _sub(total, "Sum", minor_to_decimal(sum(credits) + sum(debits), currency))
    net_entry = _sub(total, "TtlNetNtry")
    _sub(net_entry, "Amt", minor_to_decimal(abs(net), currency))
    _sub(net_entry, "CdtDbtInd", _indicator(net))
    for tag, amounts in (("TtlCdtNtries", credits), ("TtlDbtNtries", debits)):
        part = _sub(summary, tag)
        _sub(part, "NbOfNtries", str(len(amounts)))
        _sub(part, "Sum", minor_to_decimal(sum(amounts), currency))


_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: str) -> str:
    """Element text as lxml writes it (&, <, > and CR escaped); refuses what XML cannot hold, as lxml does."""
    if _NOT_XML.search(text):
        raise ValueError(f"All strings must be XML compatible: no NULL bytes or control characters: {text!r}")
    return text.translate(_XML_ESCAPES)


def _camt_entry(entry: Row, currency: str) -> str:
    """One Ntry as text, exactly as lxml's pretty print writes it inside the statement: an
    entry is written from a template, not built as some twenty elements."""
    minor = entry["amount_minor"]
    is_credit = minor >= 0
    bank_ref = _xml(_require_fit(entry["bank_reference"], "camt.053 AcctSvcrRef", max_len=35))
    end_to_end = _xml(_require_fit(entry["customer_reference"] or "NOTPROVIDED", "camt.053 EndToEndId", max_len=35))
    domain, family, sub_family = CAMT_BANK_TRANSACTION_CODES.get((entry["kind"], is_credit), _CAMT_OTHER[is_credit])
    amount = f'<Amt Ccy="{_xml(currency)}">{minor_to_decimal(abs(minor), currency)}</Amt>'
    indicator = f"<CdtDbtInd>{_indicator(minor)}</CdtDbtInd>"
    text = entry["text"]
    remittance = ""
    if text:
        pieces = "".join(
            f"{_I * 7}<Ustrd>{_xml(text[start : start + 140])}</Ustrd>\n" for start in range(0, len(text), 140)
        )
        remittance = f"{_I * 6}<RmtInf>\n{pieces}{_I * 6}</RmtInf>\n"
    return (
        f"{_I * 3}<Ntry>\n"
        f"{_I * 4}{amount}\n"
        f"{_I * 4}{indicator}\n"
        f"{_I * 4}<Sts>\n{_I * 5}<Cd>BOOK</Cd>\n{_I * 4}</Sts>\n"
        f"{_I * 4}<BookgDt>\n{_I * 5}<Dt>{entry['booking_date'].isoformat()}</Dt>\n{_I * 4}</BookgDt>\n"
        f"{_I * 4}<ValDt>\n{_I * 5}<Dt>{entry['value_date'].isoformat()}</Dt>\n{_I * 4}</ValDt>\n"
        f"{_I * 4}<AcctSvcrRef>{bank_ref}</AcctSvcrRef>\n"
        f"{_I * 4}<BkTxCd>\n{_I * 5}<Domn>\n{_I * 6}<Cd>{domain}</Cd>\n{_I * 6}<Fmly>\n"
        f"{_I * 7}<Cd>{family}</Cd>\n{_I * 7}<SubFmlyCd>{sub_family}</SubFmlyCd>\n"
        f"{_I * 6}</Fmly>\n{_I * 5}</Domn>\n{_I * 4}</BkTxCd>\n"
        f"{_I * 4}<NtryDtls>\n{_I * 5}<TxDtls>\n"
        f"{_I * 6}<Refs>\n{_I * 7}<AcctSvcrRef>{bank_ref}</AcctSvcrRef>\n"
        f"{_I * 7}<EndToEndId>{end_to_end}</EndToEndId>\n{_I * 6}</Refs>\n"
        f"{_I * 6}{amount}\n"
        f"{_I * 6}{indicator}\n"
        f"{remittance}"
        f"{_I * 5}</TxDtls>\n{_I * 4}</NtryDtls>\n"
        f"{_I * 3}</Ntry>\n"
    )


_I = "  "  # one level of lxml's pretty-print indentation


# --- MT940 ----------------------------------------------------------------------------


def mt940_bytes(statement: Statement) -> bytes:
    """The statement as a SWIFT MT940 message (tag lines only, no SWIFT envelope)."""
    currency = statement.currency
    lines = [
        f":20:CL{statement.day:%y%m%d}{statement.sequence:04d}",
        f":25:{statement.account['account']}",
        f":28C:{statement.sequence}/1",
        f":60F:{_mt940_balance(statement.opening_minor, statement.day, currency)}",
    ]
    for entry in statement.entries:
        lines.extend(_mt940_entry(entry, currency))
    lines.append(f":62F:{_mt940_balance(statement.closing_minor, statement.day, currency)}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _mt940_amount(minor: int, currency: str) -> str:
    amount = minor_to_decimal(abs(minor), currency).replace(".", ",")
    if EXPONENT[currency] == 0:
        amount += ","  # the decimal comma is mandatory in MT940 amounts
    return _require_fit(amount, "MT940 amount", max_len=15)


def _mt940_balance(minor: int, day: date, currency: str) -> str:
    mark = "C" if minor >= 0 else "D"
    return f"{mark}{day:%y%m%d}{currency}{_mt940_amount(minor, currency)}"


def _mt940_entry(entry: Row, currency: str) -> list[str]:
    """The :61: statement line and its :86: information, wrapped to 65-character lines."""
    minor = entry["amount_minor"]
    mark = "C" if minor >= 0 else "D"
    code = "NCHG" if entry["kind"] == "fee" else "NTRF"
    customer_ref = entry["customer_reference"] or ""
    short_ref = customer_ref if 0 < len(customer_ref) <= 16 and "/" not in customer_ref else "NONREF"
    bank_ref = _require_fit(entry["bank_reference"], "MT940 bank reference", max_len=16, forbidden="/\n")
    statement_line = (
        f":61:{entry['value_date']:%y%m%d}{entry['booking_date']:%m%d}{mark}"
        f"{_mt940_amount(minor, currency)}{code}{short_ref}//{bank_ref}"
    )
    information = f"/EREF/{customer_ref or 'NOTPROVIDED'}/REMI/{entry['text'] or ''}"
    wrapped = _mt940_wrap(information)
    if len(wrapped) > 6:
        raise ValueError(f"MT940 :86: holds at most 6 lines of 65 characters: {information!r}")
    return [statement_line, f":86:{wrapped[0]}", *wrapped[1:]]


def _mt940_wrap(information: str) -> list[str]:
    """Lines of at most 65 characters that join back (without separator) to `information`.

    MT940 readers strip line ends and take a line opening with ":NN:" for a new tag, so a
    cut never falls just after a space or just before a colon.
    """
    lines, rest = [], information.rstrip()
    while rest:
        cut = min(65, len(rest))
        while 1 < cut < len(rest) and (rest[cut - 1] == " " or rest[cut] == ":"):
            cut -= 1
        lines.append(rest[:cut])
        rest = rest[cut:]
    return lines


_FORMATS: dict[str, tuple[Callable[[Statement], bytes], str]] = {
    "bai2": (bai2_bytes, "bai"),
    "camt053": (camt053_bytes, "xml"),
    "mt940": (mt940_bytes, "sta"),
}
