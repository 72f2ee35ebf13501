"""Bank statements into bank lines: the world's own files, and public real ones.

The world's BAI2, camt.053 and MT940 statements read back to exactly the lines written,
with their control totals equal; public sample statements from other projects' fixtures
(tests/data/bank_statements, see SOURCES.md; every file's outcome is in
test_real_bank_statements.py) parse, normalise with the right signs, amounts,
currencies and counts, and pass their suites.
"""

from __future__ import annotations

import re
import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.pipelines.world.bank_files import write_bank_statements
from clearline.recon.intake.camt053 import xml_date
from clearline.recon.intake.parse import parse_file
from clearline.recon.intake.suites import validate_many
from clearline.recon.lines import BANK_SCHEMA
from tests.pipelines.test_bank_files import ACCOUNTS, DAY1, OPENING, bank_line, movement, world_bank_lines
from tests.recon.test_intake_processor import intake_world  # noqa: F401 (fixture)

SAMPLES = Path(__file__).parents[1] / "data" / "bank_statements"


def expected(lines: pl.DataFrame) -> list[tuple]:
    """The written lines as intake should give them back, by account and bank reference."""
    accounts = {ccy: a["account"] for ccy, a in ACCOUNTS.items()}
    return sorted(
        (
            accounts[r["account_currency"]],
            r["bank_reference"],
            r["customer_reference"] or None,
            r["text"] or None,
            r["amount_minor"],
            r["currency"],
            r["booking_date"],
            r["value_date"],
        )
        for r in lines.iter_rows(named=True)
    )


def got(frame: pl.DataFrame) -> list[tuple]:
    return sorted(
        frame.select(
            "account", "bank_ref", "reference", "text", "amount_minor", "amount_currency", "booking_date", "value_date"
        ).iter_rows()
    )


def test_world_statements_read_back_exactly(tmp_path) -> None:
    lines = world_bank_lines()
    paths = write_bank_statements(lines, OPENING, ACCOUNTS, tmp_path)
    parsed = [parse_file(p) for p in paths]
    assert {f.format for f in parsed} == {"bai2", "camt053", "mt940"}
    assert {(f.path.suffix, f.format) for f in parsed} == {(".bai", "bai2"), (".xml", "camt053"), (".sta", "mt940")}
    frame = pl.concat([f.lines for f in parsed])
    assert frame.schema == pl.Schema(BANK_SCHEMA)
    assert got(frame) == expected(lines)
    for f in parsed:
        assert f.problems.height == 0
        assert f.controls.height > 0
        assert f.controls["declared"].to_list() == f.controls["computed"].to_list()
    assert all(v.passed for v in validate_many(parsed)), [v.failures for v in validate_many(parsed)]
    # evidence: the line number points at the entry in its file
    for f in parsed:
        text = f.path.read_text().splitlines()
        for row in f.lines.iter_rows(named=True):
            assert row["bank_ref"] in text[row["line_no"] - 1] or f.format == "camt053"
            if f.format == "camt053":
                assert text[row["line_no"] - 1].strip().startswith("<Ntry")


def statement_lines(parsed, statement: dict) -> pl.DataFrame:
    """The lines of one statement of a parsed file, by its identity."""
    same = [pl.col(c).eq_missing(pl.lit(statement[c], pl.String)) for c in ("account", "statement_id", "sequence")]
    return parsed.lines.filter(*same)


def assert_statements_hold_their_lines(parsed) -> None:
    """Every line belongs to exactly one stated statement, and each statement's entries
    count and (where it states both balances) opening + entries = closing hold."""
    keys = ["account", "statement_id", "sequence"]
    assert parsed.statements.select(keys).is_duplicated().sum() == 0
    assert parsed.lines.join(parsed.statements, on=keys, how="anti", nulls_equal=True).height == 0
    for statement in parsed.statements.iter_rows(named=True):
        mine = statement_lines(parsed, statement)
        assert statement["statement_id"] and mine.height == statement["entries"]
        if statement["opening_minor"] is not None and statement["closing_minor"] is not None:
            assert statement["opening_minor"] + mine["amount_minor"].sum() == statement["closing_minor"]


def test_world_statements_state_identity_and_chained_balances(tmp_path) -> None:
    lines = world_bank_lines()
    parsed = [parse_file(p) for p in write_bank_statements(lines, OPENING, ACCOUNTS, tmp_path)]
    for f in parsed:
        assert f.statements.height >= 1
        assert_statements_hold_their_lines(f)
    statements = pl.concat([f.statements for f in parsed]).sort("account", "closing_date")
    for currency, account in ACCOUNTS.items():
        mine = statements.filter(pl.col("account") == account["account"])
        assert mine["opening_currency"].unique().to_list() == [currency]
        # the generator chains its days: each opening is the previous closing, the first the world's opening
        assert mine["opening_minor"].to_list() == [OPENING[currency], *mine["closing_minor"].to_list()[:-1]]
        assert mine["entries"].sum() == lines.filter(pl.col("account_currency") == currency).height
        assert (mine["opening_date"] <= mine["closing_date"]).all()


@pytest.mark.slow
def test_generated_world_bank_files_pass_their_suites(intake_world) -> None:
    out, summary = intake_world
    paths = sorted(p for p in (out / "bank").rglob("*") if p.is_file())
    parsed = [parse_file(p) for p in paths]
    verdicts = validate_many(parsed)
    assert [(f.path.name, v.failures) for f, v in zip(parsed, verdicts) if not v.passed] == []
    assert sum(f.lines.height for f in parsed) == summary["bank_lines"]


@settings(max_examples=25, deadline=None)
@given(st.lists(movement, min_size=1, max_size=12), st.integers(min_value=-(10**11), max_value=10**11))
def test_any_movements_read_back_with_balanced_controls(movements, opening) -> None:
    rows = [
        bank_line(ccy, n, amount, kind, day=DAY1 + timedelta(days=offset))
        for ccy in ACCOUNTS
        for n, (amount, kind, offset) in enumerate(movements)
    ]
    lines = pl.DataFrame(rows)
    with tempfile.TemporaryDirectory() as folder:
        parsed = [
            parse_file(p)
            for p in write_bank_statements(lines, dict.fromkeys(ACCOUNTS, opening), ACCOUNTS, Path(folder))
        ]
    assert got(pl.concat([f.lines for f in parsed])) == expected(lines)
    controls = pl.concat([f.controls for f in parsed])
    assert controls.filter(pl.col("declared") != pl.col("computed")).height == 0
    assert controls.filter(pl.col("declared").is_null()).height == 0


# --- public samples -----------------------------------------------------------------------

SAMPLE_FACTS = {
    # file: (format, lines, currency, account, credits (count, sum), debits (count, sum))
    "bai2/moov-io-sample1.bai": ("bai2", 17, "CAD", "10200123456", (5, 320_000), (12, -320_000)),
    "camt053/viafintech-valid_example.xml": ("camt053", 5, "EUR", "DE14740618130000033626", (1, 100), (4, -1_100)),
    "camt053/viafintech-valid_example_v4.xml": (
        "camt053",
        32,  # 13 entries; four batch bookings itemised into their 23 transactions
        "CHF",
        "CH0309000000250090342",
        (24, 181_056),
        (8, -127_295),
    ),
    "mt940/jejik-rabobank-iban.sta": ("mt940", 4, "EUR", "NL71RABO0123456789", (0, 0), (4, -7_000)),
}


@pytest.fixture(scope="module")
def samples() -> dict:
    names = list(SAMPLE_FACTS)
    parsed = [parse_file(SAMPLES / name) for name in names]
    return dict(zip(names, zip(parsed, validate_many(parsed))))


@pytest.mark.parametrize("name", list(SAMPLE_FACTS))
def test_public_sample_parses_normalises_and_passes(samples, name) -> None:
    fmt, count, currency, account, (credits, credit_sum), (debits, debit_sum) = SAMPLE_FACTS[name]
    parsed, verdict = samples[name]
    lines = parsed.lines
    assert (parsed.format, lines.height) == (fmt, count)
    assert set(lines["amount_currency"]) == {currency} and set(lines["account"]) == {account}
    plus, minus = lines.filter(pl.col("amount_minor") > 0), lines.filter(pl.col("amount_minor") < 0)
    assert (plus.height, plus["amount_minor"].sum()) == (credits, credit_sum)
    assert (minus.height, minus["amount_minor"].sum()) == (debits, debit_sum)
    assert parsed.controls.height > 0 and parsed.problems.height == 0
    assert verdict.passed, verdict.failures


def test_bai2_sample_details_keep_direction_dates_and_text(samples) -> None:
    parsed, _ = samples["bai2/moov-io-sample1.bai"]
    first = parsed.lines.row(0, named=True)
    # 16,409,000000000002500,V,060316,,,,RETURNED CHEQUE  -> type 409 is a debit
    assert (first["amount_minor"], first["text"], first["line_no"]) == (-2_500, "RETURNED CHEQUE", 5)
    assert (str(first["booking_date"]), str(first["value_date"])) == ("2006-03-17", "2006-03-16")
    # the 88-continued 03 summaries (040, 045, 100, 400) count in the 49 account control totals
    totals = parsed.controls.filter(
        pl.col("control").str.starts_with("49 account") & pl.col("control").str.ends_with("total")
    )
    assert totals["declared"].to_list() == totals["computed"].to_list() == [834_000, 446_000]


def test_camt053_sample_entries_keep_references(samples) -> None:
    parsed, _ = samples["camt053/viafintech-valid_example.xml"]
    first = parsed.lines.row(0, named=True)
    assert (first["bank_ref"], first["reference"], first["amount_minor"]) == (
        "2013122710583450000",
        "EndToEndReference",
        -200,
    )
    balance = parsed.controls.filter(pl.col("control").str.contains("opening balance")).row(0, named=True)
    assert "opening balance + entries = closing balance" in balance["control"]
    assert balance["declared"] == balance["computed"] == 2_306


def test_mt940_sample_statements_each_balance(samples) -> None:
    parsed, _ = samples["mt940/jejik-rabobank-iban.sta"]
    assert parsed.controls["declared"].to_list() == parsed.controls["computed"].to_list() == [96_500, 93_000]
    assert parsed.lines["reference"][0] == "01-01-2013 12:00 0030000987654321"  # the /EREF/ of a SEPA :86:


def test_real_statement_in_a_withdrawn_currency_is_refused() -> None:
    parsed = parse_file(SAMPLES / "mt940/cmxl-mt940-dem.sta")
    (verdict,) = validate_many([parsed])
    assert not verdict.passed
    currency = next(f for f in verdict.failures if "ISO 4217" in f.rule)
    assert {row["amount_currency"] for row in currency.rows} == {"DEM"}
    assert currency.count == 11 and [row["line_no"] for row in currency.rows][:2] == [5, 7]


def test_mt940_reversal_marks_sign_like_the_money_moves(tmp_path) -> None:
    """RC (a credit reversed) takes money out, RD (a debit reversed) puts it back."""
    path = tmp_path / "reversals.sta"
    path.write_text(
        "\r\n".join(
            [
                ":20:REV1",
                ":25:GB29NWBK60161331926819",
                ":28C:1/1",
                ":60F:C260105GBP100,00",
                ":61:2601050105RC30,00NTRFpo_1//B1",
                ":86:/EREF/po_1/REMI/CREDIT REVERSED",
                ":61:2601050105RD5,50NTRFpo_2//B2",
                ":86:/EREF/po_2/REMI/DEBIT REVERSED",
                ":62F:C260105GBP75,50",
                "",
            ]
        )
    )
    parsed = parse_file(path)
    assert parsed.lines["amount_minor"].to_list() == [-3_000, 550]
    assert parsed.controls["declared"].to_list() == parsed.controls["computed"].to_list() == [7_550]


# --- MT940 as banks send it ------------------------------------------------------------------


def mt940_message(body: list[str]) -> list[str]:
    """One SWIFT FIN message around tagged lines (basic, application and user header blocks)."""
    return ["{1:F01ASNBNL21XXXX0000000000}{2:O940ASNBNL21XXXXN}{3:{108:MT940}}{4:", *body, "-}{5:{CHK:0}}"]


def test_mt940_envelopes_pages_wrapped_details_reversals_and_entry_dates(tmp_path) -> None:
    """A statement continued over two messages (:28C: 5/1 and 5/2, :62M: then :60M:), a
    :61: whose supplementary details sit on the next line (as the ASN Bank file has it,
    which the mt-940 package cannot read), RC/RD marks, an entry date in the year before
    the value date, and an empty statement; CRLF, a byte-order mark, trailing blank lines."""
    lines = [
        *mt940_message(
            [
                ":20:ST5",
                ":25:NL81ASNB9999999999",
                ":28C:5/1",
                ":60F:C251231EUR444,29",
                ":61:2601021231D65,00NOVBNL47INGB9999999999",  # 18-character reference, entry 31 Dec
                "hr gjlm paulissen",
                ":62M:C260102EUR379,29",
            ]
        ),
        *mt940_message(
            [
                ":20:ST5B",
                ":25:NL81ASNB9999999999",
                ":28C:5/2",
                ":60M:C260102EUR379,29",
                ":61:260102RC10,00NTRFNONREF//B2",  # a credit reversed: money out; no entry date
                ":86:/EREF/po_77/REMI/CREDIT REVERSED",
                ":61:260102RD2,50NTRFNONREF//B3",  # a debit reversed: money back
                ":62F:C260102EUR371,79",
            ]
        ),
        *mt940_message(
            [":20:ST6", ":25:NL81ASNB9999999999", ":28C:6/1", ":60F:C260102EUR371,79", ":62F:C260103EUR371,79"]
        ),
        "",
        "",
    ]
    path = tmp_path / "asn.sta"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())
    parsed = parse_file(path)
    assert parsed.lines["amount_minor"].to_list() == [-6_500, -1_000, 250]
    first = parsed.lines.row(0, named=True)
    assert (first["reference"], first["text"]) == ("NL47INGB9999999999", "hr gjlm paulissen")
    assert (str(first["value_date"]), str(first["booking_date"])) == ("2026-01-02", "2025-12-31")
    assert parsed.lines["reference"].to_list()[1:] == ["po_77", None]
    assert parsed.lines["line_no"].to_list() == [6, 15, 17]
    statements = parsed.statements.select(
        "statement_id", "sequence", "opening_minor", "opening_date", "closing_minor", "closing_date", "entries"
    ).rows()
    assert [(s[0], s[1], s[2], str(s[3]), s[4], str(s[5]), s[6]) for s in statements] == [
        ("ST5", "5", 44_429, "2025-12-31", 37_179, "2026-01-02", 3),
        ("ST6", "6", 37_179, "2026-01-02", 37_179, "2026-01-03", 0),
    ]
    assert set(parsed.lines["sequence"]) == {"5"}
    assert parsed.controls["declared"].to_list() == parsed.controls["computed"].to_list()
    assert parsed.controls.height == 4  # two pages' balances, the pages' continuity, the empty statement
    assert_statements_hold_their_lines(parsed)
    (verdict,) = validate_many([parsed])
    assert verdict.passed, verdict.failures


def test_mt940_structured_details_german_subfields_and_slash_keys(tmp_path) -> None:
    path = tmp_path / "details.sta"
    path.write_text(
        "\n".join(
            [
                ":20:STARTUMSE",
                ":25:10020030/1234567890",
                ":28C:00001/001",
                ":60F:C260105EUR1000,00",
                ":61:2601050105CR150,00N166NONREF",
                ":86:166?00SEPA-GUTSCHRIFT?109310?20EREF+PO-2026-0001?21SVWZ+Auszahlung Batch 4001 W",
                "oche 2?30COBADEFFXXX?31DE89370400440532013000?32ADYEN N.V.",
                ":61:2601050105DR20,00N105NONREF",
                ":86:105?00LASTSCHRIFT?20Rechnung 4711?21Kundennr. 99",
                ":61:2601050105C5,00NTRFNONREF",
                ":86:/EREF/mpo_000123/REMI/MERCHANT PAYOUT m_0042 SETTLEMENT WEEK 2 PART OF A LONG REMITTA",
                "NCE TEXT/NAME/ACME",
                ":62F:C260105EUR1135,00",
            ]
        )
        + "\n"
    )
    parsed = parse_file(path)
    rows = parsed.lines.select("reference", "text", "amount_minor").rows()
    assert rows == [
        ("PO-2026-0001", "Auszahlung Batch 4001 Woche 2", 15_000),
        (None, "Rechnung 4711 Kundennr. 99", -2_000),
        ("mpo_000123", "MERCHANT PAYOUT m_0042 SETTLEMENT WEEK 2 PART OF A LONG REMITTANCE TEXT", 500),
    ]
    assert parsed.statements["sequence"].to_list() == ["00001"]


@pytest.mark.parametrize("fmt", ["mt940", "bai2"])
def test_latin1_statements_are_read_without_losing_a_character(tmp_path, fmt) -> None:
    """German and Hungarian banks send ISO-8859-1: read as such, the text keeps its letters."""
    if fmt == "mt940":
        text = "\r\n".join(
            [
                ":20:L1",
                ":25:DE89370400440532013000",
                ":28C:1",
                ":60F:C260105EUR0,00",
                ":61:2601050105C10,00NTRFNONREF",
                ":86:Überweisung Müller Straße 5 – Kaufpreis",
                ":62F:C260105EUR10,00",
                "",
            ]
        )
    else:
        text = "\r\n".join(
            [
                "01,BANK,CLEARLINE,260105,0800,1,,,2/",
                "02,CLEARLINE,BANK,1,260105,2400,EUR,2/",
                "03,DE89370400440532013000,EUR,010,0,,,015,1000,,/",
                "16,195,1000,0,,,Überweisung Müller Straße 5 – Kaufpreis",
                "49,2000,3/",
                "98,2000,1,5/",
                "99,2000,1,7/",
                "",
            ]
        )
    path = tmp_path / f"latin1.{fmt}"
    path.write_bytes(text.encode("cp1252"))
    parsed = parse_file(path)
    assert parsed.lines["text"].to_list() == ["Überweisung Müller Straße 5 – Kaufpreis"]
    assert parsed.lines["amount_minor"].to_list() == [1_000]
    (verdict,) = validate_many([parsed])
    assert verdict.passed, verdict.failures


def test_identical_lines_in_one_statement_are_two_lines(tmp_path) -> None:
    """Two equal payments on one day are ordinary: both kept, the file accepted."""
    line = [":61:2601050105C25,00NTRFINV-1", ":86:/EREF/INV-1/REMI/INVOICE 1"]
    path = tmp_path / "twice.sta"
    path.write_text(
        "\n".join(
            [
                ":20:T",
                ":25:GB29NWBK60161331926819",
                ":28C:7",
                ":60F:C260105GBP0,00",
                *line,
                *line,
                ":62F:C260105GBP50,00",
            ]
        )
    )
    parsed = parse_file(path)
    assert parsed.lines.height == 2 and parsed.lines.unique(subset=["reference", "amount_minor", "text"]).height == 1
    (verdict,) = validate_many([parsed])
    assert verdict.passed, verdict.failures


def test_a_statement_line_that_cannot_be_read_is_named(tmp_path) -> None:
    path = tmp_path / "bad.sta"
    path.write_text(
        "\n".join([":20:T", ":25:A1", ":28C:1", ":60F:C260105EUR0,00", ":61:26010X5C1,00NTRF", ":62F:C260105EUR1,00"])
    )
    parsed = parse_file(path)
    assert parsed.problems.rows() == [
        (5, ":61: '26010X5C1,00NTRF' is not a statement line (value date, entry date, D/C mark, amount, type)")
    ]
    (verdict,) = validate_many([parsed])
    assert not verdict.passed


def _swift_amount(minor: int) -> str:
    return f"{abs(minor) // 100},{abs(minor) % 100:02d}"


@settings(max_examples=30, deadline=None)
@given(
    amounts=st.lists(st.integers(min_value=-(10**9), max_value=10**9).filter(bool), max_size=8),
    split=st.integers(min_value=0, max_value=8),
    opening=st.integers(min_value=-(10**9), max_value=10**9),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    envelope=st.booleans(),
    trailing=st.integers(min_value=0, max_value=3),
)
def test_any_mt940_paging_and_framing_reads_the_same_statement(
    amounts, split, opening, newline, bom, envelope, trailing
) -> None:
    """However a statement is cut into pages and framed, it reads as the same lines and balances."""

    def balance(tag: str, minor: int) -> str:
        return f":{tag}:{'C' if minor >= 0 else 'D'}260105EUR{_swift_amount(minor)}"

    pages = [amounts[:split], amounts[split:]] if 0 < split < len(amounts) else [amounts]
    text, running = [], opening
    for n, page in enumerate(pages, 1):
        body = [":20:REF" + str(n), ":25:GB29NWBK60161331926819", f":28C:12/{n}"]
        body.append(balance("60F" if n == 1 else "60M", running))
        for i, minor in enumerate(page):
            mark = "C" if minor > 0 else "D"
            body += [f":61:2601050105{mark}{_swift_amount(minor)}NTRFREF{i}//B{n}{i}", f":86:/EREF/E{n}{i}/REMI/LINE"]
            running += minor
        body.append(balance("62F" if n == len(pages) else "62M", running))
        text += mt940_message(body) if envelope else [*body, "-"]
    data = (newline.join(text) + newline * trailing).encode()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "paged.sta"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
        parsed = parse_file(path)
    assert parsed.lines["amount_minor"].to_list() == amounts
    assert parsed.statements.select("statement_id", "sequence", "opening_minor", "closing_minor", "entries").rows() == [
        ("REF1", "12", opening, opening + sum(amounts), len(amounts))
    ]
    assert parsed.controls["declared"].to_list() == parsed.controls["computed"].to_list()
    assert parsed.problems.height == 0


# --- BAI2 as banks send it -------------------------------------------------------------------

BAI2_FILE = [
    "01,SENDER,RECEIVER,260105,0800,42,,,2/",
    "02,RECEIVER,SENDER,1,260105,2400,USD,2/",
    "03,111,,010,100000,,,015,160000,,,100,70000,2,V,260106,0900/",  # 100 credits with a value date
    "88,400,10000,1,D,2,0,6000,1,4000/",  # 400 debits, distributed: 6000 today, 4000 in one day
    "16,195,50000,S,20000,20000,10000,WIRE1,po_1,INCOMING WIRE/ADYEN, BATCH 7/",  # text with / and ,
    "16,142,20000,V,260106,,ACH1,po_2/",
    "88,ACH CREDIT ADYEN",  # text on continuation records, without the / delimiter
    "88,PAYOUT 2026-01-05",
    "16,451,10000,0,DEB1,,FEE/ 49,420000,8/",  # two records on one physical line
    "03,222,EUR,010,5000,,,015,5000,,/",
    "49,10000,2/",
    "98,430000,2,12/",
    "02,RECEIVER,SENDER,1,260105,2400,CAD,2/",  # as-of-date modifier 2: final previous-day
    "03,333,,010,0,,,015,-2500,,,400,2500,1,Z/",
    "16,699,2500,Z,R1,,SERVICE",
    " CHARGE",  # a text wrapped onto a physical line of its own
    "49,2500,3/",
    "98,2500,1,5/",
    "99,432500,2,19/",
]


def test_bai2_groups_accounts_continuations_funds_types_and_controls(tmp_path) -> None:
    """Several groups and accounts; 88 continuing an 03's summaries and a 16's text; funds
    types V, S, D and Z with their extra fields (not amounts: they stay out of the control
    totals); several records on a physical line and a wrapped one; every 49, 98 and 99
    control total and record count recomputed as BAI2 defines them; CRLF and a BOM."""
    path = tmp_path / "spec.bai"
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(BAI2_FILE) + "\r\n\r\n").encode())
    parsed = parse_file(path)
    assert parsed.problems.height == 0, parsed.problems
    rows = parsed.lines.select("account", "bank_ref", "reference", "text", "amount_minor", "amount_currency").rows()
    assert rows == [
        ("111", "WIRE1", "po_1", "INCOMING WIRE/ADYEN, BATCH 7", 50_000, "USD"),
        ("111", "ACH1", "po_2", "ACH CREDIT ADYEN PAYOUT 2026-01-05", 20_000, "USD"),
        ("111", "DEB1", None, "FEE", -10_000, "USD"),
        ("333", "R1", None, "SERVICE CHARGE", -2_500, "CAD"),
    ]
    assert [str(d) for d in parsed.lines["value_date"]] == ["2026-01-05", "2026-01-06", "2026-01-05", "2026-01-05"]
    assert parsed.lines["line_no"].to_list() == [5, 6, 9, 15]
    controls = dict(zip(parsed.controls["control"], zip(parsed.controls["declared"], parsed.controls["computed"])))
    assert controls["49 account 111 control total"] == (420_000, 420_000)
    assert controls["49 account 111 number of records"] == (8, 8)
    assert controls["98 group number of records"] in ((12, 12), (5, 5))
    assert controls["99 file control total"] == (432_500, 432_500)
    assert controls["99 file number of records"] == (19, 19)
    assert all(d == c for d, c in controls.values())
    statements = parsed.statements.select(
        "account", "statement_id", "sequence", "opening_minor", "closing_minor", "opening_currency", "entries"
    ).rows()
    assert statements == [
        ("111", "2026-01-05", "2", 100_000, 160_000, "USD", 3),
        ("222", "2026-01-05", "2", 5_000, 5_000, "EUR", 0),
        ("333", "2026-01-05", "2", 0, -2_500, "CAD", 1),
    ]
    (verdict,) = validate_many([parsed])
    assert verdict.passed, verdict.failures


@pytest.mark.parametrize(
    ("line", "broken", "control", "declared", "computed"),
    [
        (18, "99,432500,2,20/", "99 file number of records", 20, 19),
        (11, "98,430001,2,12/", "98 group control total", 430_001, 430_000),
        (8, "16,451,10000,0,DEB1,,FEE/ 49,420000,7/", "49 account 111 number of records", 7, 8),
        (
            13,
            "03,333,,010,0,,,015,-2400,,,400,2500,1,Z/",
            "03 account 333 (010 opening, 015 closing ledger)",
            -2_400,
            -2_500,
        ),
    ],
)
def test_bai2_broken_totals_are_named_with_both_figures(tmp_path, line, broken, control, declared, computed) -> None:
    lines = list(BAI2_FILE)
    lines[line] = broken
    path = tmp_path / "broken.bai"
    path.write_text("\n".join(lines))
    parsed = parse_file(path)
    (verdict,) = validate_many([parsed])
    failure = next(f for f in verdict.failures if "control total" in f.rule)
    named = {row["control"]: (row["declared"], row["computed"]) for row in failure.rows}
    assert named[next(c for c in named if c.startswith(control))] == (declared, computed)


# --- camt.053 as banks send it -----------------------------------------------------------------


def camt_balance(code: str, amount: str, day: str, dc: str = "CRDT") -> str:
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy='EUR'>{amount}</Amt>"
        f"<CdtDbtInd>{dc}</CdtDbtInd><Dt>{day}</Dt></Bal>"
    )


def camt_entry(amount: str, dc: str, body: str = "", status: str = "<Sts><Cd>BOOK</Cd></Sts>") -> str:
    return (
        f"<Ntry><Amt Ccy='EUR'>{amount}</Amt><CdtDbtInd>{dc}</CdtDbtInd>{status}"
        "<BookgDt><Dt>2017-04-01+02:00</Dt></BookgDt><ValDt><DtTm>2017-04-01T10:15:00+02:00</DtTm></ValDt>"
        f"{body}</Ntry>"
    )


def camt_tx(amount: str, end_to_end: str, text: str) -> str:
    return (
        f"<TxDtls><Refs><EndToEndId>{end_to_end}</EndToEndId></Refs><Amt Ccy='EUR'>{amount}</Amt>"
        f"<CdtDbtInd>CRDT</CdtDbtInd><RmtInf><Ustrd>{text}</Ustrd></RmtInf></TxDtls>"
    )


def camt_document(batch: tuple[str, str] = ("100.00", "50.00")) -> str:
    """Two statements as a Raiffeisen-style bank writes them: dates with a time-zone offset,
    a DtTm value date, an ISO-8859-1 declaration, a batch credit of two payments, a reversal,
    a pending entry, an entry with charges, and every kind of balance."""
    first = "".join(
        [
            "<Stmt><Id>S1</Id><ElctrncSeqNb>7</ElctrncSeqNb>",
            "<Acct><Id><IBAN>AT611904300234573201</IBAN></Id><Ccy>EUR</Ccy></Acct>",
            camt_balance("PRCD", "1000.00", "<Dt>2017-03-31+02:00</Dt>"),
            camt_balance("CLBD", "1127.50", "<Dt>2017-04-01+02:00</Dt>"),
            camt_balance("CLAV", "1100.00", "<Dt>2017-04-01+02:00</Dt>"),
            camt_balance("FWAV", "1090.00", "<Dt>2017-04-03+02:00</Dt>"),
            camt_balance("ITAV", "5.00", "<DtTm>2017-04-01T12:00:00Z</DtTm>"),
            camt_balance("INFO", "1.00", "<Dt>2017-04-01</Dt>", "DBIT"),
            camt_entry(
                "150.00",
                "CRDT",
                "<AcctSvcrRef>B1</AcctSvcrRef><NtryDtls><Btch><NbOfTxs>2</NbOfTxs></Btch>"
                + camt_tx(batch[0], "po_1", "Auszahlung März")
                + camt_tx(batch[1], "po_2", "Auszahlung April")
                + "</NtryDtls>",
            ),
            camt_entry("20.00", "DBIT", "<RvslInd>true</RvslInd><AcctSvcrRef>B2</AcctSvcrRef>"),
            camt_entry("5.00", "CRDT", "<AcctSvcrRef>B3</AcctSvcrRef>", status="<Sts><Cd>PDNG</Cd></Sts>"),
            camt_entry(
                "2.50",
                "DBIT",
                "<AcctSvcrRef>B4</AcctSvcrRef><Chrgs><TtlChrgsAndTaxAmt Ccy='EUR'>2.50</TtlChrgsAndTaxAmt></Chrgs>"
                "<AddtlNtryInf>Kontoführung</AddtlNtryInf>",
            ),
            "</Stmt>",
        ]
    )
    second = "".join(
        [
            "<Stmt><Id>S2</Id><LglSeqNb>8</LglSeqNb>",
            "<Acct><Id><IBAN>AT611904300234573201</IBAN></Id><Ccy>EUR</Ccy></Acct>",
            camt_balance("ITBD", "1127.50", "<Dt>2017-04-02+02:00</Dt>"),
            camt_balance("CLBD", "1137.50", "<Dt>2017-04-02+02:00</Dt>"),
            camt_entry("10.00", "CRDT", "<AcctSvcrRef>B5</AcctSvcrRef>"),
            "</Stmt>",
        ]
    )
    return (
        "<?xml version='1.0' encoding='ISO-8859-1'?>\n"
        "<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'><BkToCstmrStmt>"
        "<GrpHdr><MsgId>M1</MsgId><CreDtTm>2017-04-02T06:00:00+02:00</CreDtTm></GrpHdr>"
        f"{first}\n{second}</BkToCstmrStmt></Document>\n"
    )


def test_camt053_as_a_bank_sends_it(tmp_path) -> None:
    path = tmp_path / "raiffeisen.xml"
    path.write_bytes(camt_document().encode("latin-1"))
    parsed = parse_file(path)
    assert parsed.problems.height == 0, parsed.problems
    rows = parsed.lines.select("bank_ref", "reference", "text", "amount_minor", "statement_id").rows()
    assert rows == [
        ("B1", "po_1", "Auszahlung März", 10_000, "S1"),  # the batch credit, one line per payment
        ("B1", "po_2", "Auszahlung April", 5_000, "S1"),
        ("B2", None, None, -2_000, "S1"),  # a reversal, signed by its CdtDbtInd
        ("B4", None, "Kontoführung", -250, "S1"),  # the pending B3 is no line
        ("B5", None, None, 1_000, "S2"),
    ]
    assert (
        {str(d) for d in parsed.lines["booking_date"]} == {str(d) for d in parsed.lines["value_date"]} == {"2017-04-01"}
    )
    statements = parsed.statements.select(
        "statement_id", "sequence", "opening_minor", "opening_date", "closing_minor", "closing_date", "entries"
    ).rows()
    assert [(s[0], s[1], s[2], str(s[3]), s[4], str(s[5]), s[6]) for s in statements] == [
        ("S1", "7", 100_000, "2017-03-31", 112_750, "2017-04-01", 4),
        ("S2", "8", 112_750, "2017-04-02", 113_750, "2017-04-02", 1),
    ]
    controls = dict(zip(parsed.controls["control"], zip(parsed.controls["declared"], parsed.controls["computed"])))
    assert controls["Ntry B1 amount = sum of its TxDtls"] == (15_000, 15_000)
    assert controls["Ntry B1 Btch/NbOfTxs = number of its TxDtls"] == (2, 2)
    assert all(declared == computed for declared, computed in controls.values())
    (verdict,) = validate_many([parsed])
    assert verdict.passed, verdict.failures


def test_camt053_batch_that_does_not_add_up_is_named(tmp_path) -> None:
    path = tmp_path / "batch.xml"
    path.write_bytes(camt_document(batch=("100.00", "40.00")).encode("latin-1"))
    (verdict,) = validate_many([parse_file(path)])
    failure = next(f for f in verdict.failures if "control total" in f.rule)
    named = {row["control"]: (row["declared"], row["computed"]) for row in failure.rows}
    assert named["Ntry B1 amount = sum of its TxDtls"] == (15_000, 14_000)


@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("2017-04-01", "2017-04-01"),
        ("2017-04-01+02:00", "2017-04-01"),
        ("2017-04-01-05:00", "2017-04-01"),
        ("2017-04-01Z", "2017-04-01"),
        ("2017-04-01T23:30:00+02:00", "2017-04-01"),
        ("2017-04-01T23:30:00.123Z", "2017-04-01"),
        ("2017-04-01T23:30:00", "2017-04-01"),
        ("2017-02-30", None),
        ("01.04.2017", None),
        ("2017-04-01+2:00", None),
    ],
)
def test_camt053_dates_are_xml_schema_dates_as_the_bank_wrote_them(value, day) -> None:
    found = xml_date(value)
    assert (None if found is None else found.isoformat()) == day


detail = st.tuples(
    st.sampled_from(["195", "142", "495", "451", "699", "275"]),
    st.integers(min_value=0, max_value=10**11),
    # what BAI2 itself cannot tell apart stays out: a "/" that ends the text (the record's
    # delimiter) or that a record code and a comma follow (the next record)
    st.text(alphabet="ABCXYZ 0123456789/,.-", min_size=0, max_size=40)
    .map(str.strip)
    .filter(lambda t: not t.endswith("/") and not re.search(r"/\s*\d\d,", t)),
)


@settings(max_examples=40, deadline=None)
@given(
    accounts=st.lists(st.lists(detail, max_size=5), min_size=1, max_size=3),
    opening=st.integers(min_value=-(10**9), max_value=10**9),
    text_on_88=st.booleans(),
    same_line=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_any_bai2_layout_reads_the_same_details_and_totals(accounts, opening, text_on_88, same_line, newline) -> None:
    """However the records are laid out (text on the 16 or on an 88, one record per line or
    a trailer on the line of the record before it), the details and every control total read
    back, the totals computed as BAI2 defines them."""
    records, expected, file_total = ["01,BANK,US,260105,0800,7,,,2/", "02,US,BANK,1,260105,2400,USD,2/"], [], 0
    group_records = 1
    for n, details in enumerate(accounts):
        sign = {code: (1 if int(code) < 400 else -1) for code, _, _ in details}
        closing = opening + sum(sign[code] * amount for code, amount, _ in details)
        account = [f"03,ACC{n},USD,010,{opening},,,015,{closing},,/"]
        for code, amount, text in details:
            if text_on_88:
                account += [f"16,{code},{amount},0,BR{n},CR{n}/", f"88,{text}"]
            else:
                account.append(f"16,{code},{amount},0,BR{n},CR{n},{text}/")
            expected.append((f"ACC{n}", sign[code] * amount, text or None))
        total = opening + closing + sum(amount for _, amount, _ in details)
        account.append(f"49,{total},{len(account) + 1}/")
        records += account
        group_records += len(account)
        file_total += total
    records.append(f"98,{file_total},{len(accounts)},{group_records + 1}/")
    records.append(f"99,{file_total},1,{len(records) + 1}/")
    if same_line:  # the trailers on the line of the record before them, as some banks write
        text = newline.join(records).replace(f"/{newline}49,", "/ 49,").replace(f"/{newline}98,", "/98,")
    else:
        text = newline.join(records)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.bai"
        path.write_text(text + newline, newline="")
        parsed = parse_file(path)
    got = [(r["account"], r["amount_minor"], r["text"]) for r in parsed.lines.iter_rows(named=True)]
    assert got == expected
    assert parsed.problems.height == 0
    assert parsed.controls["declared"].to_list() == parsed.controls["computed"].to_list()
    assert parsed.statements["entries"].to_list() == [len(d) for d in accounts]


def test_camt053_inside_an_envelope_with_a_business_application_header(tmp_path) -> None:
    """SWIFT MX delivers the Document beside its head.001 header, inside an envelope."""
    document = camt_document().split("?>", 1)[1]
    path = tmp_path / "enveloped.xml"
    path.write_bytes(
        (
            "<?xml version='1.0' encoding='ISO-8859-1'?>\n<Envelope>"
            "<AppHdr xmlns='urn:iso:std:iso:20022:tech:xsd:head.001.001.02'><BizMsgIdr>M1</BizMsgIdr></AppHdr>"
            f"{document}</Envelope>\n"
        ).encode("latin-1")
    )
    parsed = parse_file(path)
    assert parsed.statements["statement_id"].to_list() == ["S1", "S2"]
    assert parsed.lines.height == 5


def test_mt940_fin_framing_characters_and_messages_on_one_line(tmp_path) -> None:
    """PostFinance frames each FIN message in SOH/ETX and starts the next one on the line
    where the last ended; Moneyou ends one with ' -'; a :65F: (a letter on :65:) is a field."""
    header = "{1:F01POFICHBEAXXX0000000000}{2:I940XXXXXXXXXXXXN}{3:{108:140407CH00000000}}{4:"
    statement = [":25:CH0000000000000000000", ":28C:999/1", ":60F:C140407CHF100,00"]
    text = (
        f"\x01{header}\r\n:20:P1\r\n"
        + "\r\n".join([*statement, ":61:1404070407C5,00NTRFNONREF//X1", ":86:/REMI/ONE", ":62M:C140407CHF105,00"])
        + f"\r\n-}}\x03\x01{header}\r\n:20:P2\r\n"
        + "\r\n".join(
            [
                ":25:CH0000000000000000000",
                ":28C:999/2",
                ":60M:C140407CHF105,00",
                ":61:1404070407D2,50NTRFNONREF//X2",
                ":62F:C140407CHF102,50",
                ":65F:C140408CHF102,50",
                " -",
            ]
        )
        + "\x03"
    )
    path = tmp_path / "postfinance.sta"
    path.write_bytes(text.encode())
    parsed = parse_file(path)
    assert parsed.lines["amount_minor"].to_list() == [500, -250]
    assert parsed.statements.select("statement_id", "sequence", "opening_minor", "closing_minor").rows() == [
        ("P1", "999", 10_000, 10_250)
    ]
    assert parsed.controls["declared"].to_list() == parsed.controls["computed"].to_list()


camt_amount = st.integers(min_value=-(10**9), max_value=10**9).filter(bool)


@settings(max_examples=30, deadline=None)
@given(
    statements=st.lists(st.lists(st.lists(camt_amount, min_size=1, max_size=4), max_size=4), min_size=1, max_size=3),
    offset=st.sampled_from(["", "Z", "+02:00", "-05:00", "T23:59:59+14:00"]),
    extra_balances=st.booleans(),
)
def test_any_camt053_statements_and_batches_read_back(statements, offset, extra_balances) -> None:
    """Any statements of entries, an entry of several amounts being a batch of transactions:
    every transaction is a line with its sign, each statement's balances and entries hold,
    whatever the dates' offsets and the information balances beside them."""

    def money(minor: int) -> tuple[str, str]:
        return f"{abs(minor) // 100}.{abs(minor) % 100:02d}", "CRDT" if minor >= 0 else "DBIT"

    day = "2017-04-01" + ("" if offset.startswith("T") else offset)
    moment = "2017-04-01" + (offset if offset.startswith("T") else "T10:00:00" + offset)

    def balance(code: str, minor: int) -> str:
        amount, dc = money(minor)
        return camt_balance(code, amount, f"<Dt>{day}</Dt>", dc)

    body, running, expected = [], 0, []
    for n, entries in enumerate(statements):
        opening = running
        xml = [
            f"<Stmt><Id>S{n}</Id><ElctrncSeqNb>{n}</ElctrncSeqNb><Acct><Id><IBAN>AT611904300234573201</IBAN></Id><Ccy>EUR</Ccy></Acct>"
        ]
        entry_xml = []
        for parts in entries:
            total = sum(parts)
            amount, dc = money(total)
            txs = ""
            if len(parts) > 1:
                txs = (
                    "<NtryDtls>"
                    + "".join(
                        f"<TxDtls><Amt Ccy='EUR'>{money(p)[0]}</Amt><CdtDbtInd>{money(p)[1]}</CdtDbtInd></TxDtls>"
                        for p in parts
                    )
                    + "</NtryDtls>"
                )
            entry_xml.append(
                f"<Ntry><Amt Ccy='EUR'>{amount}</Amt><CdtDbtInd>{dc}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
                f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><DtTm>{moment}</DtTm></ValDt>{txs}</Ntry>"
            )
            expected += [(f"S{n}", p) for p in (parts if len(parts) > 1 else [total])]
            running += total
        xml.append(balance("OPBD", opening) + balance("CLBD", running))
        if extra_balances:
            xml.append(balance("CLAV", running + 1) + balance("FWAV", running - 1) + balance("INFO", 7))
        body.append("".join(xml + entry_xml) + "</Stmt>")
    document = (
        "<?xml version='1.0' encoding='UTF-8'?><Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.02'>"
        f"<BkToCstmrStmt><GrpHdr><MsgId>M</MsgId></GrpHdr>{''.join(body)}</BkToCstmrStmt></Document>"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.xml"
        path.write_text(document)
        parsed = parse_file(path)
    assert parsed.problems.height == 0, parsed.problems
    assert parsed.lines.select("statement_id", "amount_minor").rows() == expected
    assert {str(d) for d in parsed.lines["booking_date"]} <= {"2017-04-01"}
    assert {str(d) for d in parsed.lines["value_date"]} <= {"2017-04-01"}
    assert parsed.controls["declared"].to_list() == parsed.controls["computed"].to_list()
    assert parsed.statements["entries"].to_list() == [
        sum(len(parts) if len(parts) > 1 else 1 for parts in entries) for entries in statements
    ]
