"""An emergency freeze on the real risk flow: `clearline risk run --once` over the real
broker, Feast and MLflow (test_risk_flow's world and models), its policy reading a freezes
snapshot the workbench's `publish` wrote with one merchant frozen. That merchant's orders
on terms are declined with the reason frozen_merchant first, on the decisions topic and
in the decision log, with the score and the other reasons the same run without the freeze
gave them; every other merchant's decisions are exactly that run's."""

from __future__ import annotations

import pytest

from clearline.models.decision_journal import read_log
from clearline.pipelines.workbench import freezes as workbench_freezes
from tests.pipelines.test_risk_flow import _topic_decisions, main_run, setup  # noqa: F401  (world, models, a run)

pytestmark = pytest.mark.kafka


def test_a_frozen_merchants_orders_carry_the_freeze_and_no_other_merchants_do(setup, main_run, tmp_path):  # noqa: F811
    terms = setup["terms"]
    counts = terms.group_by("merchant_id").len().sort(["len", "merchant_id"], descending=[True, False])
    merchant = counts["merchant_id"][0]  # the merchant with the most orders on terms
    assert counts.height > 1, "the world should hold orders on terms of several merchants"
    state = tmp_path / "workbench"
    workbench_freezes.publish(
        state,
        [
            {
                "kind": "merchant",
                "target": merchant,
                "tenant": terms.filter(terms["merchant_id"] == merchant)["reseller_id"][0],
                "reason": "suspected bust-out",
                "frozen_by": "alice",
                "frozen_at": "2026-12-06T23:30:00+00:00",
            }
        ],
    )
    env = setup["env"]("frozen", freezes={"snapshot": str(state / "published" / "freezes.json"), "outcome": "decline"})
    summary = env.flow()
    topic = _topic_decisions(setup["bootstrap"], env.decisions_topic)
    assert len(topic) == terms.height and summary["decisions"] == terms.height
    held = [r for r in topic if r["merchant_id"] == merchant]
    others = [r for r in topic if r["merchant_id"] != merchant]
    assert len(held) == counts["len"][0] and others
    for r in held:
        assert r["decision"] == "decline" and r["credit_limit"]["minor"] == 0
        assert r["policy_reasons"][0] == "frozen_merchant" and len(r["policy_reasons"]) > 1  # and why else
        assert r["challenger"] is None or r["challenger"]["decision"] != "approve"
    assert any(r["model"] is not None for r in held)  # scored as usual, then held
    unfrozen = {r["event_id"]: r for r in main_run[3]}  # the same stream decided without the freeze
    decided = lambda r: (r["decision"], r["credit_limit"], r["policy_reasons"], r["score"], r["model"])  # noqa: E731
    for r in held:
        assert r["policy_reasons"] == ["frozen_merchant", *unfrozen[r["event_id"]]["policy_reasons"]]
        assert r["score"] == unfrozen[r["event_id"]]["score"]
    assert any(unfrozen[r["event_id"]]["decision"] == "approve" for r in held)  # the freeze turned approvals down
    assert all(decided(r) == decided(unfrozen[r["event_id"]]) for r in others)
    log = read_log(env.state, "decisions")
    frozen_in_log = log.filter(log["policy_reasons"].str.starts_with("frozen_merchant,"))
    assert set(frozen_in_log["event_id"]) == {r["event_id"] for r in held}
    assert set(frozen_in_log["decision"]) == {"decline"}
