"""A processor line's raw row as a (field, value) table with the differing field marked
(pipelines/workbench/raw_rows.py): rows as real intake keeps them (`csv_rows` on a CSV in
Stripe's and Checkout.com's layouts), and the invariants on any row."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from clearline.pipelines.workbench import raw_rows
from clearline.recon.intake.checkoutcom import LAYOUT as CHECKOUT
from clearline.recon.intake.csv_report import csv_rows
from clearline.recon.intake.stripe import LAYOUT as STRIPE

STRIPE_CSV = (
    "balance_transaction_id,automatic_payout_id,created_utc,currency,gross,fee,net,reporting_category,available_on_utc\n"
    "txn_1,po_1,2026-01-17 04:29:48,gbp,748.81,19.06,729.75,charge,2026-01-22 00:00:00\n"
)
CHECKOUT_HEADER = (
    "Payout ID,Action Type,Action ID,Requested On,Processing Currency,Holding Currency,Breakdown Type,"
    "Processing Currency Amount,Holding Currency Amount\n"
)
CHECKOUT_CSV = CHECKOUT_HEADER + (
    "po_1,Capture,act_1,2026-01-17T04:29:48.073,GBP,GBP,Capture,748.81,748.81\n"
    "po_1,Capture,act_1,2026-01-17T04:29:48.073,GBP,GBP,Acquirer Fee,,-19.06\n"
)


def marked(tables) -> list[tuple[str, str]]:
    return [(c.name, c.value) for part in tables for c in part if c.differs]


def test_a_stripe_row_as_intake_keeps_it_marks_the_fee_column():
    (row,) = csv_rows(STRIPE_CSV, STRIPE)
    (part,) = raw_rows.table(row.raw, "fee", "19.06 GBP")
    assert [(c.name, c.value) for c in part] == list(json.loads(row.raw).items())  # every column, in file order
    assert marked([part]) == [("fee", "19.06")]
    net = raw_rows.table(row.raw, "net", "729.75 GBP")
    assert marked(net) == [("net", "729.75")]


def test_a_checkout_action_is_one_table_per_breakdown_row_and_the_fee_row_is_marked():
    rows = list(csv_rows(CHECKOUT_CSV, CHECKOUT))
    raw = "[" + ",".join(r.raw for r in rows) + "]"  # as Checkout.com's intake keeps an action
    capture, fee = raw_rows.table(raw, "fee", "19.06 GBP")
    assert marked([capture]) == []
    assert marked([fee]) == [("Breakdown Type", "Acquirer Fee"), ("Holding Currency Amount", "-19.06")]


def test_a_bank_lines_text_is_not_a_table():
    assert raw_rows.table(":61:2601220122C729,75NTRFNONREF//po_1", "net", "729.75 GBP") is None
    assert raw_rows.table(None, "net", "729.75 GBP") is None
    assert raw_rows.table("[1, 2]", "net", "729.75 GBP") is None


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
values = st.one_of(st.none(), st.text(max_size=12), st.integers(), st.booleans())


@given(st.dictionaries(names, values, min_size=1, max_size=8), st.sampled_from(sorted(raw_rows.WORDS)))
def test_every_column_is_shown_once_in_order_and_a_column_named_for_the_field_is_marked(row, field):
    (part,) = raw_rows.table(json.dumps(row), field, None)
    assert [c.name for c in part] == list(row)
    assert [c.value for c in part] == ["" if v is None else str(v) for v in row.values()]
    named = sorted(raw_rows.WORDS[field])[0]
    (cell,) = raw_rows.table(json.dumps({f"Some {named.upper()} (NC)": "x"}), field, None)[0]
    assert cell.differs


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False).filter(lambda d: d != 0))
def test_a_cell_holding_the_reported_number_is_marked_whatever_its_sign(amount):
    row = {"col_a": str(amount), "col_b": str(abs(amount) + 1)}
    (part,) = raw_rows.table(json.dumps(row), "unrelated", f"{abs(amount)} EUR")
    assert [c.differs for c in part] == [True, False]
