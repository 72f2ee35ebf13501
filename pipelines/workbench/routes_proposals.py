"""Adjusting entries under maker-checker: a person proposes the entry (the standard one
for the variance's category, or legs they wrote), another approves or refuses it
(`actions.propose`, `actions.approve`, `actions.refuse` keep the rules)."""

from __future__ import annotations

from fastapi import APIRouter

from clearline.pipelines.workbench import actions
from clearline.pipelines.workbench.forms import legs_from_form, manual_body
from clearline.pipelines.workbench.web import Denied, Workbench


def router(wb: Workbench) -> APIRouter:
    routes = APIRouter()

    # a leg the contract refuses (its side, its amount: ValueError) is told like a refusal
    page = "/variances/{variance_id}"

    @wb.action(routes, page + "/propose", back=page, refused="Not proposed", catch=ValueError)
    def propose(user: dict, form, variance_id: str) -> str:
        v = wb.visible(user, variance_id)
        adj = actions.adjustments()
        if adj is None:
            raise actions.Refused("adjustments are not available yet in this installation")
        made = adj["propose"](v)
        base = actions.to_body(made) if made is not None else manual_body(v)
        memo = str(form.get("memo") or base.get("memo") or "")
        body = {**base, "legs": legs_from_form(form) or base["legs"], "memo": memo}
        pid = actions.propose(wb.state, user, v, wb.sources.tenant_of(v), body)
        return f"Proposal {pid} saved: another person must approve it."

    def proposal(proposal_id: int, decision: str) -> dict:
        found = wb.state.proposal(proposal_id)
        if found is None or decision not in ("approve", "refuse"):
            raise Denied(404, f"no proposal {proposal_id}")
        return found

    def back(form, proposal_id: int, decision: str) -> str:
        return f"/variances/{proposal(proposal_id, decision)['variance_id']}"

    @wb.action(routes, "/proposals/{proposal_id:int}/{decision}", back=back, refused="Not {decision}d")
    def decide(user: dict, form, proposal_id: int, decision: str) -> str:
        p = proposal(proposal_id, decision)
        v = wb.visible(user, p["variance_id"])
        note = str(form.get("note") or "")
        if decision == "refuse":
            actions.refuse(wb.state, user, p, note)
            return "Refused."
        event_id = actions.approve(wb.settings, wb.state, user, p, note, bootstrap=wb.bootstrap, variance=v)
        return f"Approved: adjustment.posted {event_id} published."

    return routes
