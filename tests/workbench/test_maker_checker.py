"""Maker-checker on adjusting entries, end to end on the real broker: a resolver proposes
the entry the workbench offers for a fee mismatch; the same person cannot approve it (told
why, and audited); an approver does, which publishes `adjustment.posted` to the events
topic; the ledger flow posts it (the fee expense account moves by the entry's amount) and
the recon flow marks the variance resolved by that event. Below and above the approval
threshold: a resolver who is not the proposer may approve a small entry, not a large one."""

from __future__ import annotations

import re
import shutil

import polars as pl
import pytest

from clearline.ledger import access
from clearline.pipelines.workbench import actions
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.workbench.state import WorkbenchState
from clearline.recon import PUBLISHED_VARIANCES
from tests.pipelines.ledger_harness import private_configs
from tests.pipelines.test_recon_flow import clearline
from tests.workbench.web import Browser, Clock, add_users, serving

pytestmark = pytest.mark.kafka


@pytest.fixture
def own_deployment(deployment, tmp_path, monkeypatch):
    """Copies of the deployment's ledger and recon state (with their flows' recovery, so a
    flow run on them resumes where the deployment's stopped), configs whose ledger topic is
    the deployment's events topic, and workbench settings over them."""
    dep, _ = deployment
    ledger, recon = tmp_path / "ledger", tmp_path / "recon"
    shutil.copytree(dep.ledger, ledger)
    shutil.copytree(dep.state, recon)
    monkeypatch.setenv("CLEARLINE_CONFIG_DIR", str(private_configs(tmp_path / "configs", topic=dep.events)))
    settings = WorkbenchSettings.from_config(tmp_path / "workbench", recon, ledger)
    add_users(settings, ("pat", "resolver", "platform"), ("tom", "approver", "rs_003"), ("rex", "resolver", "rs_003"))
    return dep, settings, tmp_path


def fee_expense(ledger) -> dict[str, int]:
    with access.snapshot(ledger) as snap:
        rows = snap.sql(
            "SELECT account, sum(CASE side WHEN 'debit' THEN amount_minor ELSE -amount_minor END)::BIGINT AS net"
            " FROM postings WHERE account LIKE '%:fee_expense:%' GROUP BY account"
        )
    return dict(rows.iter_rows())


def test_propose_refuse_the_proposer_approve_and_the_books_and_the_variance_follow(own_deployment, kafka_bootstrap):
    dep, settings, root = own_deployment
    v = pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES).filter(pl.col("category") == "fee_mismatch")
    vid = v["variance_id"][0]
    before = fee_expense(settings.ledger_state)
    with serving(settings, Clock(), bootstrap=kafka_bootstrap) as base:
        pat, tom = Browser(base), Browser(base)
        token = pat.login("pat")
        page = pat.get(f"/variances/{vid}").text
        legs = dict(re.findall(r'name="(leg_(?:account|side|minor)_\d)"[^>]*value="([^"]*)"', page))
        assert legs["leg_account_0"].startswith("fee_expense:") and int(legs["leg_minor_0"]) > 0
        minor = int(legs["leg_minor_0"])
        sides = re.findall(r"<option selected>(debit|credit)</option>", page.split('id="propose_form"')[1])
        form = {"csrf_token": token, **legs, "leg_side_0": sides[0], "leg_side_1": sides[1], "memo": "fee notice"}
        assert pat.post(f"/variances/{vid}/propose", data=form).status_code == 303
        (proposal,) = WorkbenchState(settings.state_dir).proposals(vid)
        assert proposal["status"] == "proposed" and proposal["proposed_by"] == "pat"

        pat.post(f"/proposals/{proposal['proposal_id']}/approve", data={"csrf_token": token, "note": "mine"})
        assert "another person must approve it" in pat.get(f"/variances/{vid}").text

        tom_token = tom.login("tom")
        tom.post(f"/proposals/{proposal['proposal_id']}/approve", data={"csrf_token": tom_token, "note": "checked"})
        approved = WorkbenchState(settings.state_dir).proposal(proposal["proposal_id"])
        assert approved["status"] == "approved" and approved["decided_by"] == "tom"
        assert approved["event_id"] in tom.get(f"/variances/{vid}").text
    audit = [(r["actor"], r["action"]) for r in WorkbenchState(settings.state_dir).audit_rows(vid)]
    assert audit == [("pat", "propose"), ("pat", "approve_refused"), ("tom", "approve")]

    ledger = ["--topic", dep.events, "--deadletter-topic", dep.dlq, "--state-dir", str(settings.ledger_state)]
    clearline("ledger", "run", "--once", *ledger, "--metrics-port", "0")
    after = fee_expense(settings.ledger_state)
    moved = {a: after.get(a, 0) - before.get(a, 0) for a in after}
    assert sorted(abs(m) for m in moved.values() if m) == [minor]

    inbox = root / "inbox"
    topics = ["--events-topic", dep.events, "--settlements-topic", dep.lines, "--variances-topic", dep.variances]
    clearline("recon", "run", "--once", "--inbox", str(inbox), "--state-dir", str(settings.recon_state), *topics)
    row = (
        pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES)
        .filter(pl.col("variance_id") == vid)
        .row(0, named=True)
    )
    assert row["status"] == "resolved" and approved["event_id"] in row["note"]


def test_the_threshold_decides_who_may_approve_and_every_refusal_is_audited(own_deployment):
    _, settings, _ = own_deployment
    state = WorkbenchState(settings.state_dir)
    v = pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES).filter(pl.col("category") == "fee_mismatch")
    variance = v.row(0, named=True)
    adj = actions.adjustments()
    body = actions.to_body(adj["propose"](variance))
    big = settings.threshold(body["currency"])
    large = {**body, "legs": [{**leg, "minor": big} for leg in body["legs"]]}
    pid = actions.propose(state, {"name": "pat", "role": "resolver"}, variance, "rs_003", large)
    rex = {"name": "rex", "role": "resolver", "tenant": "rs_003"}
    with pytest.raises(actions.Refused, match="only an approver"):
        actions.approve(settings, state, rex, state.proposal(pid), "ok")
    with pytest.raises(actions.Refused, match="another person"):
        actions.approve(settings, state, {"name": "PAT", "role": "approver"}, state.proposal(pid), "ok")
    with pytest.raises(actions.Refused, match="cannot be posted"):
        actions.propose(state, rex, variance, "rs_003", {**body, "legs": body["legs"][:1]})
    refusals = [
        r["detail"]["reason"] for r in state.audit_rows(variance["variance_id"]) if r["action"] == "approve_refused"
    ]
    assert len(refusals) == 2 and "only an approver" in refusals[0]
    assert state.proposal(pid)["status"] == "proposed"
    assert actions.largest_leg(body) < big  # the entry as proposed is below the threshold: a resolver may approve it
