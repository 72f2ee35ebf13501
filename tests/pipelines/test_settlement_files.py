"""Processor settlement files: written in each processor's layout, read back exactly.

Every test writes files from a normalised table, reads them back with the csv module the
way an intake would, recomputes integer minor units from the decimals and compares them
with the table: amounts, fees, references, batches and payout days must all survive.
"""

from __future__ import annotations

import csv
import tempfile
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.currency import decimal_to_minor
from clearline.pipelines.world.settlement_files import (
    ADYEN_FEE_COLUMNS,
    FEE_PARTS,
    write_settlement_reports,
)
from clearline.recon import ADYEN_LAYOUT, CHECKOUTCOM_LAYOUT, STRIPE_LAYOUT

DAY1, DAY2 = date(2026, 1, 7), date(2026, 1, 8)
T0 = datetime(2026, 1, 5, 9, 30, 15, 123456, tzinfo=timezone.utc)


class Lines:
    """Builds settlement lines the way the generator does: net = converted gross - fee."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(
        self,
        processor,
        batch,
        record_type,
        gross,
        fee=0,
        *,
        ccy="USD",
        net_ccy=None,
        fx=None,
        converted=None,
        parts=(0, 0, 0, 0),
        method="card",
        day=DAY1,
        payment="pay-1001",
    ):
        n = len(self.rows)
        net_ccy = net_ccy or ccy
        net = (gross if converted is None else converted) - fee
        self.rows.append(
            {
                "processor": processor,
                "line_id": f"{processor[:3]}-line-{n:04d}",
                "batch_id": batch,
                "record_type": record_type,
                "payment_id": payment,
                "psp_reference": f"PSP{n:013d}",
                "merchant_id": f"m_{n % 3}",
                "created_at": T0 + timedelta(minutes=7 * n),
                "available_on": day,
                "gross_minor": gross,
                "gross_currency": ccy,
                "fee_minor": fee,
                "net_minor": net,
                "net_currency": net_ccy,
                "fx_rate": fx,
                **dict(zip(FEE_PARTS, parts)),
                "payment_method": method,
            }
        )

    def payout(self, processor, batch, day) -> None:
        """The batch's payout line: it pays out the net of everything else in the batch."""
        own = [r for r in self.rows if r["processor"] == processor and r["batch_id"] == batch]
        total = sum(r["net_minor"] for r in own)
        self.add(processor, batch, "payout", -total, ccy=own[0]["net_currency"], method=None, day=day, payment=None)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema_overrides={"created_at": pl.Datetime("us", "UTC")})


def world_lines() -> pl.DataFrame:
    """A small world with every record type, an FX line, ACH, two currencies and days."""
    w = Lines()
    # Adyen batch 4001 (USD): interchange++ fees split into Adyen's four fee columns.
    w.add("adyen", "4001", "charge", 10_000, 115, parts=(12, 60, 13, 30))
    w.add(
        "adyen",
        "4001",
        "charge",
        5_000,
        68,
        ccy="EUR",
        net_ccy="USD",
        fx="1.0850",
        converted=5_425,
        parts=(12, 33, 7, 16),
        payment="pay-1002",
    )
    w.add("adyen", "4001", "charge", 20_000, 25, parts=(25, 0, 0, 0), method="ach", payment="pay-1003")
    w.add("adyen", "4001", "refund", -2_500, payment="pay-1001")
    w.add("adyen", "4001", "chargeback", -10_000, 1_500, parts=(1_500, 0, 0, 0), payment="pay-1003")
    w.add("adyen", "4001", "chargeback_reversal", 10_000, payment="pay-1003")
    w.add("adyen", "4001", "fee", 0, 1_500, parts=(1_500, 0, 0, 0), payment="pay-1003")
    w.payout("adyen", "4001", DAY2)
    w.add("adyen", "4002", "charge", 7_777, 93, ccy="EUR", parts=(12, 47, 10, 24), day=DAY2, payment="pay-1004")
    w.payout("adyen", "4002", DAY2)
    # Stripe: two payouts arrive on DAY2 (USD, GBP), one on the next day.
    w.add("stripe", "po_A", "charge", 10_000, 320)
    w.add("stripe", "po_A", "charge", 9_000, 72, method="ach", payment="pay-2002")
    w.add("stripe", "po_A", "chargeback", -10_000, 1_500, payment="pay-2001")
    w.add("stripe", "po_A", "fee", 0, 1_500, payment="pay-2001")
    w.payout("stripe", "po_A", DAY2)
    w.add(
        "stripe",
        "po_B",
        "charge",
        4_000,
        146,
        ccy="EUR",
        net_ccy="GBP",
        fx="0.8612",
        converted=3_445,
        payment="pay-2003",
    )
    w.add("stripe", "po_B", "refund", -1_000, ccy="GBP", payment="pay-2004")
    w.add("stripe", "po_B", "chargeback_reversal", 2_000, ccy="GBP", payment="pay-2005")
    w.payout("stripe", "po_B", DAY2)
    w.add("stripe", "po_C", "charge", 1_234_567_89, 3_580_277, day=DAY2, payment="pay-2006")
    w.payout("stripe", "po_C", DAY2 + timedelta(days=1))
    # Checkout.com: one weekly GBP payout with an FX capture.
    w.add("checkoutcom", "CKO-0001", "charge", 12_000, 320, ccy="GBP", payment="pay-3001")
    w.add(
        "checkoutcom",
        "CKO-0001",
        "charge",
        10_000,
        215,
        ccy="USD",
        net_ccy="GBP",
        fx="0.7854",
        converted=7_854,
        payment="pay-3002",
    )
    w.add("checkoutcom", "CKO-0001", "refund", -3_000, ccy="GBP", payment="pay-3001")
    w.add("checkoutcom", "CKO-0001", "chargeback", -12_000, 2_000, ccy="GBP", payment="pay-3001")
    w.add("checkoutcom", "CKO-0001", "chargeback_reversal", 12_000, ccy="GBP", payment="pay-3001")
    w.add("checkoutcom", "CKO-0001", "fee", 0, 2_000, ccy="GBP", payment="pay-3001")
    w.payout("checkoutcom", "CKO-0001", date(2026, 1, 12))
    return w.frame()


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def minor(text: str, currency: str) -> int:
    return decimal_to_minor(text, currency) if text else 0


def by_line(lines: pl.DataFrame, processor: str) -> dict[str, dict]:
    return {r["line_id"]: r for r in lines.filter(pl.col("processor") == processor).iter_rows(named=True)}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[pl.DataFrame, Path, list[Path]]:
    lines = world_lines()
    out = tmp_path_factory.mktemp("world")
    return lines, out, write_settlement_reports(lines, out)


def test_file_names_follow_each_processor(written) -> None:
    _, out, paths = written
    assert sorted(p.relative_to(out).as_posix() for p in paths) == [
        "adyen/settlement_detail_report_batch_4001.csv",
        "adyen/settlement_detail_report_batch_4002.csv",
        "checkoutcom/financial-actions_ent_clearline_20260112_CKO-0001_1.csv",
        "stripe/payout_reconciliation_2026-01-08.csv",
        "stripe/payout_reconciliation_2026-01-09.csv",
    ]


def test_adyen_report_round_trips(written) -> None:
    lines, out, _ = written
    expected = by_line(lines, "adyen")
    seen = {}
    for path in sorted((out / "adyen").glob("*.csv")):
        header, rows = read_csv(path)
        assert ADYEN_LAYOUT.missing(header) == []
        batch_net = 0
        for row in rows:
            line = expected[row["Modification Reference"]]
            seen[line["line_id"]] = row
            nc = row["Net Currency"]
            net = minor(row["Net Credit (NC)"], nc) - minor(row["Net Debit (NC)"], nc)
            batch_net += net
            assert (row["Batch Number"], nc, net) == (line["batch_id"], line["net_currency"], line["net_minor"])
            assert [minor(row[c], nc) for c in ADYEN_FEE_COLUMNS] == [line[p] for p in FEE_PARTS]
            assert row["Psp Reference"] == line["psp_reference"]
            assert row["Merchant Reference"] == (line["payment_id"] or "")
            assert row["Merchant Account"] == line["merchant_id"]
            assert row.get("Booking Date", line["available_on"].isoformat()) == line["available_on"].isoformat()
            zone = {"CET": "+01:00", "CEST": "+02:00"}.get(row["TimeZone"], row["TimeZone"])
            written = datetime.fromisoformat(row["Creation Date"])
            written = written.replace(tzinfo=timezone.utc if zone == "UTC" else ZoneInfo(zone) if "/" in zone else None)
            if written.tzinfo is None:
                written = datetime.fromisoformat(row["Creation Date"] + zone)
            assert written == line["created_at"].replace(microsecond=0)
            assert path.name == f"settlement_detail_report_batch_{line['batch_id']}.csv"
            if line["record_type"] in ("fee", "payout"):
                assert row["Gross Debit (GC)"] == row["Gross Credit (GC)"] == row["Exchange Rate"] == ""
            else:
                gc = row["Gross Currency"]
                gross = minor(row["Gross Credit (GC)"], gc) - minor(row["Gross Debit (GC)"], gc)
                assert (gc, gross) == (line["gross_currency"], line["gross_minor"])
                assert row["Exchange Rate"] == (line["fx_rate"] or "1")
                assert row["Payment Method"] in ({"ach"} if line["payment_method"] == "ach" else {"visa", "mc"})
        assert batch_net == 0, "the MerchantPayout row pays out exactly the batch"
        assert rows[-1]["Type"] == "MerchantPayout"
    assert seen.keys() == expected.keys()
    types = {expected[k]["record_type"]: row["Type"] for k, row in seen.items()}
    assert types == {
        "charge": "Settled",
        "refund": "Refunded",
        "chargeback": "Chargeback",
        "chargeback_reversal": "ChargebackReversed",
        "fee": "Fee",
        "payout": "MerchantPayout",
    }


def test_stripe_report_round_trips(written) -> None:
    lines, out, _ = written
    expected = by_line(lines, "stripe")
    seen = {}
    payout_net: dict[str, int] = defaultdict(int)
    for path in sorted((out / "stripe").glob("*.csv")):
        header, rows = read_csv(path)
        assert STRIPE_LAYOUT.missing(header) == []
        for row in rows:
            line = expected[row["balance_transaction_id"]]
            seen[line["line_id"]] = row
            ccy = row["currency"]
            assert ccy.upper() == line["net_currency"] and ccy in (ccy.lower(), ccy.upper())
            gross, fee, net = (minor(row[c], ccy.upper()) for c in ("gross", "fee", "net"))
            assert (gross, fee, net) == (line["net_minor"] + line["fee_minor"], line["fee_minor"], line["net_minor"])
            payout_net[row["automatic_payout_id"]] += net
            assert row["automatic_payout_id"] == line["batch_id"]
            assert row["source_id"] == line["psp_reference"]
            assert row["payment_metadata[merchant_reference]"] == (line["payment_id"] or "")
            assert row.get("created_utc", row.get("created")) == line["created_at"].strftime("%Y-%m-%d %H:%M:%S")
            assert row.get("available_on_utc", row.get("available_on")) == f"{line['available_on']} 00:00:00"
            if line["record_type"] in ("fee", "payout"):
                assert row["customer_facing_amount"] == row["customer_facing_currency"] == ""
            else:
                assert row["customer_facing_currency"].upper() == line["gross_currency"]
                assert minor(row["customer_facing_amount"], line["gross_currency"]) == line["gross_minor"]
        day = path.stem.removeprefix("payout_reconciliation_")
        effective = {
            row.get("automatic_payout_effective_at", row.get("automatic_payout_effective_at_utc")) for row in rows
        }
        assert effective == {f"{day} 00:00:00"}
    assert seen.keys() == expected.keys()
    assert dict(payout_net) == {"po_A": 0, "po_B": 0, "po_C": 0}
    categories = {expected[k]["record_type"]: row["reporting_category"] for k, row in seen.items()}
    assert categories == {
        "charge": "charge",
        "refund": "refund",
        "chargeback": "dispute",
        "chargeback_reversal": "dispute_reversal",
        "fee": "fee",
        "payout": "payout",
    }


def test_checkout_report_round_trips(written) -> None:
    lines, out, _ = written
    expected = by_line(lines, "checkoutcom")
    (path,) = (out / "checkoutcom").glob("*.csv")
    header, rows = read_csv(path)
    assert CHECKOUTCOM_LAYOUT.missing(header) == []
    actions: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        actions[row["Action ID"]].append(row)
    assert actions.keys() == expected.keys()
    assert sum(minor(r["Holding Currency Amount"], r["Holding Currency"]) for r in rows) == 0
    for action_id, action_rows in actions.items():
        line = expected[action_id]
        gross_rows = [r for r in action_rows if r["Breakdown Type"] != "Acquirer Fee"]
        fee_rows = [r for r in action_rows if r["Breakdown Type"] == "Acquirer Fee"]
        net = sum(minor(r["Holding Currency Amount"], r["Holding Currency"]) for r in action_rows)
        fee = -sum(minor(r["Holding Currency Amount"], r["Holding Currency"]) for r in fee_rows)
        gross = sum(minor(r["Processing Currency Amount"], r["Processing Currency"]) for r in gross_rows)
        assert (net, fee, gross) == (line["net_minor"], line["fee_minor"], line["gross_minor"])
        assert {(r["Payout ID"], r.get("Payment ID", line["psp_reference"]), r["Reference"]) for r in action_rows} == {
            (line["batch_id"], line["psp_reference"], line["payment_id"] or "")
        }
        assert {r["Requested On"] for r in action_rows} == {
            line["created_at"].strftime("%Y-%m-%dT%H:%M:%S.") + f"{line['created_at'].microsecond // 1000:03d}"
        }
        kinds = {(r["Action Type"], r["Breakdown Type"]) for r in action_rows}
        assert (
            kinds
            == {
                "charge": {("Capture", "Capture"), ("Capture", "Acquirer Fee")},
                "refund": {("Refund", "Refund")},
                "chargeback": {("Chargeback", "Chargeback (ADJM)"), ("Chargeback", "Acquirer Fee")},
                "chargeback_reversal": {("Chargeback", "Chargeback (CBRV)")},
                "fee": {("Adjustment", "Acquirer Fee")},
                "payout": {("Payout", "Payout")},
            }[line["record_type"]]
        )
    fx_row = next(r for r in rows if r["FX Rate Applied"] == "0.7854")
    assert (fx_row["Processing Currency"], fx_row["Holding Currency"]) == ("USD", "GBP")


def test_fee_breakdown_struct_writes_the_same_files(written, tmp_path) -> None:
    lines, out, paths = written
    nested = lines.with_columns(pl.struct(list(FEE_PARTS)).alias("fee_breakdown")).drop(list(FEE_PARTS))
    again = write_settlement_reports(nested, tmp_path)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_unknown_processor_is_refused(tmp_path) -> None:
    lines = world_lines().with_columns(pl.lit("braintree").alias("processor"))
    with pytest.raises(ValueError, match="braintree"):
        write_settlement_reports(lines, tmp_path)


I64_SAFE = st.integers(min_value=-(2**62), max_value=2**62)  # i64 columns, room for sums


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(I64_SAFE, st.integers(min_value=0, max_value=10**12)), min_size=1, max_size=10),
    st.sampled_from(["USD", "EUR", "JPY", "KRW", "KWD", "CLF"]),
)
def test_random_amounts_survive_every_layout(pairs, currency) -> None:
    """Any i64 amount, in 0-, 2-, 3- and 4-decimal currencies, reads back to the same minor units."""
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
        w.payout(processor, f"B-{processor}", DAY2)
    lines = w.frame()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_settlement_reports(lines, Path(folder))
        net: dict[str, int] = defaultdict(int)
        gross: dict[str, int] = defaultdict(int)
        for path in paths:
            for row in read_csv(path)[1]:
                if "Modification Reference" in row:  # Adyen
                    key = row["Modification Reference"]
                    net[key] += minor(row["Net Credit (NC)"], currency) - minor(row["Net Debit (NC)"], currency)
                    gross[key] += minor(row["Gross Credit (GC)"], currency) - minor(row["Gross Debit (GC)"], currency)
                elif "balance_transaction_id" in row:  # Stripe
                    key = row["balance_transaction_id"]
                    net[key] += minor(row["net"], currency)
                    gross[key] += minor(row["customer_facing_amount"], currency)
                else:  # Checkout.com
                    key = row["Action ID"]
                    net[key] += minor(row["Holding Currency Amount"], currency)
                    gross[key] += minor(row["Processing Currency Amount"], currency)
    records = list(lines.iter_rows(named=True))
    assert dict(net) == {r["line_id"]: r["net_minor"] for r in records}
    payments = {r["line_id"]: r["gross_minor"] for r in records if r["record_type"] != "payout"}
    assert {k: v for k, v in gross.items() if k in payments} == payments
