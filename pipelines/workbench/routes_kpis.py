"""The KPI page (`/kpis`): the tables `kpis.compute` returns for the person's tenant (or
the platform), each under its title."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.workbench.web import Workbench, jsonable


def kpi_tables(settings: WorkbenchSettings, tenant: str | None) -> tuple[list[tuple[str, list[dict]]], str | None]:
    """The KPI tables as (title, rows), or a sentence saying why there are none."""
    try:
        from clearline.pipelines.workbench import kpis
    except ImportError:
        return [], "KPIs are not available yet in this installation."
    try:
        tables = kpis.compute(kpis.KpiSources.from_config(settings.ledger_state, settings.recon_state), tenant)
    except Exception as exc:  # noqa: BLE001 - another component's failure is shown, not raised
        return [], f"KPIs could not be computed: {exc}"
    return [(title, jsonable(frame.to_dicts())) for title, frame in tables.items()], None


def router(wb: Workbench) -> APIRouter:
    routes = APIRouter()

    @routes.get("/kpis", response_class=HTMLResponse)
    def kpis_view(request: Request):
        user = wb.page_user(request)
        tables, problem = kpi_tables(wb.settings, wb.tenant_filter(user))
        return wb.render(request, "kpis.html.j2", user=user, tables=tables, problem=problem)

    return routes
