"""Checkout.com's Settlement Breakdown Report and Payouts report, as Checkout.com documents them.

The files here follow the column lists of Checkout.com's documentation (Settlement
Breakdown Report: "the report can include the following fields in this order"; Payouts
report), with values made up for the test: no such report from a real account is public
under a licence this project can take in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearline.recon.intake import checkoutcom_breakdown
from clearline.recon.intake.ingest import Intake
from clearline.recon.intake.parse import parse_file
from tests.recon.test_intake_quarantine import settings

HEADER = (
    "Client Entity ID,Client Entity Name,Processing Channel ID,Processing Channel Name,Type,Payment ID,Reference,"
    "Processed On,Available On,Holding Currency,Payout ID,Gross In Holding Currency,Deduction In Holding Currency,"
    "Net In Holding Currency,Processing Fee In Holding Currency,Scheme Fee In Holding Currency,"
    "Interchange In Holding Currency,Tax In Holding Currency,Reserve In Holding Currency,Processing Currency,"
    "Gross In Processing Currency,FX Rate Applied,Payment Method"
)
ENTITY = "ent_w2hbtqzjxwd,Acme Supply,pc_k4hs2m,Online"
ROWS = [
    # a charge in EUR settled in GBP, a refund, a chargeback and its reversal, fee-only movements, the payout fee
    "Capture,pay_0001,order-1001,2026-07-01T10:00:00.000,2026-07-03T00:00:00.000,GBP,00000004AB12,"
    "85.20,-2.13,83.07,-1.20,-0.60,-0.33,0,0,EUR,100.00,0.852,VISA",
    "Capture,pay_0002,order-1002,2026-07-01T11:30:00.000,2026-07-03T00:00:00.000,GBP,00000004AB12,"
    "40,-1.1,38.9,-0.7,-0.4,0,0,0,GBP,40,1,MASTERCARD",
    "Refund,pay_0002,order-1002,2026-07-02T09:00:00.000,2026-07-03T00:00:00.000,GBP,00000004AB12,"
    "-10,-0.1,-10.1,-0.1,0,0,0,0,GBP,-10,1,MASTERCARD",
    "Chargeback,pay_0003,order-0990,2026-07-02T12:00:00.000,2026-07-03T00:00:00.000,GBP,00000004AB12,"
    "-25,-15,-40,-15,0,0,0,0,GBP,-25,1,VISA",
    "Chargeback,pay_0003,order-0990,2026-07-02T16:00:00.000,2026-07-03T00:00:00.000,GBP,00000004AB12,"
    "25,0,25,0,0,0,0,0,GBP,25,1,VISA",
    "Void,pay_0004,order-1004,2026-07-02T13:00:00.000,2026-07-03T00:00:00.000,GBP,00000004AB12,"
    "0,-0.3,-0.3,-0.1,-0.2,0,0,0,GBP,0,1,VISA",
    "Capture,pay_0005,,2026-07-02T14:00:00.000,2026-07-03T00:00:00.000,GBP,00000004AB12,"
    "0,-0.25,-0.25,-0.1,-0.05,-0.1,0,0,GBP,0,1,VISA",
    "Merchant Payout,,,2026-07-03T00:00:00.000,2026-07-03T00:00:00.000,GBP,00000004AB12,0,-2,-2,0,0,0,0,0,GBP,0,1,",
]
PAYOUTS = (
    "Client Entity ID,Client Entity Name,Sub Entity ID,Sub Entity Name,Currency Account ID,Currency Account Name,"
    "Holding Currency,Payout ID,Payout Date,Reporting Start Date,Reporting End Date,Payout Amount,"
    "Merchant Payout Fees,Payments,Refunds,Chargebacks\n"
    "ent_w2hbtqzjxwd,Acme Supply,,,ca_x,Acme GBP,GBP,00000004AB12,2026-07-03T02:00:00.000,"
    "2026-07-02T00:00:00.000,2026-07-03T00:00:00.000,94.32,-2,125.2,-10,-15\n"
)


def report(rows: list[str] = ROWS, header: str = HEADER) -> str:
    return header + "\r\n" + "".join(f"{ENTITY},{row}\r\n" for row in rows)


def lines_of(text: str):
    lines, controls, problems = checkoutcom_breakdown.parse(text, "settlement-breakdown.csv").frames()
    return lines, controls, problems


def test_each_movement_is_one_line_with_its_kind_and_amounts() -> None:
    lines, controls, problems = lines_of(report())
    assert problems.is_empty(), problems.to_dicts()
    assert controls.is_empty(), "the report has no payout row: no control is made up"
    rows = lines.select("record_type", "gross_minor", "gross_currency", "fee_minor", "net_minor", "fx_rate").rows()
    assert rows == [
        ("charge", 10_000, "EUR", 213, 8_307, "0.852"),
        ("charge", 4_000, "GBP", 110, 3_890, None),
        ("refund", -1_000, "GBP", 10, -1_010, None),
        ("chargeback", -2_500, "GBP", 1_500, -4_000, None),
        ("chargeback_reversal", 2_500, "GBP", 0, 2_500, None),
        ("misc_cost", 0, "GBP", 30, -30, None),  # a batch kind: gross = net + fee, in the holding currency
        ("misc_cost", 0, "GBP", 25, -25, None),  # a charge's fees with no gross
        ("misc_cost", 0, "GBP", 200, -200, None),  # the payout fee
    ]
    assert lines["net_minor"].sum() == 9_432, "the batch pays what the Payouts report says: 94.32"
    assert lines["line_id"].n_unique() == len(ROWS)
    assert lines["payment_id"].to_list()[:3] == ["order-1001", "order-1002", "order-1002"]
    assert set(lines["payout_id"]) == {"00000004AB12"}
    assert lines["value_date"].cast(str).unique().to_list() == ["2026-07-03"]
    assert lines["source_type"].to_list()[-1] == "Merchant Payout"


def test_columns_in_another_order_with_one_of_the_merchants_own_say_the_same() -> None:
    names = HEADER.split(",")
    order = list(reversed(range(len(names))))
    header = ",".join([names[i] for i in order] + ["Our Cost Centre"])
    rows = []
    for row in ROWS:
        cells = f"{ENTITY},{row}".split(",")
        rows.append(",".join([cells[i] for i in order] + ["CC-7"]))
    moved, _, problems = lines_of(header + "\n" + "\n".join(rows) + "\n")
    plain, _, _ = lines_of(report())
    assert problems.is_empty()
    same = [c for c in plain.columns if c not in ("raw", "line_no")]
    assert moved.select(same).equals(plain.select(same))
    assert json.loads(moved["raw"][0])["Our Cost Centre"] == "CC-7", "the extra column is kept with the line"


def test_amounts_that_do_not_add_up_and_an_unknown_type_are_named() -> None:
    rows = [ROWS[1].replace(",40,-1.1,38.9,", ",40,-1.1,39.9,"), ROWS[0].replace("Capture,", "Instant Settlement,")]
    lines, _, problems = lines_of(report(rows))
    assert problems.rows() == [(2, "Gross In Holding Currency 40 + Deduction -1.1 is not Net 39.9")]
    assert lines["record_type"].to_list() == ["charge", "unclassified"]


def test_intake_takes_the_report_in_and_knows_it_again(tmp_path: Path) -> None:
    path = tmp_path / "settlement-breakdown_ent_w2hbtqzjxwd_20260703_00000004AB12_1.csv"
    path.write_text(report())
    assert parse_file(path).format == "checkoutcom_breakdown"
    intake = Intake(settings(tmp_path / "state"))
    (first,) = intake.ingest([path])
    assert (first.status, first.format, first.lines) == ("accepted", "checkoutcom_breakdown", len(ROWS)), first
    again = tmp_path / "downloaded-again.csv"
    again.write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
    (second,) = intake.ingest([again])
    assert second.status == "received_again", second


@pytest.mark.parametrize("text", [PAYOUTS])
def test_the_payouts_report_is_refused_naming_what_to_send(tmp_path: Path, text: str) -> None:
    path = tmp_path / "payouts_ent_w2hbtqzjxwd_20260702_20260703_1.csv"
    path.write_text(text)
    (outcome,) = Intake(settings(tmp_path / "state")).ingest([path])
    assert outcome.status == "quarantined"
    assert "Payouts report" in outcome.reason and "Settlement Breakdown" in outcome.reason, outcome.reason
