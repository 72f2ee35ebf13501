"""Emergency freezes: only approvers freeze and lift, a reseller's approver only its own
merchants, processors and bank accounts only the platform's; a target is frozen once at a
time; the active freezes are published for the payout side and the risk flow; every
freeze, lift and refusal is in the audit log. Payouts a freeze held are released, through
the ledger, when it is lifted."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

from clearline import freezes as freezes_ground
from clearline.pipelines.connectors import payout_release
from clearline.pipelines.workbench import freezes
from clearline.pipelines.workbench.state import WorkbenchState
from clearline.recon import PUBLISHED_VARIANCES
from tests.workbench.conftest import HELD_MERCHANT
from tests.workbench.flows import moved, net_by_account, run_flows
from tests.workbench.web import Browser, Clock, add_users, serving


@pytest.fixture
def app(deployment_copy):
    add_users(
        deployment_copy,
        ("amy", "approver", "platform"),
        ("pat", "resolver", "platform"),
        ("tom", "approver", "rs_003"),
    )
    with serving(deployment_copy, Clock()) as base:
        yield deployment_copy, base


def merchants_of(settings, tenant: str) -> list[str]:
    import polars as pl

    files = sorted((settings.ledger_state / "archive").glob("event_date=*/*.parquet"))
    rows = pl.scan_parquet(files).filter(pl.col("reseller_id") == tenant).select("merchant_id").unique().collect()
    return sorted(rows["merchant_id"])


def test_freezing_and_lifting_through_the_page(app):
    settings, base = app
    own, other = merchants_of(settings, "rs_003")[0], merchants_of(settings, "rs_002")[0]
    tom, amy, pat = Browser(base), Browser(base), Browser(base)
    t, a, p = tom.login("tom"), amy.login("amy"), pat.login("pat")

    def freeze(b, token, kind, target, reason="suspected fraud"):
        b.post("/freezes", data={"csrf_token": token, "kind": kind, "target": target, "reason": reason})
        return b.get("/freezes").text

    assert "only an approver" in freeze(pat, p, "merchant", own)
    assert "not one of rs_003" in freeze(tom, t, "merchant", other)
    assert "only the platform" in freeze(tom, t, "processor", "adyen")
    assert "is held" in freeze(tom, t, "merchant", own)
    assert "frozen already" in freeze(amy, a, "merchant", own)
    assert "is held" in freeze(amy, a, "processor", "adyen")
    active = freezes.read_active(settings.state_dir)
    assert {(f["kind"], f["target"], f["frozen_by"]) for f in active} == {
        ("merchant", own, "tom"),
        ("processor", "adyen", "amy"),
    }
    assert freezes.is_frozen(active, "merchant", own)["tenant"] == "rs_003"
    assert freezes.is_frozen(active, "merchant", other) is None

    tom_page = tom.get("/freezes").text
    assert own in tom_page and "adyen" not in tom_page  # a reseller sees its own freezes
    state = WorkbenchState(settings.state_dir)
    fid = next(f["freeze_id"] for f in state.freezes(active_only=True) if f["target"] == own)
    tom.post(f"/freezes/{fid}/lift", data={"csrf_token": t, "note": ""})
    assert "a note is required" in tom.get("/freezes").text
    tom.post(f"/freezes/{fid}/lift", data={"csrf_token": t, "note": "merchant verified"})
    assert "lifted" in tom.get("/freezes").text
    assert [f["target"] for f in freezes.read_active(settings.state_dir)] == ["adyen"]
    trail = [(r["actor"], r["action"]) for r in state.audit_rows() if "freeze" in r["action"] or "lift" in r["action"]]
    assert trail == [
        ("pat", "freeze_refused"),
        ("tom", "freeze_refused"),
        ("tom", "freeze_refused"),
        ("tom", "freeze"),
        ("amy", "freeze_refused"),
        ("amy", "freeze"),
        ("tom", "lift_refused"),
        ("tom", "lift"),
    ]
    assert state.verify_audit() is None


@pytest.mark.kafka
def test_lifting_a_freeze_releases_what_it_held_through_the_ledger_once(own_deployment, kafka_bootstrap):
    """The deployment's world held a merchant's payouts (payout.held): the ledger set them
    aside in payouts_held and the bank shows none of them, so reconciliation reports none
    missing. An approver freezes that merchant in the workbench and lifts the freeze: one
    payout.released per held payout is published, and after the flows run the ledger has
    sent each from payouts_held out of the bank. Lifting again releases nothing twice."""
    dep, settings, root = own_deployment
    held = payout_release.held_payouts(settings.ledger_state / "archive", "merchant", HELD_MERCHANT)
    assert held and {e.merchant_id for e in held} == {HELD_MERCHANT}
    total = sum(e.payload.amount.minor for e in held)
    (currency,) = {e.payload.amount.currency for e in held}
    held_acct = f"{held[0].reseller_id}:payouts_held:{HELD_MERCHANT}"
    assert net_by_account(settings.ledger_state, "payouts_held") == {held_acct: -total}
    ids = {e.payload.payout_id for e in held}
    open_ = pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES).filter(pl.col("status") != "resolved")
    assert not open_.filter(pl.col("reference").is_in(list(ids))).height, "a held payout is not missing at the bank"

    bank_before = net_by_account(settings.ledger_state, "bank_cash")
    with serving(settings, Clock(), bootstrap=kafka_bootstrap) as base:
        amy = Browser(base)
        token = amy.login("amy")
        amy.post("/freezes", data={"csrf_token": token, "kind": "merchant", "target": HELD_MERCHANT, "reason": "kyc"})
        state = WorkbenchState(settings.state_dir)
        (fid,) = [f["freeze_id"] for f in state.freezes(active_only=True)]
        amy.post(f"/freezes/{fid}/lift", data={"csrf_token": token, "note": "documents received"})
        assert f"released {len(held)} held payout(s)" in amy.get("/freezes").text
        assert not state.freezes(active_only=True)
    (lift,) = [r for r in state.audit_rows() if r["action"] == "lift"]
    released = lift["detail"]["released"]
    assert len(released) == len(held)

    run_flows(dep, settings, root)
    assert net_by_account(settings.ledger_state, "payouts_held") == {held_acct: 0}
    assert moved(bank_before, net_by_account(settings.ledger_state, "bank_cash")) == {
        f"platform:bank_cash:{currency}": -total
    }
    assert payout_release.held_payouts(settings.ledger_state / "archive", "merchant", HELD_MERCHANT) == []
    # a second release of the same payouts (a retry after a timeout) is the same events: duplicates
    again = [freezes_ground.release_of(e, "amy", datetime.now(timezone.utc)) for e in held]
    assert sorted(e.event_id for e in again) == sorted(released)
