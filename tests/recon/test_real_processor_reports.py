"""Real processor exports no one here wrote (tests/data/processor_reports, see SOURCES.md):
each file's outcome, stated.

The corpus holds what a licence this project can take allowed: two genuine Stripe
Dashboard Payments exports (one row per charge, no balance transactions, no payouts).
They are not settlement reports, so intake must refuse them at the header, saying what
they are and which report to send instead, and must not read them as lines. Real Adyen
and Stripe settlement reports were found only under GPL/AGPL or no licence (SOURCES.md
lists them); when one under a usable licence turns up, it gets its row here with its
accepted lines or its quarantine reason, as tests/recon/test_real_bank_statements.py does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clearline.recon.intake import stripe
from clearline.recon.intake.model import ParseError
from clearline.recon.intake.parse import parse_file
from tests.recon.corpus import corpus_files, unsourced

CORPUS = Path(__file__).parents[1] / "data" / "processor_reports"

# file -> (line of the parse error, its reason), exactly as intake states them
EXPECTED = {
    "stripe/csv2ofx-stripe-all.csv": (1, stripe.PAYMENTS_REFUSAL),
    "stripe/csv2ofx-stripe-default.csv": (1, stripe.PAYMENTS_REFUSAL),
}


def test_every_report_in_the_corpus_has_a_stated_outcome() -> None:
    assert corpus_files(CORPUS) == set(EXPECTED)
    assert unsourced(CORPUS, EXPECTED) == [], "every file has its SOURCES.md row"
    assert all((CORPUS / name).with_name("LICENSE.csv2ofx").is_file() for name in EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_report_outcome(name) -> None:
    line_no, reason = EXPECTED[name]
    with pytest.raises(ParseError) as refusal:
        parse_file(CORPUS / name)
    assert (refusal.value.line_no, refusal.value.reason) == (line_no, reason)


def test_the_payments_export_is_a_stripe_file_with_charges_only() -> None:
    """What makes the refusal right: the files are Stripe's (charge ids, lower-case
    currency), one row per charge, and carry no column that ties a row to a balance
    transaction or a payout."""
    for name in EXPECTED:
        header, *rows = (CORPUS / name).read_text().splitlines()
        columns = [c.strip('"') for c in header.split(",")]
        assert columns[:4] == ["id", "description", "seller_message", "created"]
        assert {"balance_transaction_id", "automatic_payout_id", "net", "reporting_category"}.isdisjoint(columns)
        assert len(rows) == 5 and all(row.startswith("ch_") for row in rows)
