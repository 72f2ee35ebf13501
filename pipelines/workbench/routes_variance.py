"""A variance's page (`/variances/ID`): the field that differs, the ledger's postings and
the events behind them, the processor and bank lines as they stand in their files, its
history and audit rows, the forms to work it; and the form that assigns or resolves it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clearline.pipelines.workbench import actions, raw_rows
from clearline.pipelines.workbench.forms import request_from_form
from clearline.pipelines.workbench.sources import file_lines
from clearline.pipelines.workbench.web import Workbench


def evidence(wb: Workbench, v: dict) -> dict[str, Any]:
    """Everything the variance's page shows beside the variance itself."""
    from clearline.recon import pending_resolutions

    event_ids = list(v.get("ledger_event_ids") or [])
    adj = actions.adjustments()
    proposal = None
    if adj is not None and v["status"] != "resolved":
        made = adj["propose"](v)
        proposal = actions.to_body(made) if made is not None else None
    return {
        "v": v,
        "tenant": wb.sources.tenant_of(v),
        "postings": wb.sources.postings(event_ids),
        "events": wb.sources.events(event_ids),
        "lines": [shown_line(line, v) for line in wb.sources.lines(list(v.get("evidence") or []))],
        "other_evidence": [e for e in (v.get("evidence") or []) if not file_lines([e])],
        "history": history(wb, v["variance_id"]),
        "pending": [p for p in pending_resolutions(wb.settings.recon_state) if p["variance_id"] == v["variance_id"]],
        "audit": wb.state.audit_rows(v["variance_id"]),
        "codes": wb.settings.codes,
        "adjustments": adj is not None,
        "accounts": list(adj["accounts"]) if adj else [],
        "proposal": proposal,
        "proposals": wb.state.proposals(v["variance_id"]),
        "threshold": wb.settings.threshold(v["currency"]),
    }


def shown_line(line: dict, v: dict) -> dict:
    """A processor or bank line as the page shows it: its raw row as a table of cells (or
    None: raw text) and its normalised fields as cells, the variance's field marked in both."""
    field, reported = v.get("field"), v.get("actual")
    fields = [
        raw_rows.cell(name, value, field, reported)
        for name, value in line["fields"].items()
        if value is not None and name not in ("source_file", "line_no")
    ]
    return {**line, "table": raw_rows.table(line["raw"], field, reported), "fields": fields}


def history(wb: Workbench, variance_id: str) -> list[dict]:
    """The store's history rows: from the store itself when no flow holds it (a moment's
    read, which a starting flow waits out), else from its published history."""
    import duckdb
    import polars as pl

    from clearline.recon import PUBLISHED_VARIANCE_HISTORY, VarianceStore

    path = wb.settings.recon_state / "variances.duckdb"
    try:
        store = VarianceStore(path) if path.is_file() else None
    except duckdb.IOException:
        store = None
    if store is not None:
        with store:
            return store.history(variance_id).to_dicts()
    published = wb.settings.recon_state / PUBLISHED_VARIANCE_HISTORY
    if not published.is_file():
        return []
    rows = pl.scan_parquet(published).filter(pl.col("variance_id") == variance_id).collect()
    return rows.sort("changed_at").to_dicts()


def router(wb: Workbench) -> APIRouter:
    routes = APIRouter()

    @routes.get("/variances/{variance_id}", response_class=HTMLResponse)
    def variance_view(request: Request, variance_id: str):
        user = wb.page_user(request)
        v = wb.visible(user, variance_id)
        return wb.render(request, "variance.html.j2", user=user, **evidence(wb, v))

    @wb.action(routes, "/variances/{variance_id}/move", back="/variances/{variance_id}", refused="Nothing done")
    def move_one(user: dict, form, variance_id: str) -> str:
        wb.visible(user, variance_id)
        fields = request_from_form(form, wb.settings, wb.today())
        outcome = actions.move(wb.settings, wb.state, user, [variance_id], fields)
        return f"{'Assigned' if fields.get('assignee') else 'Resolved'} ({outcome})."

    return routes
