"""The emergency tier's page (`/freezes`): the freezes a person's tenant may see, and the
forms to freeze a target and to lift a freeze (`actions.freeze`, `actions.lift`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clearline.pipelines.workbench import actions, auth
from clearline.pipelines.workbench.web import Workbench


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
        actions.lift(wb.settings, wb.state, user, freeze_id, str(form.get("note") or ""), owner)
        return f"Freeze {freeze_id} lifted."

    return routes
