"""The workbench's web application: server-rendered pages (Jinja2, plain CSS, no script
framework, nothing fetched at run time) and a small JSON API.

`create_app` only assembles it: the shared dependencies (`web.Workbench`: settings, the
workbench's store, the published snapshots, templates, the clock), the signed session
cookie, the error pages, and one router per concern:

    routes_login      logging in and out
    routes_queue      the queue and its bulk form
    routes_variance   a variance's evidence; assigning or resolving it
    routes_proposals  adjusting entries: propose, approve, refuse
    routes_freezes    emergency freezes
    routes_kpis       the KPI page
    routes_api        the JSON API (Bearer tokens)

How people and scripts are known, CSRF and tenants: `web`.
"""

from __future__ import annotations

import time
from typing import Callable
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from clearline.pipelines.workbench import (
    routes_api,
    routes_freezes,
    routes_kpis,
    routes_login,
    routes_proposals,
    routes_queue,
    routes_variance,
)
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.workbench.sources import NoVariances, Sources
from clearline.pipelines.workbench.state import WorkbenchState
from clearline.pipelines.workbench.web import Denied, LoginFirst, Workbench, templates

ROUTERS = (
    routes_login,
    routes_queue,
    routes_variance,
    routes_proposals,
    routes_freezes,
    routes_kpis,
    routes_api,
)


def create_app(
    settings: WorkbenchSettings, clock: Callable[[], float] = time.time, bootstrap: str | None = None
) -> FastAPI:
    """The application over `settings`' folders; `clock` (epoch seconds) decides session
    expiry and "today" for the timing rule; `bootstrap` is the Kafka broker adjustments go to
    (None: the configured one)."""
    from clearline import config
    from clearline.recon import ReportRules

    state = WorkbenchState(settings.state_dir)
    wb = Workbench(
        settings=settings,
        state=state,
        sources=Sources(settings),
        rules=ReportRules.from_config(config.load("reports")),
        env=templates(),
        clock=clock,
        bootstrap=bootstrap,
    )
    app = FastAPI(title="Clearline workbench", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=state.secret(),
        session_cookie="clearline_workbench",
        max_age=settings.session_minutes * 60,
        same_site="strict",
    )
    app.state.settings, app.state.sources, app.state.workbench = settings, wb.sources, state

    def refusal(request: Request, status: int, message: str, headers: dict[str, str] | None = None):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status, headers=headers)
        return wb.render(request, "error.html.j2", status=status, message=message, user=wb.session_user(request))

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied):
        return refusal(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(NoVariances)
    async def no_variances(request: Request, exc: NoVariances):
        return refusal(request, 503, str(exc))

    @app.exception_handler(LoginFirst)
    async def login_first(request: Request, exc: LoginFirst):
        return RedirectResponse("/login?" + urlencode({"next": exc.next}), status_code=303)

    for module in ROUTERS:
        app.include_router(module.router(wb))
    return app
