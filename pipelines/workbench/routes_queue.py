"""The queue page (`/queue`: filter, sort, paginate, totals per currency — one SQL query,
`queue.run`) and its bulk form (assign or resolve the selected variances at once)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clearline.pipelines.workbench import actions, queue
from clearline.pipelines.workbench.forms import request_from_form
from clearline.pipelines.workbench.web import Denied, Workbench


def queue_page(wb: Workbench, user: dict, query: dict[str, str]) -> queue.Page:
    """The page of the queue these query parameters ask for, of the variances `user` sees."""
    try:
        filters = queue.Filters.from_query(query, wb.settings.page_size, wb.settings.max_page_size)
        return queue.run(wb.sources.cursor(), filters, wb.tenant_filter(user), wb.rules)
    except queue.BadFilter as exc:
        raise Denied(400, str(exc)) from None


def _back(form) -> str:
    back = str(form.get("back") or "/queue")
    return back if back.startswith("/queue") else "/queue"


def router(wb: Workbench) -> APIRouter:
    routes = APIRouter()

    @routes.get("/queue", response_class=HTMLResponse)
    def queue_view(request: Request):
        user = wb.page_user(request)
        page = queue_page(wb, user, dict(request.query_params))
        tenant = wb.tenant_filter(user)
        choices = {c: wb.sources.values(c, tenant) for c in ("category", "processor", "currency", "assignee")}
        return wb.render(
            request,
            "queue.html.j2",
            user=user,
            page=page,
            f=page.filters,
            choices=choices,
            tiers=queue.tiers(wb.rules),
            statuses=queue.STATUSES,
            sorts=list(queue.SORTS),
            codes=wb.settings.codes,
            link=lambda **changes: "/queue?" + urlencode(page.filters.query(**changes)),
        )

    @wb.action(routes, "/queue/bulk", back=_back, refused="Nothing done")
    def bulk(user: dict, form) -> str:
        ids = [str(i) for i in form.getlist("ids")]
        if not ids:
            return "Select at least one variance."
        for vid in ids:
            wb.visible(user, vid)
        outcome = actions.move(wb.settings, wb.state, user, ids, request_from_form(form, wb.settings, wb.today()))
        return f"{len(ids)} variance(s) {outcome}."

    return routes
