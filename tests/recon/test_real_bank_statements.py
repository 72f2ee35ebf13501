"""Real bank statements no one here wrote (tests/data/bank_statements, see SOURCES.md):
each file's outcome, stated.

An accepted file is stated by its lines (count and net sum) and its statements (how many,
and the first and last: statement id, sequence, opening and closing balance in minor
units, currency, entries), so a change in how intake reads any of them shows. A file the
suite quarantines is stated by the reason with its figures (anonymised files whose balances
no longer add up), and a file that cannot be read as a statement by its parse error.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from clearline.recon.intake.model import ParseError
from clearline.recon.intake.parse import parse_file
from clearline.recon.intake.quarantine import reason
from clearline.recon.intake.suites import validate_many
from tests.recon.corpus import corpus_files, unsourced

CORPUS = Path(__file__).parents[1] / "data" / "bank_statements"
BALANCE = "opening balance + entries = closing balance"


def accepted(lines: int, net: int, statements: int, first: tuple, last: tuple | None = None) -> tuple:
    return ("accepted", lines, net, statements, first, last or first)


def quarantined(*says: str) -> tuple:
    return ("quarantined", says)


def refused(says: str) -> tuple:
    return ("refused", says)


# file -> outcome; a statement is (statement id, sequence, opening, closing, currency, entries)
EXPECTED = {
    "bai2/moov-io-sample1.bai": accepted(
        17, 0, 2, ("2006-03-17", None, None, None, "CAD", 11), ("2006-03-17", "#2", None, None, "CAD", 6)
    ),
    "bai2/moov-io-sample2.bai": accepted(
        4, 30_950_000, 5, ("2004-06-20", "2", 4_350_000, None, "USD", 1), ("2004-06-20", "2", 800_000, None, "USD", 0)
    ),
    "bai2/moov-io-sample3.bai": accepted(
        26, -19_705, 15, ("2022-09-19", "2", -3_500, -3_600, "USD", 6), ("2022-09-19", "2#8", 0, 0, "USD", 0)
    ),
    "bai2/moov-io-sample4-continuations-newline-delimited.bai": quarantined(
        "49 account 107049932 control total: declared=-1260161341762, computed=7999960",
        "49 account 107049932 number of records: declared=26, computed=18",
    ),
    "camt053/viafintech-valid_example.xml": accepted(
        5, -1_000, 1, ("0352C5320131227220503", "130000005", 3_306, 2_306, "EUR", 5)
    ),
    "camt053/viafintech-valid_example_v4.xml": accepted(
        32, 53_761, 1, ("20160430375204000008574", "85", 32_215_216, 32_268_977, "CHF", 32)
    ),
    "camt053/viafintech-valid_example_v8.xml": quarantined(f"{BALANCE}: declared=8451525, computed=8326423"),
    "camt053/viafintech-valid_example_with_batch.xml": quarantined(
        f"{BALANCE}: declared=2303820, computed=1026406", "TxsSummry/TtlNtries/NbOfNtries: declared=35, computed=3"
    ),
    "camt053/viafintech-valid_example_with_datetime.xml": quarantined(
        "TxsSummry/TtlNtries/NbOfNtries: declared=14, computed=1"
    ),
    "camt053/viafintech-valid_example_with_other_id.xml": accepted(
        0, 0, 1, ("0352C5320131227220503", "130000005", None, None, "EUR", 0)
    ),
    "camt053/genkgo-camt053.v2.multi.statement.xml": accepted(
        2,
        185,
        2,
        ("253EURNL26VAYB8060476890", "12312", 1_815, 2_700, "EUR", 1),
        ("254EURNL26VAYB8060476890", None, 2_700, 2_000, "EUR", 1),
    ),
    "camt053/genkgo-camt53.only-Dt-with-DtTm.xml": accepted(
        0, 0, 1, ("I38y0h4YyLnQiOV6P7nEd44r2", None, 544_209, None, "RON", 0)
    ),
    "camt053/genkgo-camt053.v2.all-balance-types.xml": quarantined(f"{BALANCE}: declared=404, computed=986"),
    "camt053/genkgo-camt053.v8.xml": quarantined(f"{BALANCE}: declared=-2700, computed=2700"),
    "mt940/wolph-asnb-mt940.txt": accepted(
        8, 5_694, 31, ("0000000000", "1", 44_429, 37_929, "EUR", 1), ("0000000000", "31", 40_481, 50_123, "EUR", 2)
    ),
    "mt940/wolph-citi-mt940.txt": accepted(5, -114_275, 1, ("asdfsdfdsf", "1", 1_737_667, 1_623_392, "USD", 5)),
    "mt940/wolph-mbank-mt940.sta": accepted(3, 3, 1, ("ST170119CYC/1", "1", 40, 43, "PLN", 3)),
    "mt940/wolph-mbank-mt942.sta": refused("an MT942 interim report, not a statement"),
    "mt940/wolph-sberbank-171011_01234945.sta": accepted(
        3, -943_700, 1, ("STARTUMS", "00046", 62_731_130, 61_787_430, "HUF", 3)
    ),
    "mt940/wolph-raiffeisen-cmi.sta": quarantined(f"{BALANCE}: declared=2528168760, computed=2415842360"),
    "mt940/betterplace-sepa_mt9401.sta": accepted(
        97,
        -926_913_590,
        20,
        ("T089413946000001", "00004", -123_471_836, -123_762_823, "EUR", 7),
        ("T089414136000001", "00001", 0, 5_005, "EUR", 1),
    ),
    "mt940/jejik-rabobank-iban.sta": accepted(
        4,
        -7_000,
        2,
        ("940S130101", "2013-01-08", 100_000, 96_500, "EUR", 2),
        ("940S130101", "2013-01-15", 96_500, 93_000, "EUR", 2),
    ),
    "mt940/jejik-ing.sta": quarantined(f"{BALANCE}: declared=347, computed=-4559"),
    "mt940/cmxl-mt940-dem.sta": quarantined(
        "amount_currency is an active ISO 4217 code (line 5: amount_currency='DEM'"
    ),
    "mt940/mt940-rs-danskebank-MT940_DK_Example.sta": accepted(
        89,
        137_245_277,
        14,
        ("3996-1234567890", "00001", 247_892_670, 165_409_516, "DKK", 7),
        ("3996-1234567890", "00014", 385_970_148, 385_137_947, "DKK", 2),
    ),
    "mt940/mt940-rs-danskebank-MT940_FI_Example.sta": accepted(
        6, -135_710, 1, ("3996-11-11111111", "00001", 5_448_404, 5_312_694, "EUR", 6)
    ),
    "mt940/mt940-rs-danskebank-MT940_NO_Example.sta": accepted(
        24,
        238_264_902,
        13,
        ("3996-11.11.11111", "00147", 9_437_295_120, 9_436_107_653, "NOK", 2),
        ("3996-11.11.11111", "00159", 9_673_565_522, 9_675_560_022, "NOK", 1),
    ),
    "mt940/mt940-rs-danskebank-MT940_SE_Example.sta": accepted(
        103,
        1_052_839_560,
        12,
        ("3996-11-11-11111", "00001", 246_034_764, 159_580_761, "SEK", 26),
        ("3996-11-11-11111", "00012", 1_279_123_024, 1_298_874_324, "SEK", 14),
    ),
    "mt940/mt940-rs-sparkasse-buxtehude.sta": quarantined(f"{BALANCE}: declared=1352309, computed=1342309"),
    "mt940/php-mt940-bunq-sample.sta": accepted(111, -2_667, 1, ("BUNQ BV", "00001", 3_233, 566, "EUR", 111)),
    "mt940/php-mt940-penta-sample.sta": accepted(
        30, -1_057_630, 1, ("PENTA1602951605571", "1", 2_041_966, 984_336, "EUR", 30)
    ),
    "mt940/php-mt940-kontist-sample.sta": accepted(6, 39_576, 1, ("KONTISTEXPORT", "2021", 15, 39_591, "EUR", 6)),
    "mt940/php-mt940-spk-sample.sta": accepted(
        10,
        91_532,
        2,
        ("STARTUMS", "09198", 181_890, 262_422, "EUR", 8),
        ("STARTUMS", "09199", 262_422, 273_422, "EUR", 2),
    ),
    "mt940/php-mt940-triodos-sample.sta": accepted(
        8,
        -9_098,
        2,
        ("1352294232659/1", "1", 100_000, 85_000, "EUR", 4),
        ("1352294232659/2", "1", 95_012, 100_914, "EUR", 4),
    ),
    "mt940/php-mt940-zetb-sample.sta": accepted(
        8, -374_391, 1, ("202012182126594", "2020-11-30", 621_305, 246_914, "NGN", 8)
    ),
    "mt940/php-mt940-rabo-sample.sta": quarantined(
        f"statement 940A030107 00000/00: {BALANCE}: declared=214500, computed=0"
    ),
    "mt940/php-mt940-hsbc-sample.sta": quarantined(f"{BALANCE}: declared=0, computed=-2000000"),
    "mt940/jejik-mt940-postfinance.txt": quarantined(
        f"statement 2014040708285928 999/2: {BALANCE}: declared=15960, computed=15940"
    ),
    "mt940/jejik-mt940-lbbw.txt": accepted(2, 0, 1, ("LBBW", "1", 0, 0, "EUR", 2)),
    "mt940/jejik-mt940-volksbankenraiffeisenbanken.txt": accepted(
        12,
        74_500,
        8,
        ("STARTUMS", "2020-02-19", 308_500, 323_000, "EUR", 2),
        ("STARTUMS", "2020-03-10", 377_500, 383_000, "EUR", 1),
    ),
    "mt940/jejik-mt940-sparkasse_interim_balance.txt": accepted(
        2,
        -4_000,
        3,
        ("STARTUMSE", "2019-02-18", 19_457, 17_457, "EUR", 1),
        ("STARTUMSE", "00215/00129", 0, 0, "EUR", 0),
    ),
    "mt940/jejik-mt940-commerzbank.txt": quarantined(f"{BALANCE}: declared=0, computed=-1235"),
    "mt940/zilverline-van_lanschot.txt": accepted(
        4, -20_399, 3, ("FVLOLB", "002", 505_333, 777_009, "EUR", 1), ("FVLOLB", "004", 566_609, 484_934, "EUR", 1)
    ),
    "mt940/zilverline-triodos_iban_2.txt": accepted(4, 772_878, 1, ("868686868668", "1", 0, 772_878, "EUR", 4)),
    "mt940/zilverline-sns.txt": accepted(
        4,
        4_501_245,
        16,
        ("0000000000", "19", 53_403, 54_648, "EUR", 1),
        ("0000000000", "265", 2_554_648, 4_554_648, "EUR", 1),
    ),
    "mt940/zilverline-two_accounts.txt": accepted(
        3,
        -634_875,
        4,
        ("940A120918", "2012-09-18", 926_512, 266_637, "EUR", 2),
        ("940A121029", "2012-10-29", -1_200, 23_800, "EUR", 1),
    ),
    "mt940/zilverline-moneyou.txt": accepted(2, 1_176, 1, ("940A190401", "00001", 4_311_971, 4_313_147, "EUR", 2)),
    "mt940/zilverline-rabobank_mt940_structured.txt": accepted(
        9,
        1_769_839,
        2,
        ("940S130403", "2013-04-03", 114_795, 119_035, "EUR", 2),
        ("940S130404", "2013-04-04", 119_035, 1_884_634, "EUR", 7),
    ),
    "mt940/zilverline-knab_two_blocks.txt": accepted(
        3, 106_000, 2, ("ABC123456789097", "1", 0, 5_000, "EUR", 1), ("AA7392334590834", "2", 5_000, 106_000, "EUR", 2)
    ),
    "mt940/zilverline-ing-mt940_iban.txt": accepted(
        21, -19_045, 1, ("P123456000000001", "2014-08-25", 43_690, 24_645, "EUR", 21)
    ),
    "mt940/zilverline-abn_structured_sepa_ideal.txt": quarantined(f"{BALANCE}: declared=1001000, computed=1001050"),
}

STATEMENT = ["statement_id", "sequence", "opening_minor", "closing_minor", "opening_currency", "entries"]


@pytest.fixture(scope="module")
def outcomes() -> dict:
    """Every file of the corpus parsed and judged (one GX run per format)."""
    parsed, errors = {}, {}
    for name in EXPECTED:
        try:
            parsed[name] = parse_file(CORPUS / name)
        except ParseError as exc:
            errors[name] = exc
    verdicts = dict(zip(parsed, validate_many(list(parsed.values()))))
    return {"parsed": parsed, "verdicts": verdicts, "errors": errors}


def test_every_statement_file_in_the_corpus_has_a_stated_outcome() -> None:
    assert corpus_files(CORPUS) == set(EXPECTED)
    assert unsourced(CORPUS, EXPECTED) == [], "every file has its SOURCES.md row"
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_statement_outcome(outcomes, name) -> None:
    kind, *facts = EXPECTED[name]
    if kind == "refused":
        assert name in outcomes["errors"], f"{name} was read"
        assert facts[0] in str(outcomes["errors"][name])
        return
    parsed, verdict = outcomes["parsed"][name], outcomes["verdicts"][name]
    if kind == "quarantined":
        assert not verdict.passed
        named = "\n".join(
            f"{row.get('control', '')}: declared={row.get('declared')}, computed={row.get('computed')}"
            for failure in verdict.failures
            for row in failure.rows
        )
        for says in facts[0]:
            assert says in named or says in reason(verdict), (says, reason(verdict))
        return
    lines, net, count, first, last = facts
    assert verdict.passed, verdict.failures
    assert (parsed.lines.height, parsed.lines["amount_minor"].sum(), parsed.statements.height) == (lines, net, count)
    statements = parsed.statements.select(STATEMENT).rows()
    assert (statements[0], statements[-1]) == (first, last)
    # each line belongs to one of the file's statements, and the statements count them all
    assert parsed.statements["entries"].sum() == lines
    keys = ["account", "statement_id", "sequence"]
    assert parsed.lines.join(parsed.statements, on=keys, how="anti", nulls_equal=True).height == 0
    assert parsed.statements.select(keys).is_duplicated().sum() == 0


def test_the_issue_files_read_as_the_bank_wrote_them(outcomes) -> None:
    """Issue 12: the ASN Bank MT940 (a :61: whose details run onto the next line) reads
    whole, and the Citi MT940 keeps its two zero-amount information lines, which differ only
    in their supplementary details."""
    asn = outcomes["parsed"]["mt940/wolph-asnb-mt940.txt"].lines
    first = asn.row(0, named=True)
    assert (first["reference"], first["amount_minor"]) == ("NL47INGB9999999999", -6_500)
    assert first["text"] == "NL47INGB9999999999 hr gjlm paulissen Betaling sieraden"
    citi = outcomes["parsed"]["mt940/wolph-citi-mt940.txt"].lines
    zero = citi.filter(pl.col("amount_minor") == 0)
    assert zero["text"].to_list() == ["/ABC/DEF/C 37897,00 BAI CD 025", "/ABC/DEF/C 17376,67 BAI CD 010"]
