"""Bank statements: BAI2, camt.053.001.08 and MT940 files that real parsers accept.

Each file is read back with a maintained parser (PyPI `bai2` with its integrity checks on,
`pycamt` for camt.053, `mt-940`), and amounts, references, counts, control totals and
opening + movements = closing are compared in integer minor units with the input table.
"""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import mt940
import polars as pl
import pytest
from bai2 import bai2
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from pycamt.parser import Camt053Parser

from clearline import config
from clearline.currency import decimal_to_minor
from clearline.pipelines.world.bank_files import (
    CAMT_NS,
    daily_statements,
    drop_statement,
    tamper_balance,
    write_bank_statements,
    write_statements,
)

ACCOUNTS = config.load("platform")["bank_accounts"]
DAY1 = date(2026, 1, 7)
OPENING = {"USD": 25_000_000, "EUR": -1_234_56, "GBP": 0}
LONG_TEXT = " ".join(["MERCHANT PAYOUT m_0042 SETTLEMENT WEEK 2"] * 5)  # > 140 and > 65 characters


def bank_line(
    ccy: str,
    n: int,
    amount: int,
    kind: str,
    *,
    day: date = DAY1,
    value_day: date | None = None,
    customer_reference: str = "po_1QxYz8Ab2Cd3Ef4G",
    text: str = "ADYEN PAYOUT 2026-01-07 BATCH 4001",
) -> dict:
    return {
        "account_currency": ccy,
        "line_id": f"{ccy}-{n}",
        "booking_date": day,
        "value_date": value_day or day,
        "amount_minor": amount,
        "currency": ccy,
        "bank_reference": f"{ccy[0]}{day:%m%d}{n:06d}",
        "customer_reference": customer_reference,
        "text": text,
        "kind": kind,
    }


def world_bank_lines() -> pl.DataFrame:
    rows = []
    for ccy in ACCOUNTS:
        rows += [
            bank_line(ccy, 1, 1_523_477, "processor_payout"),
            bank_line(
                ccy,
                2,
                250_000_00,
                "buyer_repayment",
                customer_reference="INV-2026-0001",
                text="INVOICE INV-2026-0001 ACME, INC.",
            ),
            bank_line(
                ccy,
                3,
                -98_765,
                "merchant_payout",
                value_day=DAY1 + timedelta(days=1),
                customer_reference="mpo_000123",
                text=LONG_TEXT,
            ),
            bank_line(ccy, 4, -2_500, "fee", customer_reference="", text=""),
            bank_line(ccy, 5, -40_000, "processor_payout", day=DAY1 + timedelta(days=1)),
            bank_line(ccy, 6, 77, "other", day=DAY1 + timedelta(days=3), customer_reference="X"),
        ]
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[pl.DataFrame, Path, list[Path]]:
    lines = world_bank_lines()
    out = tmp_path_factory.mktemp("world")
    return lines, out, write_bank_statements(lines, OPENING, ACCOUNTS, out)


def expected_days(lines: pl.DataFrame, ccy: str) -> list[tuple[date, list[dict]]]:
    own = lines.filter(pl.col("account_currency") == ccy).sort("booking_date", maintain_order=True)
    return [
        (day, list(group.iter_rows(named=True))) for (day,), group in own.group_by("booking_date", maintain_order=True)
    ]


def test_one_statement_per_account_and_day_with_lines(written) -> None:
    _, out, paths = written
    assert sorted(p.relative_to(out).as_posix() for p in paths) == sorted(
        f"{ccy}/{ACCOUNTS[ccy]['account']}_{day:%Y%m%d}.{suffix}"
        for ccy, suffix in (("USD", "bai"), ("EUR", "xml"), ("GBP", "sta"))
        for day in (DAY1, DAY1 + timedelta(days=1), DAY1 + timedelta(days=3))
    )


# --- BAI2 -----------------------------------------------------------------------------


def read_bai2(path: Path):
    """The file's only account, parsed with the bai2 package's integrity checks on."""
    parsed = bai2.parse_from_string(path.read_text(), check_integrity=True)
    (group,) = parsed.children
    (account,) = group.children
    return parsed, group, account


def test_bai2_round_trips(written) -> None:
    lines, out, _ = written
    balance = OPENING["USD"]
    for day, entries in expected_days(lines, "USD"):
        parsed, group, account = read_bai2(out / "USD" / f"8833004455_{day:%Y%m%d}.bai")
        assert (parsed.header.version_number, parsed.header.sender_id) == (2, "071000013")
        assert (group.header.as_of_date, group.header.currency) == (day, "USD")
        assert account.header.customer_account_number == "8833004455"
        summary = {s.type_code.code: (s.amount, s.item_count) for s in account.header.summary_items}
        credits = [e["amount_minor"] for e in entries if e["amount_minor"] >= 0]
        debits = [-e["amount_minor"] for e in entries if e["amount_minor"] < 0]
        closing = balance + sum(credits) - sum(debits)
        assert summary == {
            "010": (balance, None),
            "015": (closing, None),
            "100": (sum(credits), len(credits)),
            "400": (sum(debits), len(debits)),
        }
        signed = [t.amount if t.type_code.transaction.value == "credit" else -t.amount for t in account.children]
        assert signed == [e["amount_minor"] for e in entries]
        assert [(t.bank_reference, t.customer_reference or "", t.text or "") for t in account.children] == [
            (e["bank_reference"], e["customer_reference"], e["text"]) for e in entries
        ]
        for detail, entry in zip(account.children, entries):
            if entry["value_date"] != entry["booking_date"]:
                assert (detail.funds_type.value, detail.availability["date"]) == ("V", entry["value_date"])
        control = balance + closing + sum(credits) + sum(debits) + sum(abs(e["amount_minor"]) for e in entries)
        assert account.trailer.account_control_total == group.trailer.group_control_total == control
        assert parsed.trailer.file_control_total == control
        balance = closing


def test_bai2_type_codes_follow_kind_and_direction(written) -> None:
    _, out, _ = written
    _, _, account = read_bai2(out / "USD" / f"8833004455_{DAY1:%Y%m%d}.bai")
    assert [t.type_code.code for t in account.children] == ["165", "195", "495", "698"]
    assert [t.type_code.transaction.value for t in account.children] == ["credit", "credit", "debit", "debit"]


# --- camt.053 -------------------------------------------------------------------------


def test_camt053_round_trips(written) -> None:
    lines, out, _ = written
    balance = OPENING["EUR"]
    for day, entries in expected_days(lines, "EUR"):
        path = out / "EUR" / f"DE89370400440532013000_{day:%Y%m%d}.xml"
        parser = Camt053Parser.from_file(path)
        assert parser.version == "camt.053.001.08"
        (info,) = parser.get_statement_info()
        closing = balance + sum(e["amount_minor"] for e in entries)
        assert (info["IBAN"], info["Currency"]) == ("DE89370400440532013000", "EUR")
        assert decimal_to_minor(info["OpeningBalance"], "EUR") == balance
        assert decimal_to_minor(info["ClosingBalance"], "EUR") == closing
        transactions = parser.get_transactions()
        signed = [
            decimal_to_minor(t["Amount"], "EUR") * (1 if t["CreditDebitIndicator"] == "CRDT" else -1)
            for t in transactions
        ]
        assert signed == [e["amount_minor"] for e in entries]
        assert [
            (t["TransactionID"], t["EndToEndId"], t["Status"], t["BookingDate"], t["ValueDate"]) for t in transactions
        ] == [
            (
                e["bank_reference"],
                e["customer_reference"] or "NOTPROVIDED",
                "BOOK",
                e["booking_date"].isoformat(),
                e["value_date"].isoformat(),
            )
            for e in entries
        ]
        tree = etree.parse(str(path))
        ns = {"c": CAMT_NS}
        remittances = [
            "".join(tx.xpath("c:RmtInf/c:Ustrd/text()", namespaces=ns))
            for tx in tree.xpath("//c:Ntry/c:NtryDtls/c:TxDtls", namespaces=ns)
        ]
        assert remittances == [e["text"] for e in entries]
        assert_camt_summary(tree, [e["amount_minor"] for e in entries])
        balance = closing


def assert_camt_summary(tree: etree._ElementTree, amounts: list[int]) -> None:
    """TxsSummry counts and sums agree with the entries, and with the balances."""
    ns = {"c": CAMT_NS}

    def value(path: str) -> str:
        return tree.xpath(f"//c:TxsSummry/{path}/text()", namespaces=ns)[0]

    credits, debits = [a for a in amounts if a >= 0], [-a for a in amounts if a < 0]
    assert int(value("c:TtlNtries/c:NbOfNtries")) == len(amounts)
    assert decimal_to_minor(value("c:TtlNtries/c:Sum"), "EUR") == sum(credits) + sum(debits)
    assert int(value("c:TtlCdtNtries/c:NbOfNtries")) == len(credits)
    assert decimal_to_minor(value("c:TtlCdtNtries/c:Sum"), "EUR") == sum(credits)
    assert int(value("c:TtlDbtNtries/c:NbOfNtries")) == len(debits)
    assert decimal_to_minor(value("c:TtlDbtNtries/c:Sum"), "EUR") == sum(debits)
    net = decimal_to_minor(value("c:TtlNtries/c:TtlNetNtry/c:Amt"), "EUR")
    sign = 1 if value("c:TtlNtries/c:TtlNetNtry/c:CdtDbtInd") == "CRDT" else -1
    assert sign * net == sum(amounts)
    balances = {
        bal.xpath("c:Tp/c:CdOrPrtry/c:Cd/text()", namespaces=ns)[0]: decimal_to_minor(
            bal.xpath("c:Amt/text()", namespaces=ns)[0], "EUR"
        )
        * (1 if bal.xpath("c:CdtDbtInd/text()", namespaces=ns)[0] == "CRDT" else -1)
        for bal in tree.xpath("//c:Stmt/c:Bal", namespaces=ns)
    }
    assert balances["OPBD"] + sum(amounts) == balances["CLBD"]


# --- MT940 ----------------------------------------------------------------------------


def minor_of(amount: mt940.models.Amount) -> int:
    return int(amount.amount.scaleb(2))


def test_mt940_round_trips(written) -> None:
    lines, out, _ = written
    balance = OPENING["GBP"]
    for sequence, (day, entries) in enumerate(expected_days(lines, "GBP"), 1):
        statement = mt940.parse((out / "GBP" / f"GB29NWBK60161331926819_{day:%Y%m%d}.sta").read_text())
        data = statement.data
        closing = balance + sum(e["amount_minor"] for e in entries)
        assert data["account_identification"] == "GB29NWBK60161331926819"
        assert (data["statement_number"], data["sequence_number"]) == (str(sequence), "1")
        assert minor_of(data["final_opening_balance"].amount) == balance
        assert minor_of(data["final_closing_balance"].amount) == closing
        assert data["final_closing_balance"].date == day
        transactions = list(statement)
        assert [minor_of(t.data["amount"]) for t in transactions] == [e["amount_minor"] for e in entries]
        for transaction, entry in zip(transactions, entries):
            got = transaction.data
            assert (got["date"], got["entry_date"]) == (entry["value_date"], entry["booking_date"])
            assert got["bank_reference"] == entry["bank_reference"]
            assert got["id"] == ("NCHG" if entry["kind"] == "fee" else "NTRF")
            details = got["transaction_details"].replace("\n", "")
            assert details == f"/EREF/{entry['customer_reference'] or 'NOTPROVIDED'}/REMI/{entry['text']}".rstrip()
            short = entry["customer_reference"]
            assert got["customer_reference"] == (short if 0 < len(short) <= 16 else "NONREF")
        balance = closing


# --- every format, random movements -----------------------------------------------------

movement = st.tuples(
    st.integers(min_value=-(10**11), max_value=10**11),
    st.sampled_from(["processor_payout", "merchant_payout", "buyer_repayment", "fee", "other"]),
    st.integers(min_value=0, max_value=2),
)


@settings(max_examples=30, deadline=None)
@given(st.lists(movement, min_size=1, max_size=15), st.integers(min_value=-(10**11), max_value=10**11))
def test_random_movements_balance_in_every_format(movements, opening) -> None:
    rows = [
        bank_line(ccy, n, amount, kind, day=DAY1 + timedelta(days=offset))
        for ccy in ACCOUNTS
        for n, (amount, kind, offset) in enumerate(movements)
    ]
    lines = pl.DataFrame(rows)
    final = opening + sum(amount for amount, _, _ in movements)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_bank_statements(lines, dict.fromkeys(ACCOUNTS, opening), ACCOUNTS, Path(folder))
        last = {path.suffix: path for path in sorted(paths)}
        _, _, account = read_bai2(last[".bai"])
        assert {s.type_code.code: s.amount for s in account.header.summary_items}["015"] == final
        tree = etree.parse(str(last[".xml"]))
        closing = tree.xpath("//c:Bal[c:Tp/c:CdOrPrtry/c:Cd='CLBD']", namespaces={"c": CAMT_NS})[0]
        amount = decimal_to_minor(closing.findtext(f"{{{CAMT_NS}}}Amt"), "EUR")
        assert amount * (1 if closing.findtext(f"{{{CAMT_NS}}}CdtDbtInd") == "CRDT" else -1) == final
        assert minor_of(mt940.parse(last[".sta"].read_text()).data["final_closing_balance"].amount) == final
        for path in paths:  # every statement of every format parses and balances on its own
            if path.suffix == ".bai":
                read_bai2(path)
            elif path.suffix == ".xml":
                tree = etree.parse(str(path))
                amounts = [
                    decimal_to_minor(n.findtext(f"{{{CAMT_NS}}}Amt"), "EUR")
                    * (1 if n.findtext(f"{{{CAMT_NS}}}CdtDbtInd") == "CRDT" else -1)
                    for n in tree.xpath("//c:Ntry", namespaces={"c": CAMT_NS})
                ]
                assert_camt_summary(tree, amounts)
            else:
                parsed = mt940.parse(path.read_text())
                moved = sum(minor_of(t.data["amount"]) for t in parsed)
                assert minor_of(parsed.data["final_opening_balance"].amount) + moved == minor_of(
                    parsed.data["final_closing_balance"].amount
                )


# --- what the formats cannot carry --------------------------------------------------------


def test_lines_in_another_currency_are_refused(tmp_path) -> None:
    lines = pl.DataFrame([{**bank_line("USD", 1, 100, "other"), "currency": "EUR"}])
    with pytest.raises(ValueError, match="USD account has lines in"):
        write_bank_statements(lines, OPENING, ACCOUNTS, tmp_path)


def test_lines_for_an_unknown_account_are_refused(tmp_path) -> None:
    lines = pl.DataFrame([bank_line("CHF", 1, 100, "other")])
    with pytest.raises(ValueError, match="CHF"):
        write_bank_statements(lines, OPENING, ACCOUNTS, tmp_path)


def test_mt940_bank_reference_longer_than_16_is_refused(tmp_path) -> None:
    lines = pl.DataFrame([{**bank_line("GBP", 1, 100, "other"), "bank_reference": "R" * 17}])
    with pytest.raises(ValueError, match="MT940 bank reference"):
        write_bank_statements(lines, OPENING, ACCOUNTS, tmp_path)


def test_same_world_writes_identical_files(written, tmp_path) -> None:
    lines, _, paths = written
    again = write_bank_statements(lines, OPENING, ACCOUNTS, tmp_path)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_amounts_are_never_floats() -> None:
    """A value a float cannot hold exactly (2**53 + 1 cents) survives every format."""
    amount = 2**53 + 1
    assert Decimal(amount) != Decimal(float(amount))
    lines = pl.DataFrame([bank_line(ccy, 1, amount, "processor_payout") for ccy in ("USD", "EUR")])
    with tempfile.TemporaryDirectory() as folder:
        bai, xml = write_bank_statements(lines, {"USD": 0, "EUR": 0}, ACCOUNTS, Path(folder))
        _, _, account = read_bai2(bai)
        assert account.children[0].amount == amount
        text = etree.parse(str(xml)).xpath("//c:Ntry/c:Amt/text()", namespaces={"c": CAMT_NS})[0]
        assert decimal_to_minor(text, "EUR") == amount


def test_a_statement_left_out_and_one_tampered_with_still_read_as_whole_files(tmp_path):
    """What a generated world does to the bank's statements for balance continuity: the
    files left add up on their own (intake's controls hold), the sequence skips the one
    left out, and the tampered one states balances moved by the same amount."""
    from clearline.recon import parse_file

    statements = daily_statements(world_bank_lines(), OPENING, ACCOUNTS)
    for ccy in ACCOUNTS:
        own = [s for s in statements if s.currency == ccy]  # three days: DAY1, the day after, three days on
        kept = tamper_balance(drop_statement(own, own[1]), own[2], -5_000)
        parsed = [parse_file(path) for path in write_statements(kept, tmp_path / ccy)]
        assert len(parsed) == 2
        for file in parsed:
            assert file.problems.is_empty()
            assert (file.controls["declared"] == file.controls["computed"]).all(), file.controls
        first, last = (file.statements.row(0, named=True) for file in parsed)
        assert (first["opening_minor"], first["closing_minor"]) == (own[0].opening_minor, own[0].closing_minor)
        assert (last["opening_minor"], last["closing_minor"]) == (
            own[1].closing_minor - 5_000,
            own[2].closing_minor - 5_000,
        )
        if ccy != "USD":  # BAI2 numbers no statements; camt.053 and MT940 skip the one left out
            assert [f.statements["sequence"][0].split("/")[0] for f in parsed] == ["1", "3"]
