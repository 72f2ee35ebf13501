"""Emergency freezes: only approvers freeze and lift, a reseller's approver only its own
merchants, processors and bank accounts only the platform's; a target is frozen once at a
time; the active freezes are published for the payout side and the risk flow; every
freeze, lift and refusal is in the audit log."""

from __future__ import annotations

import pytest

from clearline.pipelines.workbench import freezes
from clearline.pipelines.workbench.state import WorkbenchState
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
