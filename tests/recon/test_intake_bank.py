"""Bank statements into bank lines: the world's own files, and public real ones.

The world's BAI2, camt.053 and MT940 statements read back to exactly the lines written,
with their control totals equal; public sample statements from other projects' fixtures
(tests/data/bank_samples, see SOURCES.md) parse, normalise with the right signs, amounts,
currencies and counts, and pass their suites.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.pipelines.world.bank_files import write_bank_statements
from clearline.recon.intake.parse import parse_file
from clearline.recon.intake.suites import validate_many
from clearline.recon.lines import BANK_SCHEMA
from tests.pipelines.test_bank_files import ACCOUNTS, DAY1, OPENING, bank_line, movement, world_bank_lines
from tests.recon.test_intake_processor import intake_world  # noqa: F401 (fixture)

SAMPLES = Path(__file__).parent / "data" / "bank_samples"


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
    credits = parsed.controls.filter(pl.col("control").str.contains("100 total credits"))
    assert credits["declared"].to_list() == [208_500, 111_500]  # the 88-continued 03 summaries


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
