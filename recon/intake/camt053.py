"""ISO 20022 camt.053 bank-to-customer statements, read with lxml by the schema's paths.

Why lxml and not pycamt: the suite needs what pycamt does not hand back: the source line
of each entry (for the report), the TxsSummry control counts and sums, and every
statement of a multi-statement message with its own account and balances. Element paths
are namespace-agnostic (`{*}`), so versions 02 to 08+ read alike; only booked entries
(Sts BOOK, or no status) count, as only they move the balances.

Signs: amounts are unsigned, CdtDbtInd CRDT is +, DBIT is -, for entries and balances.
References: AcctSvcrRef of the entry (or its transaction) is the bank reference;
EndToEndId (NOTPROVIDED means none) the customer reference; RmtInf/Ustrd pieces joined,
or AddtlNtryInf, the text. Opening balance OPBD (or PRCD), closing CLBD.
"""

from __future__ import annotations

from datetime import date, datetime

from lxml import etree

from clearline.recon.intake.bank import BankFile
from clearline.recon.intake.model import ParseError, Problems
from clearline.recon.intake.normalise import currency_code, minor, optional

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def parse(text: str, source_file: str) -> BankFile:
    try:
        root = etree.fromstring(text.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"not well-formed XML: {exc.msg}", exc.lineno) from None
    statements = root.findall("{*}BkToCstmrStmt/{*}Stmt")
    if not statements:
        raise ParseError("no BkToCstmrStmt/Stmt in the document", root.sourceline)
    out = BankFile()
    for stmt in statements:
        _statement(stmt, source_file, out)
    return out


def _text(element, path: str) -> str:
    found = element.find(path)
    return (found.text or "").strip() if found is not None else ""


def _day(element, path: str, problems: Problems) -> date | None:
    value = _text(element, f"{path}/{{*}}Dt") or _text(element, f"{path}/{{*}}DtTm")[:10]
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        problems.note(element.sourceline, f"{path.replace('{*}', '')}: {value!r} is not a date")
        return None


def _signed(element, currency: str, what: str, problems: Problems) -> int | None:
    amount = minor(_text(element, "{*}Amt"), currency, what, element.sourceline, problems)
    if amount is not None and amount < 0:
        problems.note(
            element.sourceline,
            f"{what}: Amt {_text(element, '{*}Amt')} is signed: camt.053 amounts are "
            "unsigned, CdtDbtInd gives the direction",
        )
        return None
    indicator = _text(element, "{*}CdtDbtInd")
    if indicator not in ("CRDT", "DBIT"):
        problems.note(element.sourceline, f"{what}: CdtDbtInd {indicator!r} is neither CRDT nor DBIT")
        return None
    return None if amount is None else (amount if indicator == "CRDT" else -amount)


def _statement(stmt, source_file: str, out: BankFile) -> None:
    p = out.problems
    account = _text(stmt, "{*}Acct/{*}Id/{*}IBAN") or _text(stmt, "{*}Acct/{*}Id/{*}Othr/{*}Id")
    stmt_ccy = _text(stmt, "{*}Acct/{*}Ccy")
    balances = {}
    for bal in stmt.findall("{*}Bal"):
        code = _text(bal, "{*}Tp/{*}CdOrPrtry/{*}Cd")
        amt = bal.find("{*}Amt")
        ccy = currency_code(amt.get("Ccy", stmt_ccy)) if amt is not None else stmt_ccy
        balances[code] = (bal.sourceline, _signed(bal, ccy, f"balance {code}", p))
    entries = stmt.findall("{*}Ntry")
    amounts = {ntry: _entry_amount(ntry, stmt_ccy, p) for ntry in entries}
    first = len(out.lines)
    for ntry in entries:
        if (_text(ntry, "{*}Sts/{*}Cd") or _text(ntry, "{*}Sts") or "BOOK") != "BOOK":
            continue
        details = ntry.find("{*}NtryDtls/{*}TxDtls")
        if details is None:
            details = etree.Element("TxDtls")
        bank_ref = _text(ntry, "{*}AcctSvcrRef") or _text(details, "{*}Refs/{*}AcctSvcrRef")
        end_to_end = _text(details, "{*}Refs/{*}EndToEndId")
        remittance = "".join(u.text or "" for u in details.findall("{*}RmtInf/{*}Ustrd"))
        currency, amount = amounts[ntry]
        out.add(
            "camt053",
            account,
            optional(bank_ref),
            None if end_to_end == "NOTPROVIDED" else optional(end_to_end),
            optional(remittance) or optional(_text(ntry, "{*}AddtlNtryInf")),
            amount,
            currency,
            _day(ntry, "{*}BookgDt", p),
            _day(ntry, "{*}ValDt", p),
            source_file,
            ntry.sourceline,
        )
    opening = balances.get("OPBD") or balances.get("PRCD")
    if opening and "CLBD" in balances:
        out.balance(
            f"statement {_text(stmt, '{*}Id')}",
            balances["CLBD"][0],
            opening[1],
            balances["CLBD"][1],
            [line.amount.minor for line in out.lines[first:]],
        )
    summary = stmt.find("{*}TxsSummry")
    if summary is not None:
        currency = currency_code(stmt_ccy) or (out.lines[-1].amount.currency if out.lines else "")
        _summary(summary, [amount for _, amount in amounts.values()], currency, out)


def _entry_amount(ntry, stmt_ccy: str, problems: Problems) -> tuple[str, int | None]:
    amt = ntry.find("{*}Amt")
    currency = currency_code(amt.get("Ccy", stmt_ccy) if amt is not None else stmt_ccy)
    return currency, _signed(ntry, currency, "Ntry", problems)


def _summary(summary, signed: list[int | None], currency: str, out: BankFile) -> None:
    """TxsSummry, where the bank gives it: counts and unsigned sums of all, credit and
    debit entries (booked or not: the summary covers the statement), and the signed net."""
    p = out.problems
    parts = {
        "TtlNtries": signed,
        "TtlCdtNtries": [a for a in signed if a is None or a >= 0],
        "TtlDbtNtries": [a for a in signed if a is None or a < 0],
    }
    for tag, amounts in parts.items():
        part = summary.find(f"{{*}}{tag}")
        if part is None:
            continue
        count = _text(part, "{*}NbOfNtries")
        if count:
            out.control(
                f"TxsSummry/{tag}/NbOfNtries", part.sourceline, int(count) if count.isdigit() else None, len(amounts)
            )
        total = _text(part, "{*}Sum")
        if total:
            out.control(
                f"TxsSummry/{tag}/Sum",
                part.sourceline,
                minor(total, currency, f"{tag}/Sum", part.sourceline, p),
                None if None in amounts else sum(abs(a) for a in amounts),
            )
    net = summary.find("{*}TtlNtries/{*}TtlNetNtry")
    if net is not None:
        out.control(
            "TxsSummry/TtlNtries/TtlNetNtry",
            net.sourceline,
            _signed(net, currency, "TtlNetNtry", p),
            None if None in signed else sum(signed),
        )
