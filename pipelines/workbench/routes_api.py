"""The JSON API for scripts (`Authorization: Bearer TOKEN`, no cookies, so no CSRF): the
queue, one variance with its audit rows, and assigning or resolving one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from clearline.pipelines.workbench import actions
from clearline.pipelines.workbench.forms import parse_date
from clearline.pipelines.workbench.routes_queue import queue_page
from clearline.pipelines.workbench.web import Denied, Workbench, jsonable


def router(wb: Workbench) -> APIRouter:
    routes = APIRouter(prefix="/api")

    @routes.get("/variances")
    def api_queue(request: Request):
        user = wb.api_user(request)
        page = queue_page(wb, user, dict(request.query_params))
        listing = {
            "count": page.count,
            "page": page.filters.page,
            "pages": page.pages,
            "totals": page.totals,
            "variances": page.rows,
        }
        return JSONResponse(jsonable(listing))

    @routes.get("/variances/{variance_id}")
    def api_variance(request: Request, variance_id: str):
        user = wb.api_user(request)
        v = wb.visible(user, variance_id)
        return JSONResponse(jsonable({**v, "audit": wb.state.audit_rows(variance_id)}))

    @routes.post("/variances/{variance_id}/move")
    async def api_move(request: Request, variance_id: str):
        return await run_in_threadpool(api_move_work, request, variance_id, await request.json())

    def api_move_work(request: Request, variance_id: str, body: Any):
        user = wb.api_user(request)
        wb.visible(user, variance_id)
        try:
            if body.get("assignee"):
                fields = actions.assignment(str(body.get("note") or ""), str(body["assignee"]))
            else:
                note, until = str(body.get("note") or ""), parse_date(body.get("watch_until"))
                fields = actions.resolution(wb.settings, body.get("code"), note, until, wb.today())
            outcome = actions.move(wb.settings, wb.state, user, [variance_id], fields)
        except actions.Refused as exc:
            raise Denied(403 if isinstance(exc, actions.NotAllowed) else 422, str(exc)) from None
        return JSONResponse({"variance_id": variance_id, "outcome": outcome})

    return routes
