"""Processor settlement reports, as the world writes them, read back into `clearline.recon.lines`.

Every layout, every record type, FX lines, 0/2/3/4-decimal currencies: what the writer
put in (one normalised table) is what intake gets out, line for line, and the payout rows
come back as control totals equal to the sum of their batch.
"""

from __future__ import annotations

import json
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.pipelines.world.settlement_files import write_settlement_reports
from clearline.recon.arrivals import line_row
from clearline.recon.intake.model import ParseError
from clearline.recon.intake.parse import parse_file
from clearline.recon.intake.publish import messages
from clearline.recon.intake.store import read_lines, write_lines
from clearline.recon.intake.suites import validate_many
from clearline.recon.lines import SETTLEMENT_SCHEMA
from tests.pipelines.test_settlement_files import DAY2, Lines, world_lines

KEY = ["processor", "line_id"]


@pytest.fixture(scope="module")
def intake_world(tmp_path_factory) -> tuple[Path, dict]:
    """A 45-day, 6-merchant world with discrepancies: every record type, ~1,100
    settlement and ~370 bank lines (small enough to validate in a few seconds)."""
    out = tmp_path_factory.mktemp("intake-world")
    return out, generate(WorldOptions(days=45, merchants=6, seed=3), out)


def expected(lines: pl.DataFrame) -> pl.DataFrame:
    """What intake should produce from the writer's table: no payout rows; Stripe carries
    no rate and states gross 0 in the balance currency on fee rows; times as each layout
    writes them (seconds, Checkout.com milliseconds)."""
    fee_row = pl.col("record_type") == "fee"
    is_stripe = pl.col("processor") == "stripe"
    precision = (
        pl.when(pl.col("processor") == "checkoutcom")
        .then(pl.col("created_at").dt.truncate("1ms"))
        .otherwise(pl.col("created_at").dt.truncate("1s"))
    )
    return (
        lines.filter(pl.col("record_type") != "payout")
        .select(
            "processor",
            "line_id",
            "payment_id",
            payout_id="batch_id",
            record_type="record_type",
            merchant_id="merchant_id",
            gross_minor="gross_minor",
            gross_currency=pl.when(fee_row & is_stripe).then("net_currency").otherwise("gross_currency"),
            fee_minor="fee_minor",
            fee_currency="net_currency",
            net_minor="net_minor",
            net_currency="net_currency",
            fx_rate=pl.when(is_stripe).then(None).otherwise("fx_rate"),
            created_at=precision,
            value_date="available_on",
        )
        .sort(KEY)
    )


def read_all(paths: list[Path]) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    parsed = [parse_file(p) for p in paths]
    problems = [f"{f.path.name}: {r}" for f in parsed for r in f.problems.iter_rows()]
    return (pl.concat([f.lines for f in parsed]), pl.concat([f.controls for f in parsed]), problems)


def test_every_layout_reads_back_to_the_written_lines(tmp_path) -> None:
    lines = world_lines()
    paths = write_settlement_reports(lines, tmp_path)
    got, controls, problems = read_all(paths)
    assert problems == []
    assert got.schema == pl.Schema(SETTLEMENT_SCHEMA)
    assert {parse_file(p).format for p in paths} == {"adyen", "stripe", "checkoutcom"}
    assert got.select(expected(lines).columns).sort(KEY).to_dicts() == expected(lines).to_dicts()
    # evidence: each line points at its file and the physical line it starts on
    for row in got.iter_rows(named=True):
        text = (tmp_path / row["processor"] / row["source_file"]).read_text().splitlines()
        assert row["line_id"] in text[row["line_no"] - 1]
    # one control per payout row, and each equals its batch's sum
    payouts = lines.filter(pl.col("record_type") == "payout")
    assert controls.height == payouts.height
    assert controls["declared"].to_list() == controls["computed"].to_list()
    assert sorted(controls["declared"].to_list()) == sorted((-payouts["net_minor"]).to_list())


@pytest.mark.slow
def test_generated_world_reads_and_passes_its_suites(intake_world) -> None:
    out, summary = intake_world
    paths = sorted((out / "settlements").rglob("*.csv"))
    got, controls, problems = read_all(paths)
    assert problems == []
    transfers = got.filter(pl.col("record_type") == "balance_transfer")
    assert got.height - transfers.height == summary["settlement_lines"]
    # a negative day's balance carried to the batch that pays it: each pair nets to zero
    pairs = transfers.group_by(pl.col("line_id").str.replace(r"-(IN|OUT)$", "")).agg(pl.col("net_minor").sum())
    assert transfers.height > 0 and pairs["net_minor"].to_list() == [0] * (transfers.height // 2)
    # every batch's payout row is its control, and equals its batch (batches that carry
    # their balance forward pay nothing and have none)
    assert controls.height == summary["payouts"]
    assert controls["declared"].to_list() == controls["computed"].to_list()
    assert got.null_count().select(pl.exclude("payment_id", "fx_rate", "merchant_id")).sum_horizontal().item() == 0
    fees = got.filter(pl.col("record_type") == "fee")
    assert fees.height > 0 and (fees["fee_minor"] == -fees["net_minor"]).all() and (fees["fee_minor"] > 0).all()
    parsed = [parse_file(p) for p in paths]
    assert [(f.path.name, v.failures) for f, v in zip(parsed, validate_many(parsed)) if not v.passed] == []


I64_SAFE = st.integers(min_value=-(2**59), max_value=2**59)  # a batch of 8 still sums within i64


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(I64_SAFE, st.integers(min_value=0, max_value=10**12)), min_size=1, max_size=8),
    st.sampled_from(["USD", "EUR", "JPY", "KWD", "CLF"]),
)
def test_any_amount_in_any_exponent_survives(pairs, currency) -> None:
    """Minor units go through decimal text and back unchanged, whatever the exponent."""
    w = Lines()
    for processor in ("adyen", "stripe", "checkoutcom"):
        for gross, fee in pairs:
            w.add(
                processor,
                f"B-{processor}",
                "charge" if gross >= 0 else "refund",
                gross,
                fee,
                ccy=currency,
                parts=(fee, 0, 0, 0),
            )
        w.payout(processor, f"B-{processor}", DAY2 + timedelta(days=1))
    lines = w.frame()
    with tempfile.TemporaryDirectory() as folder:
        got, controls, problems = read_all(write_settlement_reports(lines, Path(folder)))
    assert problems == []
    cols = ["processor", "line_id", "gross_minor", "fee_minor", "net_minor", "net_currency"]
    assert got.select(cols).sort(KEY).to_dicts() == expected(lines).select(cols).to_dicts()
    assert controls["declared"].to_list() == controls["computed"].to_list()


# ------------------------------------------------- reports as processors really write them


def parsed(tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return parse_file(path)


ADYEN_EXPORT_HEADER = (
    "Company Account,Merchant Account,Psp Reference,Merchant Reference,Payment Method,Creation Date,TimeZone,"
    "Type,Modification Reference,Gross Currency,Gross Debit (GC),Gross Credit (GC),Exchange Rate,Net Currency,"
    "Net Debit (NC),Net Credit (NC),Commission (NC),Markup (NC),Scheme Fees (NC),Interchange (NC),"
    "Payment Method Variant,Modification Merchant Reference,Batch Number,Reserved4,Reserved5,Reserved6,"
    "Reserved7,Reserved8,Reserved9,Reserved10"
)


def test_adyens_default_export_is_read_by_name_every_type_kept(tmp_path) -> None:
    """Adyen's default export (no Booking Date; Modification Merchant Reference and the
    Reserved columns), every record type of a real batch, times in the TimeZone column's
    zone: nothing refused, nothing dropped, the MerchantPayout row checks the batch."""
    rows = [
        "Co,Shop,,,,2026-03-02 01:00:00,CET,Balancetransfer,Balancetransfer,,,,,EUR,,100.00,,,,,,"
        "Balancetransfer from batch 237,238,,,,,,,",
        "Co,Shop,PSP1,ORDER-1,visa,2026-03-02 10:00:00,Europe/Amsterdam,Settled,MOD1,EUR,,50.00,1,EUR,,48.50,"
        "0.12,0.60,0.30,0.48,visacredit,,238,,,,,,,",
        "Co,Shop,PSP1,ORDER-1,visa,2026-03-02 11:00:00,CET,Refunded,MOD2,EUR,10.00,,1,EUR,10.00,,,,,,visacredit,"
        "ORDER-1-R1,238,,,,,,,",
        "Co,Shop,PSP2,ORDER-2,mc,2026-03-02 12:00:00,CET,Chargeback,MOD3,EUR,20.00,,1,EUR,20.00,,,,,,mccredit,,238,"
        ",,,,,,",
        "Co,Shop,PSP2,ORDER-2,mc,2026-03-02 12:30:00,CET,SecondChargeback,MOD4,EUR,20.00,,1,EUR,20.00,,,,,,mccredit,,"
        "238,,,,,,,",
        "Co,Shop,PSP3,ORDER-3,mc,2026-03-02 13:00:00,CET,ChargebackReversed,MOD5,EUR,,20.00,1,EUR,,20.00,,,,,"
        "mccredit,,238,,,,,,,",
        "Co,Shop,PSP4,ORDER-4,visa,2026-03-02 13:30:00,CET,RefundedReversed,MOD6,EUR,,5.00,1,EUR,,5.00,,,,,"
        "visacredit,,238,,,,,,,",
        "Co,Shop,,,,2026-03-02 14:00:00,CET,Fee,Transaction Fees March 1 2026,,,,,EUR,0.08,,,,,,,,238,,,,,,,",
        "Co,Shop,,,,2026-03-02 14:00:00,CET,MiscCosts,Misc 1,,,,,EUR,1.00,,,,,,,,238,,,,,,,",
        "Co,Shop,,,,2026-03-02 14:00:00,CET,DepositCorrection,Deposit 1,,,,,EUR,,2.00,,,,,,,238,,,,,,,",
        "Co,Shop,,,,2026-03-02 14:00:00,CET,InvoiceDeduction,Invoice 1,,,,,EUR,3.00,,,,,,,,238,,,,,,,",
        "Co,Shop,,,,2026-03-02 14:00:00,CET,SomethingNew,New 1,,,,,EUR,0.50,,,,,,,,238,,,,,,,",
        "Co,Shop,,,,2026-03-03 02:00:00,CET,MerchantPayout,TX238,,,,,EUR,120.92,,,,,,,,238,,,,,,,",
    ]
    got = parsed(tmp_path, "settlement_detail_report_batch_238.csv", "\r\n".join([ADYEN_EXPORT_HEADER, *rows]) + "\r\n")
    assert got.format == "adyen" and got.problems.is_empty()
    lines = got.lines
    assert lines["record_type"].to_list() == [
        "balance_transfer",
        "charge",
        "refund",
        "chargeback",
        "chargeback",
        "chargeback_reversal",
        "refund_reversal",
        "fee",
        "misc_cost",
        "deposit_correction",
        "invoice_deduction",
        "unclassified",
    ]
    assert lines["net_minor"].to_list() == [10000, 4850, -1000, -2000, -2000, 2000, 500, -8, -100, 200, -300, -50]
    (control,) = got.controls.iter_rows(named=True)
    assert control["declared"] == control["computed"] == 12092
    charge = lines.row(1, named=True)
    assert (charge["gross_minor"], charge["fee_minor"], charge["payment_id"]) == (5000, 150, "ORDER-1")
    # 10:00 in Amsterdam in March is 09:00 UTC; "CET" is +01:00 whatever the season
    assert charge["created_at"] == datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    # no Booking Date: the day the batch's MerchantPayout row was created
    assert set(lines["value_date"].to_list()) == {date(2026, 3, 3)}
    extra = json.loads(lines["raw"][0])
    assert extra["Reserved10"] == "" and extra["Modification Merchant Reference"] == "Balancetransfer from batch 237"
    assert lines["source_type"][-1] == "SomethingNew"
    [verdict] = validate_many([got])
    assert verdict.passed, verdict.failures


def test_columns_in_any_order_any_case_and_semicolons(tmp_path) -> None:
    """The same Stripe lines, columns shuffled and spelt Stripe's other ways, semicolons."""
    head = "net;FEE;Gross;currency;reporting_category;created;balance_transaction_id;automatic_payout_id;my_column"
    body = [
        "9.70;0.30;10.00;EUR;charge;2026-03-02 10:00:00;txn_1;po_1;x",
        "-9.70;0.00;-9.70;eur;payout;2026-03-03 00:00:00;txn_2;po_1;y",
    ]
    got = parsed(tmp_path, "any.csv", "\n".join([head, *body]) + "\n")
    assert got.format == "stripe" and got.problems.is_empty()
    (line,) = got.lines.iter_rows(named=True)
    assert (line["line_id"], line["net_minor"], line["net_currency"], line["payout_id"]) == (
        "txn_1",
        970,
        "EUR",
        "po_1",
    )
    assert json.loads(line["raw"])["my_column"] == "x"
    assert got.controls.row(0, named=True)["declared"] == got.controls.row(0, named=True)["computed"] == 970


def test_stripe_categories_map_to_kinds_and_unknown_ones_are_kept(tmp_path) -> None:
    head = "automatic_payout_id,balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,source_id"
    cats = ["charge", "refund", "dispute", "dispute_reversal", "partial_capture_reversal", "fee", "payout_reversal"]
    cats += ["transfer", "other_adjustment", "refund_failure", "anticipation_repayment"]
    body = [f"po_1,txn_{i},2026-03-02 10:00:00,usd,1.00,0.00,1.00,{c},src_{i}" for i, c in enumerate(cats)]
    got = parsed(tmp_path, "cats.csv", "\n".join([head, *body]))
    assert got.lines["record_type"].to_list() == [
        "charge",
        "refund",
        "chargeback",
        "chargeback_reversal",
        "adjustment",
        "fee",
        "payout_reversal",
        "transfer",
        "adjustment",
        "refund_reversal",
        "unclassified",
    ]
    assert got.lines["payment_id"][0] == "src_0"  # no metadata, no payment intent: the source id


def test_checkout_action_with_several_fee_breakdowns_is_one_line(tmp_path) -> None:
    head = (
        "Payout ID,Action Type,Action ID,Reference,Requested On,Processed On,Processing Currency,Holding Currency,"
        "Breakdown Type,FX Rate Applied,Processing Currency Amount,Holding Currency Amount,Merchant Category"
    )
    body = [
        "PO1,Capture,act_1,ORD-1,2026-03-02T10:00:00.000,2026-03-03T00:00:00.000,USD,GBP,Capture,0.79,100.00,79.00,5999",
        "PO1,Capture,act_1,ORD-1,2026-03-02T10:00:00.000,2026-03-03T00:00:00.000,USD,GBP,Interchange Fee,,,-0.60,5999",
        "PO1,Capture,act_1,ORD-1,2026-03-02T10:00:00.000,2026-03-03T00:00:00.000,USD,GBP,Scheme Variable Fee,,,-0.10,",
        "PO1,Cover Negative Position,act_2,,2026-03-02T11:00:00.000,2026-03-03T00:00:00.000,GBP,GBP,"
        "Cover Negative Position,,5.00,5.00,",
        "PO1,Payout,act_3,,2026-03-03T01:00:00.000,2026-03-03T00:00:00.000,GBP,GBP,Payout,,-83.30,-83.30,",
    ]
    got = parsed(tmp_path, "financial-actions.csv", "\n".join([head, *body]))
    assert got.format == "checkoutcom" and got.problems.is_empty()
    capture, cover = got.lines.iter_rows(named=True)
    assert (capture["gross_minor"], capture["gross_currency"], capture["fee_minor"], capture["net_minor"]) == (
        10000,
        "USD",
        70,
        7830,
    )
    assert capture["fx_rate"] == "0.79" and len(json.loads(capture["raw"])) == 3
    assert (cover["record_type"], cover["net_minor"]) == ("balance_transfer", 500)
    assert got.controls.row(0, named=True)["declared"] == got.controls.row(0, named=True)["computed"] == 8330


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            ADYEN_EXPORT_HEADER.replace("Batch Number,", "") + "\n",
            "wrong columns for the adyen layout: missing ['Batch Number']",
        ),
        (  # as an Adyen test account exported it (session 21): Reserved4-10 are Adyen's own, not unexpected
            ADYEN_EXPORT_HEADER.replace("Net Currency,Net Debit (NC),Net Credit (NC),", "") + ",Shopper Country\n",
            "missing ['Net Currency', 'Net Debit (NC)', 'Net Credit (NC)'], unexpected ['Shopper Country'] (the Net"
            " columns carry what each line and the batch's payout settled",
        ),
        (
            "automatic_payout_id,balance_transaction_id,currency,gross,fee,net,reporting_category\n",
            "missing ['created_utc or created']",
        ),
        ("balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category\n", "automatic_payout_id"),
        ("date,amount,memo\n2026-03-02,1.00,x\n", "not a known settlement report or bank statement"),
    ],
)
def test_a_header_no_layout_fits_names_the_closest_and_what_it_misses(tmp_path, text, says) -> None:
    with pytest.raises(ParseError) as caught:
        parsed(tmp_path, "odd.csv", text)
    assert says in str(caught.value)


def test_unknown_time_zone_is_a_problem_naming_it(tmp_path) -> None:
    text = (
        ADYEN_EXPORT_HEADER
        + "\nCo,Shop,P,O,visa,2026-03-02 10:00:00,Mars/Olympus,Settled,M,EUR,,1.00,1,EUR,,1.00,,,,,,,9,,,,,,,\n"
    )
    got = parsed(tmp_path, "tz.csv", text)
    assert any("Mars/Olympus" in problem for problem in got.problems["problem"])


def test_the_raw_row_survives_the_store_and_the_message(tmp_path) -> None:
    """What intake stores (Parquet) and publishes (one JSON message per line) keeps each
    line's raw row and the processor's type, and the flow reads them back as they were."""
    got = parsed(tmp_path, "batch.csv", ADYEN_EXPORT_HEADER + "\n" + _ONE_ADYEN_ROW)
    write_lines(tmp_path / "state", got, "ab" * 32)
    stored = read_lines(tmp_path / "state", "processor")
    assert stored["raw"].to_list() == got.lines["raw"].to_list()
    assert json.loads(stored["raw"][0])["Reserved4"] == "r4"
    ((_, value),) = list(messages(got, "ab" * 32))
    kind, row = line_row(json.loads(value))
    assert kind == "processor" and (row["raw"], row["source_type"]) == (stored["raw"][0], "Settled")


_ONE_ADYEN_ROW = (
    "Co,Shop,P1,O1,visa,2026-03-02 10:00:00,UTC,Settled,M1,EUR,,1.00,1,EUR,,0.90,0.10,,,,visacredit,,7,r4,,,,,,\n"
)


def test_adyen_rows_that_share_a_modification_reference_are_lines_of_their_own(tmp_path) -> None:
    """Real reports reuse one Modification Reference for different movements (a payment's
    Settled and Refunded rows, every Balancetransfer row): each stays a line with an id of
    its own, while a row written twice is still one line twice, which the suite refuses."""
    rows = [
        "Co,Shop,,,,2026-03-02 01:00:00,UTC,Balancetransfer,Balancetransfer,,,,,EUR,,30.00,,,,,,"
        "Balancetransfer from batch 41,42,,,,,,,",
        "Co,Shop,PSP9,ORD-9,ideal,2026-03-02 09:00:00,UTC,Settled,PSP9,EUR,,20.00,1,EUR,,19.70,0.30,,,,ideal,ORD-9,42"
        ",,,,,,,",
        "Co,Shop,PSP9,ORD-9,ideal,2026-03-02 10:00:00,UTC,Refunded,PSP9,EUR,20.00,,1,EUR,20.00,,,,,,ideal,ORD-9,42"
        ",,,,,,,",
        "Co,Shop,,,,2026-03-03 01:00:00,UTC,Balancetransfer,Balancetransfer,,,,,EUR,29.70,,,,,,,"
        "Balancetransfer to batch 43,42,,,,,,,",
    ]
    good = parsed(tmp_path, "b42.csv", "\n".join([ADYEN_EXPORT_HEADER, *rows]))
    assert good.lines["line_id"].is_unique().all() and good.lines.height == 4
    assert good.lines["net_minor"].sum() == 0  # held whole and carried on: nothing paid out
    assert validate_many([good])[0].passed
    twice = parsed(tmp_path, "b42-twice.csv", "\n".join([ADYEN_EXPORT_HEADER, *rows, rows[1]]))
    [verdict] = validate_many([twice])
    assert any("appears twice" in failure.rule for failure in verdict.failures)
