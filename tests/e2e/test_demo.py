"""The main job end to end, as `make demo` runs it, on topics of its own: every step runs,
and its summary holds the pipeline's promises (nothing failed, ledger invariants and chain,
every injected discrepancy found by the stream and nothing else, reports written, models
registered, one decision per order on terms, a backtest without leakage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka.admin import AdminClient
from hypothesis import given
from hypothesis import strategies as st

from clearline import config
from clearline.pipelines.demo import broken_promises

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_topic_prefix_namespaces_every_topic_and_nothing_else(monkeypatch):
    monkeypatch.setenv("CLEARLINE_TOPIC_PREFIX", "run7.")
    assert set(config.load("topics")["topics"]) == {
        f"run7.payments.{t}" for t in ("events", "deadletter", "decisions", "settlements", "variances")
    }
    ledger = config.load("ledger")
    assert (ledger["topic"], ledger["deadletter_topic"]) == ("run7.payments.events", "run7.payments.deadletter")
    assert config.load("recon")["intake"]["topic"] == "run7.payments.settlements"
    assert ledger["state_dir"] == "var/ledger" and config.topic("x") == "run7.x"
    monkeypatch.delenv("CLEARLINE_TOPIC_PREFIX")
    assert config.load("ledger")["topic"] == "payments.events"


KEPT = {
    "failed": 0,
    "invariants_hold": True,
    "chain_verified": True,
    "recon_precision_recall_1": True,
    "backtest_leakage_checks_passed": True,
}
# what a broken promise's entry may hold: only exactly 0 failed and exactly True keep one
BROKEN = {
    "failed": st.sampled_from([3, None, False, True, "0", 0.5]),
    **{k: st.sampled_from([False, None, 1, "yes", [True]]) for k in KEPT if k != "failed"},
}


def test_broken_promises_names_each_promise_the_summary_does_not_keep():
    healthy = {**KEPT, "recon_missed": 0, "recon_unexpected": 0, "backtest_leakage_checks_fired": [], "events": 9}
    assert broken_promises(healthy) == []
    assert broken_promises({**healthy, "recon_precision_recall_1": False, "recon_missed": 2}) == [
        "recon precision and recall 1.0 on the world's truth: missed 2, unexpected 0"
    ]
    fired = {"backtest_leakage_checks_passed": False, "backtest_leakage_checks_fired": ["replay", "oracle"]}
    assert broken_promises({**healthy, **fired}) == ["backtest leakage checks passed: fired: replay, oracle"]
    assert broken_promises({**healthy, "chain_verified": False, "failed": 2}) == [
        "every event delivered: failed is 2",
        "ledger hash chain verifies: chain_verified is False",
    ]
    stopped = {"failed_step": "ledger check", "failed": 0}  # the steps after it never ran
    assert broken_promises(stopped) == [
        "step 'ledger check' failed",
        "ledger invariants hold: never checked (no invariants_hold in the summary)",
        "ledger hash chain verifies: never checked (no chain_verified in the summary)",
        "recon precision and recall 1.0 on the world's truth: never checked "
        "(no recon_precision_recall_1 in the summary)",
        "backtest leakage checks passed: never checked (no backtest_leakage_checks_passed in the summary)",
    ]


@given(
    st.fixed_dictionaries({k: st.sampled_from(["kept", "broken", "missing"]) for k in KEPT}).flatmap(
        lambda states: st.tuples(
            st.just(states), st.fixed_dictionaries({k: BROKEN[k] for k, s in states.items() if s == "broken"})
        )
    ),
    st.sampled_from([None, "", "backtest"]),
)
def test_the_demo_is_healthy_exactly_when_every_promise_is_kept(states_and_values, failed_step):
    states, values = states_and_values
    summary = {k: v for k, v in KEPT.items() if states[k] == "kept"} | values
    if failed_step is not None:
        summary["failed_step"] = failed_step
    broken = broken_promises(summary)
    expected = sum(s != "kept" for s in states.values()) + bool(failed_step)
    assert len(broken) == expected, (summary, broken)
    assert (broken == []) == (all(s == "kept" for s in states.values()) and not failed_step)


def test_the_demo_runs_the_whole_pipeline_on_its_own_topics(kafka_bootstrap, tmp_path):
    prefix = f"test-demo-{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "CLEARLINE_TOPIC_PREFIX": prefix}
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        # The demo as shipped (its default world): a smaller one leaves the backtest too few
        # matured orders to judge, and its oracle check rightly refuses the result.
        done = subprocess.run(
            [sys.executable, "-m", "clearline.pipelines.cli", "demo", "--out", str(tmp_path / "demo"), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
    finally:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if ours:
            for future in admin.delete_topics(ours).values():
                future.result()
    assert done.returncode == 0, done.stderr[-2000:]
    s = json.loads(done.stdout)
    assert broken_promises(s) == [] and s["backtest_leakage_checks_fired"] == []
    assert s["topics"] == f"{prefix}payments.*"
    assert s["failed"] == 0 and s["delivered"] == s["events"]
    assert s["ledger_posted"] == s["ledger_consumed"] >= s["events"]  # plus the opening capital
    assert s["ledger_dead_lettered"] == 0 and s["invariants_hold"] and s["chain_verified"]
    assert s["files_quarantined"] == 0 and s["files_accepted"] > 0
    assert s["variances"] == s["injected_discrepancies"] == s["recon_injected"]
    assert s["recon_missed"] == 0 and s["recon_unexpected"] == 0 and s["recon_precision_recall_1"]
    assert (tmp_path / "demo" / "reports" / "variances.html").stat().st_size > 0
    assert s["champion"] and (tmp_path / "demo" / "mlflow" / "mlflow.db").exists()
    orders_on_terms = s["risk_requests"]
    assert orders_on_terms > 0 and s["risk_decisions"] == orders_on_terms == sum(s["decisions_by_outcome"].values())
    assert s["backtest_orders"] > 0 and s["backtest_leakage_checks_passed"]
    assert set(s["backtest_auc"]) == {"champion", "challenger"} and s["backtest_recommendation"]
    assert (tmp_path / "demo" / "reports" / "backtest" / "backtest.html").stat().st_size > 0
