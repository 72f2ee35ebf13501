"""ISO 20022 camt.053 bank-to-customer statements (001.02 to 001.13), read with lxml.

Why lxml and not pycamt: the suite needs what pycamt does not hand back: the source line
of each entry (for the report), the TxsSummry control counts and sums, and every
statement of a multi-statement message with its own account and balances. Element paths
are namespace-agnostic (`{*}`), so every version reads alike; only booked entries (Sts or
Sts/Cd BOOK, or no status) are lines, as only they move the balances.

Hostile XML: ISO 20022 messages never carry a DOCTYPE, so a document with one (entity
declarations, external entities, a DTD) is refused whole as hostile, naming what it
declares. Nothing is resolved, loaded or silently dropped.

Signs: amounts are unsigned; CdtDbtInd CRDT is +, DBIT is -, for entries, transactions
and balances. A reversal (RvslInd true) is signed by its CdtDbtInd like any entry: ISO
20022 says the indicator already gives the reversal's own direction (CRDT with RvslInd
reverses an earlier debit), so money in is + whatever it reverses.

Dates: ISO 20022 dates are XML Schema dates, so `2017-04-01+02:00` and `2017-04-01Z` are
valid and mean the bank's calendar day 2017-04-01; a `DtTm` date-time gives its date as
written (the bank's local day, not converted to UTC).

Batched entries: one `Ntry` may carry many `TxDtls` (a batch booking: a processor payout
of many payments, a collection of direct debits). When an entry has more than one TxDtls
and each states its own amount (`Amt`, or `AmtDtls/TxAmt/Amt` before version 03), every
TxDtls becomes a line of its own (the matcher wants one line per payment the credit
carries), signed by its own CdtDbtInd (else the entry's), and the entry's amount stays a
control: entry amount = the sum of its transactions (with `Btch/NbOfTxs` as a count
control where given). Otherwise the entry is one line with the first TxDtls's references.
Charges (`Chrgs`) are information: the entry's amount is what moved; a charge booked on
its own is its own entry.

References: AcctSvcrRef of the transaction (or entry) is the bank reference; EndToEndId
(NOTPROVIDED means none) the customer reference; RmtInf/Ustrd pieces joined, or
AddtlTxInf, or AddtlNtryInf, the text.

Balances: opening is OPBD, else PRCD (previously closed booked), else the first ITBD
(interim booked: a statement continued over several pages opens with one); closing is
CLBD, else the last ITBD. The other types (CLAV, FWAV, ITAV, OPAV, INFO, proprietary
codes) are availability or information balances: tolerated, not checked.

Identity: `Stmt/Id` with `ElctrncSeqNb` (else `LglSeqNb`); the account is the IBAN or
`Othr/Id`.
"""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

from lxml import etree

from clearline.recon.intake.bank import BankFile, Sum
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.model import ParseError, Problems
from clearline.recon.intake.normalise import currency_code, minor, optional
from clearline.recon.intake.reading import TextFile

# encoding="utf-8": decode() already turned the bytes into text by the declared encoding,
# and a file streamed is UTF-8 (`reading.scan`)
_OPTIONS = dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, encoding="utf-8")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:Z|[+-]\d{2}:\d{2})?$")
_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?$")
OPENING, CLOSING, INTERIM = ("OPBD", "PRCD"), ("CLBD",), "ITBD"


def parse(text: str | TextFile, source_file: str, chunk_rows: int = CHUNK_ROWS, spill: Path | None = None) -> BankFile:
    """The statements of `text` (whole, or a file streamed), read with `iterparse`: each
    `Ntry` is read when its end tag is, then dropped from the tree, so the document is
    never whole in memory; with `spill`, the lines go to that Parquet file a chunk at a
    time (`BankFile`)."""
    out = BankFile(source_file=source_file, chunk_rows=chunk_rows, spill=spill)
    reader = _Reader(out)
    source = text.path.open("rb") if isinstance(text, TextFile) else io.BytesIO(text.encode("utf-8"))
    with source:
        try:
            for event, element in etree.iterparse(source, events=("start", "end"), **_OPTIONS):
                reader.see(event, element)
        except etree.XMLSyntaxError as exc:
            raise ParseError(f"not well-formed XML: {exc.msg}", exc.lineno) from None
    if reader.hostile:  # only now: a document that is not even well-formed is refused as that first
        raise reader.hostile
    if not reader.statements:
        raise ParseError("no BkToCstmrStmt/Stmt in the document", reader.root_line)
    return out


class _Reader:
    """What the parse has reached: the root, the statement being read (`Stmt` under
    `BkToCstmrStmt`, the Document inside an envelope or not) and the hostile DOCTYPE
    refusal, if the document has one (the rest of it is then only checked for well-formedness)."""

    def __init__(self, out: BankFile) -> None:
        self.out = out
        self.root_line: int | None = None
        self.hostile: ParseError | None = None
        self.statement: _Statement | None = None
        self.statements = 0
        self.currency = ""  # of the file's last line so far: a statement without a currency of its own takes it

    def see(self, event: str, element) -> None:
        if self.root_line is None:
            self.root_line = element.sourceline
            self.hostile = _doctype(element)
        if self.hostile is not None:
            if event == "end":
                element.clear()
            return
        name, parent = etree.QName(element).localname, element.getparent()
        in_statement = self.statement is not None and parent is self.statement.stmt
        if (
            event == "start"
            and name == "Stmt"
            and parent is not None
            and etree.QName(parent).localname == "BkToCstmrStmt"
        ):
            self.statement = _Statement(element, self.out)
            self.statements += 1
        elif event == "end" and name == "Ntry" and in_statement:
            assert self.statement is not None
            self.statement.entry(element)
            parent.remove(element)
        elif event == "end" and self.statement is not None and element is self.statement.stmt:
            self.currency = self.statement.close(self.currency)
            self.statement = None
            element.clear()
            if parent is not None:
                parent.remove(element)


def _doctype(root) -> ParseError | None:
    """A DOCTYPE in a camt.053 is hostile (XXE, entity expansion): the refusal naming what it declares."""
    info = root.getroottree().docinfo
    dtd = info.internalDTD
    if not info.doctype and dtd is None:
        return None
    declared = []
    for entity in dtd.iterentities() if dtd is not None else []:
        target = entity.system_url or entity.content or ""
        kind = "external entity" if entity.system_url else "entity"
        declared.append(f"{kind} {entity.name!r} ({target[:60]!r})")
    if info.system_url:
        declared.append(f"external DTD {info.system_url!r}")
    what = "; declares " + ", ".join(declared) if declared else ""
    return ParseError(
        f"hostile XML refused: a DOCTYPE{what}. ISO 20022 messages carry no DOCTYPE; "
        "nothing in it was resolved or loaded",
        1,
    )


def _text(element, path: str) -> str:
    found = element.find(path)
    return (found.text or "").strip() if found is not None else ""


def xml_date(value: str) -> date | None:
    """An XML Schema date (offset allowed) or date-time, as the calendar day written; None if neither."""
    match = _DATE.match(value) or _DATE_TIME.match(value)
    if not match:
        return None
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def _day(element, path: str, problems: Problems, *, required: bool = True) -> date | None:
    value = _text(element, f"{path}/{{*}}Dt") or _text(element, f"{path}/{{*}}DtTm")
    if not value and not required:
        return None
    found = xml_date(value)
    if found is None:
        problems.note(element.sourceline, f"{path.replace('{*}', '')}: {value!r} is not a date")
    return found


def _signed(
    element, amount_path: str, currency: str, what: str, problems: Problems, default_dc: str = ""
) -> int | None:
    text = _text(element, amount_path)
    amount = minor(text, currency, what, element.sourceline, problems)
    if amount is not None and amount < 0:
        problems.note(
            element.sourceline,
            f"{what}: Amt {text} is signed: camt.053 amounts are unsigned, CdtDbtInd gives the direction",
        )
        return None
    indicator = _text(element, "{*}CdtDbtInd") or default_dc
    if indicator not in ("CRDT", "DBIT"):
        problems.note(element.sourceline, f"{what}: CdtDbtInd {indicator!r} is neither CRDT nor DBIT")
        return None
    return None if amount is None else (amount if indicator == "CRDT" else -amount)


def _currency(element, path: str, fallback: str) -> str:
    amt = element.find(path)
    return currency_code(amt.get("Ccy", fallback) if amt is not None else fallback)


def _balances(stmt, stmt_ccy: str, problems: Problems) -> tuple[tuple | None, tuple | None, str]:
    """(opening, closing, currency): each balance as (line, signed amount, date) or None."""
    found: list[tuple[str, tuple]] = []
    for bal in stmt.findall("{*}Bal"):
        code = _text(bal, "{*}Tp/{*}CdOrPrtry/{*}Cd") or _text(bal, "{*}Tp/{*}CdOrPrtry/{*}Prtry")
        if code not in (*OPENING, *CLOSING, INTERIM):
            continue  # availability and information balances: tolerated, not checked
        ccy = _currency(bal, "{*}Amt", stmt_ccy)
        if stmt_ccy and ccy != stmt_ccy:
            problems.note(bal.sourceline, f"balance {code} is in {ccy}, the statement's account in {stmt_ccy}")
        found.append(
            (
                code,
                (
                    bal.sourceline,
                    _signed(bal, "{*}Amt", ccy, f"balance {code}", problems),
                    _day(bal, "{*}Dt", problems),
                    ccy,
                ),
            )
        )
    interim = [value for code, value in found if code == INTERIM]
    opening = next((value for code, value in found if code in OPENING), None)
    closing = next((value for code, value in found if code in CLOSING), None)
    if opening is None and interim and (closing is not None or len(interim) > 1):
        opening = interim.pop(0)
    if closing is None and interim:
        closing = interim[-1]
    currency = stmt_ccy or next((value[3] for _, value in found), "")
    return opening, closing, currency


class _Statement:
    """One `Stmt` read an entry at a time: its header (account, identity, balances) once
    its first `Ntry` ends (they come before the entries), each entry as it ends, its
    controls once the `Stmt` does. Problems keep the order of reading the statement whole:
    the header's, every entry's amount, then the booked entries' own (kept aside until the
    statement ends), then the controls'."""

    def __init__(self, stmt, out: BankFile) -> None:
        self.stmt, self.out = stmt, out
        self.opened = False
        self.later = Problems()  # the booked entries' problems, noted after every entry's amount
        self.booked = Sum()
        self.signed = Sum()  # every entry, booked or not (TxsSummry covers them all)
        self.credits, self.debits, self.magnitude = Sum(), Sum(), Sum()
        self.last_currency: str | None = None  # of its last line

    def _open(self) -> None:
        stmt, p = self.stmt, self.out.problems
        self.opened = True
        self.account = _text(stmt, "{*}Acct/{*}Id/{*}IBAN") or _text(stmt, "{*}Acct/{*}Id/{*}Othr/{*}Id")
        self.opening, self.closing, self.currency = _balances(stmt, currency_code(_text(stmt, "{*}Acct/{*}Ccy")), p)
        self.statement_id = _text(stmt, "{*}Id")
        self.out.open_statement(
            "camt053",
            self.account,
            self.statement_id,
            _text(stmt, "{*}ElctrncSeqNb") or _text(stmt, "{*}LglSeqNb") or None,
            stmt.sourceline,
        )

    def entry(self, ntry) -> None:
        if not self.opened:
            self._open()
        currency = _currency(ntry, "{*}Amt", self.currency)
        amount = _signed(ntry, "{*}Amt", currency, "Ntry", self.out.problems)
        self.signed.add(amount)
        self.magnitude.add(None if amount is None else abs(amount))
        if amount is None or amount >= 0:
            self.credits.add(amount)
        if amount is None or amount < 0:
            self.debits.add(amount)
        if _booked(ntry):
            self.booked.add(amount)
            _entry(ntry, currency, amount, self.out, self.later)
            self.last_currency = currency

    def close(self, last_currency: str) -> str:
        """The statement's controls and its close; the currency of the file's last line."""
        if not self.opened:
            self._open()
        out, opening, closing = self.out, self.opening, self.closing
        out.problems.items.extend(self.later.items)
        last_currency = last_currency if self.last_currency is None else self.last_currency
        stmt_ccy = self.currency or (last_currency if out.count else "")
        if opening and closing:
            out.balance(f"statement {self.statement_id}", closing[0], opening[1], closing[1], self.booked)
        out.close_statement(
            opening[1] if opening else None,
            opening[2] if opening else None,
            closing[1] if closing else None,
            closing[2] if closing else None,
            stmt_ccy,
        )
        summary = self.stmt.find("{*}TxsSummry")
        if summary is not None:
            _summary(summary, self, stmt_ccy, out)
        return last_currency


def _booked(ntry) -> bool:
    return (_text(ntry, "{*}Sts/{*}Cd") or _text(ntry, "{*}Sts") or "BOOK") == "BOOK"


def _tx_amount(tx, currency: str, default_dc: str, problems: Problems) -> int | None:
    path = "{*}Amt" if tx.find("{*}Amt") is not None else "{*}AmtDtls/{*}TxAmt/{*}Amt"
    return _signed(tx, path, _currency(tx, path, currency), "TxDtls", problems, default_dc)


def _entry(ntry, currency: str, amount: int | None, out: BankFile, p: Problems) -> None:
    """One line per booked entry, or one per transaction of a batched entry (see the module
    doc); its problems go to `p`."""
    transactions = ntry.findall("{*}NtryDtls/{*}TxDtls")
    booked, valued = _day(ntry, "{*}BookgDt", p), _day(ntry, "{*}ValDt", p, required=False)
    entry_ref, entry_text = _text(ntry, "{*}AcctSvcrRef"), _text(ntry, "{*}AddtlNtryInf")
    itemised = len(transactions) > 1 and all(
        tx.find("{*}Amt") is not None or tx.find("{*}AmtDtls/{*}TxAmt/{*}Amt") is not None for tx in transactions
    )
    if not itemised:
        tx = transactions[0] if transactions else etree.Element("TxDtls")
        out.add(*_refs(tx, entry_ref, entry_text, True), amount, currency, booked, valued, ntry.sourceline, p)
        return
    dc = _text(ntry, "{*}CdtDbtInd")
    parts = []
    for tx in transactions:
        part = _tx_amount(tx, currency, dc, p)
        parts.append(part)
        out.add(*_refs(tx, entry_ref, entry_text), part, currency, booked, valued, tx.sourceline, p)
    name = f"Ntry {entry_ref or ntry.sourceline}"
    out.control(f"{name} amount = sum of its TxDtls", ntry.sourceline, amount, None if None in parts else sum(parts))
    count = _text(ntry, "{*}NtryDtls/{*}Btch/{*}NbOfTxs")
    if count:
        out.control(
            f"{name} Btch/NbOfTxs = number of its TxDtls",
            ntry.sourceline,
            int(count) if count.isdigit() else None,
            len(transactions),
        )


def _refs(tx, entry_ref: str, entry_text: str, entry_first: bool = False) -> tuple[str | None, str | None, str | None]:
    """Bank reference, customer reference and text of a transaction: an entry that is one
    line keeps the entry's AcctSvcrRef first, a transaction of a batch its own."""
    own = _text(tx, "{*}Refs/{*}AcctSvcrRef")
    bank_ref = (entry_ref or own) if entry_first else (own or entry_ref)
    end_to_end = _text(tx, "{*}Refs/{*}EndToEndId")
    remittance = "".join(u.text or "" for u in tx.findall("{*}RmtInf/{*}Ustrd"))
    text = optional(remittance) or optional(_text(tx, "{*}AddtlTxInf")) or optional(entry_text)
    return optional(bank_ref), None if end_to_end == "NOTPROVIDED" else optional(end_to_end), text


def _summary(summary, read: _Statement, currency: str, out: BankFile) -> None:
    """TxsSummry, where the bank gives it: counts and unsigned sums of all, credit and
    debit entries (booked or not: the summary covers the statement), and the signed net."""
    p = out.problems
    debits = Sum(None if read.debits.total is None else -read.debits.total, read.debits.count)
    parts = {"TtlNtries": read.magnitude, "TtlCdtNtries": read.credits, "TtlDbtNtries": debits}
    for tag, amounts in parts.items():
        part = summary.find(f"{{*}}{tag}")
        if part is None:
            continue
        count = _text(part, "{*}NbOfNtries")
        if count:
            out.control(
                f"TxsSummry/{tag}/NbOfNtries", part.sourceline, int(count) if count.isdigit() else None, amounts.count
            )
        total = _text(part, "{*}Sum")
        if total:
            out.control(
                f"TxsSummry/{tag}/Sum",
                part.sourceline,
                minor(total, currency, f"{tag}/Sum", part.sourceline, p),
                amounts.total,
            )
    # TtlNetNtry (Amt, CdtDbtInd) from version 04; TtlNetNtryAmt beside TtlNtries/CdtDbtInd before
    net, path = summary.find("{*}TtlNtries/{*}TtlNetNtry"), "{*}Amt"
    if net is None and summary.find("{*}TtlNtries/{*}TtlNetNtryAmt") is not None:
        net, path = summary.find("{*}TtlNtries"), "{*}TtlNetNtryAmt"
    if net is not None:
        out.control(
            "TxsSummry/TtlNtries/TtlNetNtry",
            net.sourceline,
            _signed(net, path, currency, "TtlNetNtry", p),
            read.signed.total,
        )
