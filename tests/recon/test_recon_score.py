"""The scorer counts a variance correct only when category, subject, amount and currency
all agree with one truth row, each truth row once."""

from __future__ import annotations

import polars as pl

from clearline.pipelines.world.discrepancies import TRUTH_SCHEMA
from clearline.recon.matching.variance import SCHEMA
from clearline.recon.score import misses, score

TRUTH = pl.DataFrame(
    [
        {"kind": "fee_mismatch", "processor": "adyen", "line_id": "stl_1", "amount_minor": 20, "currency": "EUR"},
        {"kind": "payout_not_in_bank", "payout_id": "po_1", "amount_minor": 5000, "currency": "USD"},
        {"kind": "unexplained_bank_line", "bank_line_id": "bnx_1", "amount_minor": 777, "currency": "GBP"},
    ],
    schema=TRUTH_SCHEMA,
)


def found(*rows: dict) -> pl.DataFrame:
    base = {
        "variance_id": None,
        "processor": None,
        "reference": None,
        "payout_id": None,
        "ledger_event_ids": [],
        "evidence": [],
    }
    return pl.DataFrame([{**base, **r, "variance_id": f"var_{i}"} for i, r in enumerate(rows)], schema=SCHEMA)


RIGHT = [
    {"category": "fee_mismatch", "processor": "adyen", "reference": "stl_1", "amount_minor": 20, "currency": "EUR"},
    {
        "category": "payout_not_in_bank",
        "processor": "stripe",
        "reference": "po_1",
        "payout_id": "po_1",
        "amount_minor": 5000,
        "currency": "USD",
    },
    {"category": "unexplained_bank_line", "reference": "wire_1", "amount_minor": 777, "currency": "GBP"},
]


def figures(variances: pl.DataFrame) -> dict[str, tuple[int, int, int]]:
    return {s.category: (s.injected, s.found, s.correct) for s in score(TRUTH, variances) if s.injected or s.found}


def test_everything_found_right_is_perfect():
    assert figures(found(*RIGHT)) == {
        "fee_mismatch": (1, 1, 1),
        "payout_not_in_bank": (1, 1, 1),
        "unexplained_bank_line": (1, 1, 1),
    }
    assert all(m.is_empty() for m in misses(TRUTH, found(*RIGHT)))


def test_a_wrong_category_a_wrong_amount_and_a_second_report_cost_what_they_should():
    wrong = [
        {**RIGHT[0], "category": "amount_mismatch"},  # right line, wrong category
        {**RIGHT[1], "amount_minor": 4999},  # right payout, wrong amount
        RIGHT[2],
        RIGHT[2],  # the same break reported twice
    ]
    scores = {s.category: s for s in score(TRUTH, found(*wrong))}
    assert (scores["fee_mismatch"].recall, scores["amount_mismatch"].precision) == (0.0, 0.0)
    assert (scores["payout_not_in_bank"].precision, scores["payout_not_in_bank"].recall) == (0.0, 0.0)
    assert (scores["unexplained_bank_line"].precision, scores["unexplained_bank_line"].recall) == (0.5, 1.0)
    missed, extra = misses(TRUTH, found(*wrong))
    assert sorted(missed["kind"]) == ["fee_mismatch", "payout_not_in_bank"]
    assert extra.height == 3


BALANCES = pl.DataFrame(
    [
        {"kind": "payout_not_in_bank", "payout_id": "mpo_7", "amount_minor": 900, "currency": "EUR"},
        {"kind": "statement_gap", "amount_minor": 4200, "currency": "EUR", "statement": "DE89 2026-01-07"},
        {"kind": "balance_break", "amount_minor": 31, "currency": "GBP", "statement": "GB29 2026-01-09"},
        {"kind": "bank_balance_mismatch", "amount_minor": 31, "currency": "GBP", "statement": "GB29 2026-01-09"},
    ],
    schema=TRUTH_SCHEMA,
)


def test_balance_discrepancies_count_by_the_statement_they_show_on():
    right = [
        # a merchant payout missing from the bank is no processor's payout: known by its reference
        {"category": "payout_not_in_bank", "reference": "mpo_7", "amount_minor": 900, "currency": "EUR"},
        {"category": "statement_gap", "reference": "DE89 2026-01-07", "amount_minor": 4200, "currency": "EUR"},
        {"category": "balance_break", "reference": "GB29 2026-01-09", "amount_minor": 31, "currency": "GBP"},
        {"category": "bank_balance_mismatch", "reference": "GB29 2026-01-09", "amount_minor": 31, "currency": "GBP"},
    ]
    perfect = {s.category: (s.injected, s.correct) for s in score(BALANCES, found(*right)) if s.injected}
    assert perfect == {
        k: (1, 1) for k in ("payout_not_in_bank", "statement_gap", "balance_break", "bank_balance_mismatch")
    }
    elsewhere = [right[0], {**right[1], "reference": "DE89 2026-01-08"}, right[2], {**right[3], "amount_minor": 32}]
    missed, extra = misses(BALANCES, found(*elsewhere))
    assert sorted(missed["kind"]) == ["bank_balance_mismatch", "statement_gap"]
    assert sorted(extra["category"]) == ["bank_balance_mismatch", "statement_gap"]
