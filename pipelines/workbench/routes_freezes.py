"""The emergency tier's page (`/freezes`): the freezes a person's tenant may see, and the
forms to freeze a target and to lift a freeze (`actions.freeze`, `actions.lift`, which
releases the payouts the freeze held and says how much)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clearline.pipelines.workbench import actions, auth
from clearline.pipelines.workbench.web import Workbench, money


def router(wb: Workbench) -> APIRouter:
    routes = APIRouter()

    @routes.get("/freezes", response_class=HTMLResponse)
    def freezes_view(request: Request):
        user = wb.page_user(request)
        rows = [f for f in wb.state.freezes() if user["tenant"] == auth.PLATFORM or f["tenant"] == user["tenant"]]
        return wb.render(
            request, "freezes.html.j2", user=user, freezes=rows, kinds=("processor", "merchant", "bank_account")
        )

    @wb.action(routes, "/freezes", back="/freezes", refused="Not frozen")
    def freeze(user: dict, form) -> str:
        kind, target = str(form.get("kind") or ""), str(form.get("target") or "").strip()
        reason = str(form.get("reason") or "")
        fid = actions.freeze(wb.settings, wb.state, user, kind, target, reason, wb.sources.owner(target))
        return f"Freeze {fid}: {kind} {target} is held."

    @wb.action(routes, "/freezes/{freeze_id:int}/lift", back="/freezes", refused="Not lifted")
    def lift(user: dict, form, freeze_id: int) -> str:
        current = wb.state.freeze(freeze_id)
        owner = wb.sources.owner(current["target"]) if current else None
        note = str(form.get("note") or "")
        released = actions.lift(wb.settings, wb.state, user, freeze_id, note, owner, bootstrap=wb.bootstrap)
        if not released:
            return f"Freeze {freeze_id} lifted; it held no payout."
        return f"Freeze {freeze_id} lifted; released {len(released)} held payout(s): {money_totals(released)}."

    return routes


def money_totals(released: list) -> str:
    """What the released payouts send, per currency, as money ("1234.56 GBP")."""
    totals: dict[str, int] = {}
    for e in released:
        totals[e.payload.amount.currency] = totals.get(e.payload.amount.currency, 0) + e.payload.amount.minor
    return ", ".join(money(minor, ccy) for ccy, minor in sorted(totals.items()))
