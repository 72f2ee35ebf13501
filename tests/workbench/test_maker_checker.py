"""Maker-checker on adjusting entries, end to end on the real broker: a resolver proposes
the entry the workbench offers for a fee mismatch; the same person cannot approve it (told
why, and audited); an approver does, which publishes `adjustment.posted` to the events
topic; the ledger flow posts it (the fee expense account moves by the entry's amount) and
the recon flow marks the variance resolved by that event. Below and above the approval
threshold: a resolver who is not the proposer may approve a small entry, not a large one."""

from __future__ import annotations

import re

import polars as pl
import pytest

from clearline.pipelines.workbench import actions
from clearline.pipelines.workbench.state import WorkbenchState
from clearline.recon import PUBLISHED_VARIANCES
from tests.workbench.flows import moved, net_by_account, run_flows, variance
from tests.workbench.web import Browser, Clock, serving

pytestmark = pytest.mark.kafka


def test_propose_refuse_the_proposer_approve_and_the_books_and_the_variance_follow(own_deployment, kafka_bootstrap):
    """On an amount mismatch (the browser test works a fee mismatch of the same world)."""
    dep, settings, root = own_deployment
    v = pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES).filter(pl.col("category") == "amount_mismatch")
    vid = v["variance_id"][0]
    with serving(settings, Clock(), bootstrap=kafka_bootstrap) as base:
        pat, amy = Browser(base), Browser(base)
        token = pat.login("pat")
        page = pat.get(f"/variances/{vid}").text
        legs = dict(re.findall(r'name="(leg_(?:account|side|minor)_\d)"[^>]*value="([^"]*)"', page))
        name = legs["leg_account_0"].split(":")[0]
        assert name in actions.adjustments()["accounts"] and int(legs["leg_minor_0"]) > 0
        minor = int(legs["leg_minor_0"])
        before = net_by_account(settings.ledger_state, name)
        sides = re.findall(r"<option selected>(debit|credit)</option>", page.split('id="propose_form"')[1])
        form = {"csrf_token": token, **legs, "leg_side_0": sides[0], "leg_side_1": sides[1], "memo": "settled less"}
        assert pat.post(f"/variances/{vid}/propose", data=form).status_code == 303
        (proposal,) = WorkbenchState(settings.state_dir).proposals(vid)
        assert proposal["status"] == "proposed" and proposal["proposed_by"] == "pat"

        pat.post(f"/proposals/{proposal['proposal_id']}/approve", data={"csrf_token": token, "note": "mine"})
        assert "another person must approve it" in pat.get(f"/variances/{vid}").text

        amy_token = amy.login("amy")
        amy.post(f"/proposals/{proposal['proposal_id']}/approve", data={"csrf_token": amy_token, "note": "checked"})
        approved = WorkbenchState(settings.state_dir).proposal(proposal["proposal_id"])
        assert approved["status"] == "approved" and approved["decided_by"] == "amy"
        assert approved["event_id"] in amy.get(f"/variances/{vid}").text
    audit = [(r["actor"], r["action"]) for r in WorkbenchState(settings.state_dir).audit_rows(vid)]
    assert audit == [("pat", "propose"), ("pat", "approve_refused"), ("amy", "approve")]

    run_flows(dep, settings, root)
    changed = moved(before, net_by_account(settings.ledger_state, name))
    assert [abs(m) for m in changed.values()] == [minor]
    row = variance(settings, vid)
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
    tom = {"name": "tom", "role": "approver", "tenant": "rs_003"}
    resolved = {**variance, "status": "resolved", "note": "the processor refunded the fee"}
    with pytest.raises(actions.Refused, match="resolved already"):
        actions.approve(settings, state, tom, state.proposal(pid), "ok", variance=resolved)
    with pytest.raises(actions.Refused, match="proposed already: one entry per break"):
        actions.propose(state, rex, variance, "rs_003", body)
    with pytest.raises(actions.NotAllowed, match="viewer"):
        actions.refuse(state, {"name": "val", "role": "viewer"}, state.proposal(pid), "no")
    actions.refuse(state, rex, state.proposal(pid), "the threshold entry is wrong")
    with pytest.raises(actions.Refused, match="cannot be posted"):
        actions.propose(state, rex, variance, "rs_003", {**body, "legs": body["legs"][:1]})
    refusals = [
        r["detail"]["reason"] for r in state.audit_rows(variance["variance_id"]) if r["action"] == "approve_refused"
    ]
    assert len(refusals) == 3 and "only an approver" in refusals[0]
    assert state.proposal(pid)["status"] == "refused"
    assert actions.largest_leg(body) < big  # the entry as proposed is below the threshold: a resolver may approve it


def test_an_approval_kafka_does_not_take_stays_a_proposal_and_says_so(own_deployment):
    """The broker is unreachable: the approver is told the entry was not published, the
    proposal stays proposed (approving again later works), the failure is audited."""
    from tests.workbench.web import free_port

    _, settings, _ = own_deployment
    state = WorkbenchState(settings.state_dir)
    variance = (
        pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES)
        .filter(pl.col("category") == "fee_mismatch")
        .row(0, named=True)
    )
    body = actions.to_body(actions.adjustments()["propose"](variance))
    pid = actions.propose(state, {"name": "pat", "role": "resolver"}, variance, "rs_003", body)
    amy = {"name": "amy", "role": "approver", "tenant": "platform"}
    with pytest.raises(actions.Refused, match="not published, it stays proposed"):
        actions.approve(settings, state, amy, state.proposal(pid), "ok", bootstrap=f"127.0.0.1:{free_port()}")
    assert state.proposal(pid)["status"] == "proposed"
    assert [r["action"] for r in state.audit_rows(variance["variance_id"])] == ["propose", "approve_failed"]
