"""The variance store: a finance team's status on a variance survives every re-run that
finds the same break; moves need a note; every change is in the history."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

from clearline.recon.matching.variance import SCHEMA, variance_id
from clearline.recon.variances.store import BadTransition, VarianceNotFound, VarianceStore


def variances(*refs: str, amount: int = 290) -> pl.DataFrame:
    rows = [
        {
            "variance_id": variance_id("fee_mismatch", f"adyen|{r}"),
            "category": "fee_mismatch",
            "processor": "adyen",
            "reference": r,
            "payout_id": "po_1",
            "amount_minor": amount,
            "currency": "EUR",
            "field": "fee",
            "expected": "2.90 EUR",
            "actual": "3.10 EUR",
            "since": datetime(2026, 3, 2).date(),
            "age_days": 3,
            "ledger_event_ids": ["evt_1"],
            "evidence": ["report.csv:7"],
        }
        for r in refs
    ]
    return pl.DataFrame(rows, schema=SCHEMA)


@pytest.fixture
def store(tmp_path):
    with VarianceStore(tmp_path / "recon" / "variances.duckdb") as s:
        yield s


def test_a_rerun_keeps_status_assignee_and_note_and_refreshes_the_facts(store):
    assert store.record(variances("stl_1", "stl_2")) == {"new": 2, "seen_again": 0}
    vid = variances("stl_1")["variance_id"][0]
    store.move(vid, "asked Adyen for the fee schedule", assignee="ann")
    later = variances("stl_1", "stl_2", "stl_3", amount=300).with_columns(age_days=pl.lit(9, pl.Int64))
    assert store.record(later) == {"new": 1, "seen_again": 2}
    row = store.get(vid)
    assert (row["status"], row["assignee"], row["note"]) == ("assigned", "ann", "asked Adyen for the fee schedule")
    assert (row["amount_minor"], row["age_days"]) == (300, 9)
    assert store.frame("open").height == 2


def test_resolving_records_the_note_and_the_history(store):
    t0, t1, t2 = (datetime(2026, 4, d, tzinfo=timezone.utc) for d in (1, 2, 3))
    store.record(variances("stl_1"), seen_at=t0)
    vid = variances("stl_1")["variance_id"][0]
    store.move(vid, "looking", assignee="ann", at=t1)
    row = store.move(vid, "Adyen credited the difference", at=t2)
    assert (row["status"], row["assignee"], row["note"]) == ("resolved", "ann", "Adyen credited the difference")
    history = store.history(vid)
    assert history["status"].to_list() == ["open", "assigned", "resolved"]
    assert history["note"].to_list() == ["found", "looking", "Adyen credited the difference"]
    store.record(variances("stl_1"))
    assert store.get(vid)["status"] == "resolved"


def test_moves_need_a_note_and_a_known_id(store):
    store.record(variances("stl_1"))
    vid = variances("stl_1")["variance_id"][0]
    with pytest.raises(BadTransition, match="note"):
        store.move(vid, "  ")
    with pytest.raises(BadTransition, match="name"):
        store.move(vid, "x", assignee=" ")
    with pytest.raises(VarianceNotFound, match="var_nope"):
        store.move("var_nope", "x")
    assert store.get(vid)["status"] == "open"


def test_the_store_persists_across_opens(tmp_path):
    path = tmp_path / "v.duckdb"
    vid = variances("stl_1")["variance_id"][0]
    with VarianceStore(path) as s:
        s.record(variances("stl_1"))
        s.move(vid, "done")
    with VarianceStore(path) as s:
        assert s.get(vid)["status"] == "resolved"
