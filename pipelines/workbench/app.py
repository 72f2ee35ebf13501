"""The workbench's web application: server-rendered pages (Jinja2, plain CSS, no script
framework, nothing fetched at run time) and a small JSON API.

People log in with a name and password (argon2-hashed); the session is a cookie signed by
Starlette's SessionMiddleware (itsdangerous) with the secret kept in the state folder, and
it expires `session_minutes` after login: the login time is in the session and checked on
every request (the signed cookie's own max_age backs it up). Scripts use the JSON API with
a Bearer token from `clearline workbench user add --token`; the API takes no cookies, so
it needs no CSRF token.

CSRF: every form carries the session's own random token (made with `secrets`), checked
with `hmac.compare_digest` on every POST before anything else — the synchronizer-token
pattern, chosen over a package such as starlette-csrf because the session is already a
signed server-issued cookie, the forms are rendered here, and it adds no dependency or
second cookie. A POST without the token is 403.

Handlers that touch a store run in the thread pool (plain `def` routes, or
`run_in_threadpool` once a form is read), so one slow request — an approval waiting for
Kafka, a deep queue page — does not stall everyone else's.

Tenants: a reseller's user sees only variances whose merchant that reseller owns (the
ledger's event archive says which); another tenant's variance is 404 by page and by API,
exactly like a variance that does not exist, so ids cannot be probed.
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import date, datetime, timezone
from typing import Any, Callable
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, PackageLoader
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from clearline.currency import minor_to_decimal
from clearline.pipelines.workbench import actions, auth, queue
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.workbench.sources import NoVariances, Sources, file_lines
from clearline.pipelines.workbench.state import WorkbenchState


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _money(minor: int | None, currency: str | None) -> str:
    if minor is None or not currency:
        return ""
    try:
        return f"{minor_to_decimal(int(minor), currency)} {currency}"
    except (KeyError, ValueError):
        return f"{minor} minor {currency}"


def _cell(value: Any) -> str:
    """A KPI table's cell: floats (rates, hours) to four decimals, nulls empty."""
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def create_app(
    settings: WorkbenchSettings, clock: Callable[[], float] = time.time, bootstrap: str | None = None
) -> FastAPI:
    """The application over `settings`' folders; `clock` (epoch seconds) decides session
    expiry and "today" for the timing rule; `bootstrap` is the Kafka broker adjustments go to
    (None: the configured one)."""
    from clearline import config
    from clearline.recon import ReportRules

    state = WorkbenchState(settings.state_dir)
    sources = Sources(settings)
    rules = ReportRules.from_config(config.load("reports"))
    env = Environment(
        loader=PackageLoader("clearline.pipelines.workbench", "templates"),
        autoescape=True,  # every value escaped
    )
    env.filters["money"] = lambda minor, currency: _money(minor, currency)
    env.filters["cell"] = _cell
    app = FastAPI(title="Clearline workbench", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=state.secret(),
        session_cookie="clearline_workbench",
        max_age=settings.session_minutes * 60,
        same_site="strict",
    )
    app.state.settings, app.state.sources, app.state.workbench = settings, sources, state

    def today() -> date:
        return datetime.fromtimestamp(clock(), timezone.utc).date()

    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return token

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        user = context.pop("user", None)
        html = env.get_template(name).render(
            user=user, csrf=csrf_token(request), flash=request.session.pop("flash", None), **context
        )
        return HTMLResponse(html, status_code=status)

    async def form_of(request: Request):
        """The POSTed form, after its CSRF token is checked (403 without it)."""
        form = await request.form()
        sent = str(form.get("csrf_token") or "")
        expected = request.session.get("csrf") or ""
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Denied(403, "this form has expired or did not come from this site (CSRF token missing or wrong)")
        return form

    def session_user(request: Request) -> dict | None:
        name, issued = request.session.get("user"), request.session.get("issued")
        if not name or issued is None:
            return None
        if clock() - float(issued) > settings.session_minutes * 60:
            request.session.clear()
            request.session["flash"] = "Your session expired: log in again."
            return None
        return state.user(name)

    def api_user(request: Request) -> dict:
        header = request.headers.get("authorization", "")
        user = state.user_by_token(header[7:].strip()) if header.lower().startswith("bearer ") else None
        if user is None:
            raise Denied(401, "a Bearer token is required (clearline workbench user add NAME --role … --token)")
        return user

    def tenant_filter(user: dict) -> str | None:
        return None if user["tenant"] == auth.PLATFORM else user["tenant"]

    def visible(user: dict, variance_id: str) -> dict:
        """The variance if this user may see it; 404 otherwise (absent or another tenant's)."""
        row = sources.variance(variance_id)
        if row is None or not auth.sees(user["tenant"], sources.tenant_of(row)):
            raise Denied(404, f"no variance {variance_id} for {user['name']}")
        return row

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return render(request, "error.html.j2", status=exc.status, message=exc.message, user=session_user(request))

    @app.exception_handler(NoVariances)
    async def no_variances(request: Request, exc: NoVariances):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=503)
        return render(request, "error.html.j2", status=503, message=str(exc), user=session_user(request))

    def page_user(request: Request) -> dict:
        user = session_user(request)
        if user is None:
            raise _LoginFirst(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return user

    @app.exception_handler(_LoginFirst)
    async def login_first(request: Request, exc: _LoginFirst):
        return RedirectResponse("/login?" + urlencode({"next": exc.next}), status_code=303)

    # ------------------------------------------------------------------ login

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/queue"):
        return render(request, "login.html.j2", next=next)

    @app.post("/login")
    async def login(request: Request):
        form = await form_of(request)
        return await run_in_threadpool(login_work, request, form)

    def login_work(request: Request, form):
        name, password = str(form.get("name") or ""), str(form.get("password") or "")
        user = state.login(name, password)
        target = str(form.get("next") or "/queue")
        if not target.startswith("/") or target.startswith("//"):
            target = "/queue"
        if user is None:
            state.record(name or "?", "login_failed")
            return render(request, "login.html.j2", status=401, next=target, error="Wrong name or password.")
        request.session.clear()
        request.session.update({"user": user["name"], "issued": clock(), "csrf": secrets.token_urlsafe(32)})
        state.record(user["name"], "login")
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    async def logout(request: Request):
        await form_of(request)
        user = session_user(request)
        if user:
            state.record(user["name"], "logout")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def home():
        return RedirectResponse("/queue", status_code=303)

    # ------------------------------------------------------------------ the queue

    def queue_page(user: dict, query: dict[str, str]) -> queue.Page:
        try:
            filters = queue.Filters.from_query(query, settings.page_size, settings.max_page_size)
            return queue.run(sources.cursor(), filters, tenant_filter(user), rules)
        except queue.BadFilter as exc:
            raise Denied(400, str(exc)) from None

    @app.get("/queue", response_class=HTMLResponse)
    def queue_view(request: Request):
        user = page_user(request)
        page = queue_page(user, dict(request.query_params))
        tenant = tenant_filter(user)
        choices = {c: sources.values(c, tenant) for c in ("category", "processor", "currency", "assignee")}
        return render(
            request,
            "queue.html.j2",
            user=user,
            page=page,
            f=page.filters,
            choices=choices,
            tiers=queue.tiers(rules),
            statuses=queue.STATUSES,
            sorts=list(queue.SORTS),
            codes=settings.codes,
            link=lambda **changes: "/queue?" + urlencode(page.filters.query(**changes)),
        )

    @app.post("/queue/bulk")
    async def bulk(request: Request):
        form = await form_of(request)
        return await run_in_threadpool(bulk_work, request, form)

    def bulk_work(request: Request, form):
        user = page_user(request)
        ids = [str(i) for i in form.getlist("ids")]
        back = str(form.get("back") or "/queue")
        back = back if back.startswith("/queue") else "/queue"
        if not ids:
            request.session["flash"] = "Select at least one variance."
            return RedirectResponse(back, status_code=303)
        for vid in ids:
            visible(user, vid)
        try:
            request_fields = _request_from_form(form, settings, today())
            outcome = actions.move(settings, state, user, ids, request_fields)
        except actions.Refused as exc:
            request.session["flash"] = f"Nothing done: {exc}"
            return RedirectResponse(back, status_code=303)
        request.session["flash"] = f"{len(ids)} variance(s) {outcome}."
        return RedirectResponse(back, status_code=303)

    # ------------------------------------------------------------------ one variance

    @app.get("/variances/{variance_id}", response_class=HTMLResponse)
    def variance_view(request: Request, variance_id: str):
        user = page_user(request)
        v = visible(user, variance_id)
        return render(request, "variance.html.j2", user=user, **_evidence(v))

    def _evidence(v: dict) -> dict[str, Any]:
        from clearline.recon import pending_resolutions

        event_ids = list(v.get("ledger_event_ids") or [])
        adj = actions.adjustments()
        proposal = None
        if adj is not None and v["status"] != "resolved":
            made = adj["propose"](v)
            proposal = actions.to_body(made) if made is not None else None
        return {
            "v": v,
            "tenant": sources.tenant_of(v),
            "postings": sources.postings(event_ids),
            "events": sources.events(event_ids),
            "lines": sources.lines(list(v.get("evidence") or [])),
            "other_evidence": [e for e in (v.get("evidence") or []) if not file_lines([e])],
            "history": _history(v["variance_id"]),
            "pending": [p for p in pending_resolutions(settings.recon_state) if p["variance_id"] == v["variance_id"]],
            "audit": state.audit_rows(v["variance_id"]),
            "codes": settings.codes,
            "adjustments": adj is not None,
            "accounts": list(adj["accounts"]) if adj else [],
            "proposal": proposal,
            "proposals": state.proposals(v["variance_id"]),
            "threshold": settings.threshold(v["currency"]),
        }

    def _history(variance_id: str) -> list[dict]:
        """The store's history rows: from the store itself when no flow holds it (a moment's
        read, which a starting flow waits out), else from its published history."""
        import duckdb
        import polars as pl

        from clearline.recon import PUBLISHED_VARIANCE_HISTORY, VarianceStore

        path = settings.recon_state / "variances.duckdb"
        try:
            store = VarianceStore(path) if path.is_file() else None
        except duckdb.IOException:
            store = None
        if store is not None:
            with store:
                return store.history(variance_id).to_dicts()
        published = settings.recon_state / PUBLISHED_VARIANCE_HISTORY
        if not published.is_file():
            return []
        rows = pl.scan_parquet(published).filter(pl.col("variance_id") == variance_id).collect()
        return rows.sort("changed_at").to_dicts()

    @app.post("/variances/{variance_id}/move")
    async def move_one(request: Request, variance_id: str):
        form = await form_of(request)
        return await run_in_threadpool(move_one_work, request, form, variance_id)

    def move_one_work(request: Request, form, variance_id: str):
        user = page_user(request)
        visible(user, variance_id)
        try:
            fields = _request_from_form(form, settings, today())
            outcome = actions.move(settings, state, user, [variance_id], fields)
            request.session["flash"] = f"{'Assigned' if fields.get('assignee') else 'Resolved'} ({outcome})."
        except actions.Refused as exc:
            request.session["flash"] = f"Nothing done: {exc}"
        return RedirectResponse(f"/variances/{variance_id}", status_code=303)

    @app.post("/variances/{variance_id}/propose")
    async def propose(request: Request, variance_id: str):
        form = await form_of(request)
        return await run_in_threadpool(propose_work, request, form, variance_id)

    def propose_work(request: Request, form, variance_id: str):
        user = page_user(request)
        v = visible(user, variance_id)
        adj = actions.adjustments()
        try:
            if adj is None:
                raise actions.Refused("adjustments are not available yet in this installation")
            made = adj["propose"](v)
            base = actions.to_body(made) if made is not None else _manual_body(v)
            legs = _legs_from_form(form)
            body = {**base, "legs": legs or base["legs"], "memo": str(form.get("memo") or base.get("memo") or "")}
            pid = actions.propose(state, user, v, sources.tenant_of(v), body)
            request.session["flash"] = f"Proposal {pid} saved: another person must approve it."
        except (actions.Refused, ValueError) as exc:
            request.session["flash"] = f"Not proposed: {exc}"
        return RedirectResponse(f"/variances/{variance_id}", status_code=303)

    @app.post("/proposals/{proposal_id}/{decision}")
    async def decide(request: Request, proposal_id: int, decision: str):
        form = await form_of(request)
        return await run_in_threadpool(decide_work, request, form, proposal_id, decision)

    def decide_work(request: Request, form, proposal_id: int, decision: str):
        user = page_user(request)
        proposal = state.proposal(proposal_id)
        if proposal is None or decision not in ("approve", "refuse"):
            raise Denied(404, f"no proposal {proposal_id}")
        v = visible(user, proposal["variance_id"])
        note = str(form.get("note") or "")
        try:
            if decision == "approve":
                event_id = actions.approve(settings, state, user, proposal, note, bootstrap=bootstrap, variance=v)
                request.session["flash"] = f"Approved: adjustment.posted {event_id} published."
            else:
                actions.refuse(state, user, proposal, note)
                request.session["flash"] = "Refused."
        except actions.Refused as exc:
            request.session["flash"] = f"Not {decision}d: {exc}"
        return RedirectResponse(f"/variances/{proposal['variance_id']}", status_code=303)

    # ------------------------------------------------------------------ emergency freezes

    @app.get("/freezes", response_class=HTMLResponse)
    def freezes_view(request: Request):
        user = page_user(request)
        rows = [f for f in state.freezes() if user["tenant"] == auth.PLATFORM or f["tenant"] == user["tenant"]]
        return render(
            request, "freezes.html.j2", user=user, freezes=rows, kinds=("processor", "merchant", "bank_account")
        )

    @app.post("/freezes")
    async def freeze(request: Request):
        form = await form_of(request)
        return await run_in_threadpool(freeze_work, request, form)

    def freeze_work(request: Request, form):
        user = page_user(request)
        kind, target = str(form.get("kind") or ""), str(form.get("target") or "").strip()
        try:
            fid = actions.freeze(
                settings, state, user, kind, target, str(form.get("reason") or ""), sources.owner(target)
            )
            request.session["flash"] = f"Freeze {fid}: {kind} {target} is held."
        except actions.Refused as exc:
            request.session["flash"] = f"Not frozen: {exc}"
        return RedirectResponse("/freezes", status_code=303)

    @app.post("/freezes/{freeze_id}/lift")
    async def lift(request: Request, freeze_id: int):
        form = await form_of(request)
        return await run_in_threadpool(lift_work, request, form, freeze_id)

    def lift_work(request: Request, form, freeze_id: int):
        user = page_user(request)
        current = state.freeze(freeze_id)
        owner = sources.owner(current["target"]) if current else None
        try:
            actions.lift(settings, state, user, freeze_id, str(form.get("note") or ""), owner)
            request.session["flash"] = f"Freeze {freeze_id} lifted."
        except actions.Refused as exc:
            request.session["flash"] = f"Not lifted: {exc}"
        return RedirectResponse("/freezes", status_code=303)

    # ------------------------------------------------------------------ KPIs

    @app.get("/kpis", response_class=HTMLResponse)
    def kpis(request: Request):
        user = page_user(request)
        tables, problem = _kpi_tables(settings, tenant_filter(user))
        return render(request, "kpis.html.j2", user=user, tables=tables, problem=problem)

    # ------------------------------------------------------------------ JSON API

    @app.get("/api/variances")
    def api_queue(request: Request):
        user = api_user(request)
        page = queue_page(user, dict(request.query_params))
        return JSONResponse(
            _jsonable(
                {
                    "count": page.count,
                    "page": page.filters.page,
                    "pages": page.pages,
                    "totals": page.totals,
                    "variances": page.rows,
                }
            )
        )

    @app.get("/api/variances/{variance_id}")
    def api_variance(request: Request, variance_id: str):
        user = api_user(request)
        v = visible(user, variance_id)
        return JSONResponse(_jsonable({**v, "audit": state.audit_rows(variance_id)}))

    @app.post("/api/variances/{variance_id}/move")
    async def api_move(request: Request, variance_id: str):
        return await run_in_threadpool(api_move_work, request, variance_id, await request.json())

    def api_move_work(request: Request, variance_id: str, body: Any):
        user = api_user(request)
        visible(user, variance_id)
        try:
            if body.get("assignee"):
                fields = actions.assignment(str(body.get("note") or ""), str(body["assignee"]))
            else:
                until = body.get("watch_until")
                fields = actions.resolution(
                    settings, body.get("code"), str(body.get("note") or ""), _date(until), today()
                )
            outcome = actions.move(settings, state, user, [variance_id], fields)
        except actions.Refused as exc:
            raise Denied(403 if isinstance(exc, actions.NotAllowed) else 422, str(exc)) from None
        return JSONResponse({"variance_id": variance_id, "outcome": outcome})

    return app


class _LoginFirst(Exception):
    def __init__(self, next: str) -> None:
        super().__init__(next)
        self.next = next


def _date(text: Any) -> date | None:
    if text in (None, ""):
        return None
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise actions.Refused(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _request_from_form(form, settings: WorkbenchSettings, today: date) -> dict[str, Any]:
    if str(form.get("action") or "") == "assign":
        return actions.assignment(str(form.get("note") or ""), str(form.get("assignee") or ""))
    return actions.resolution(
        settings, str(form.get("code") or ""), str(form.get("note") or ""), _date(form.get("watch_until")), today
    )


def _legs_from_form(form) -> list[dict[str, Any]]:
    """The edited legs: rows leg_account_N / leg_side_N / leg_minor_N; blank rows skipped."""
    legs = []
    for n in range(20):
        account = str(form.get(f"leg_account_{n}") or "").strip()
        if not account:
            continue
        minor = str(form.get(f"leg_minor_{n}") or "").strip()
        if not minor.lstrip("-").isdigit():
            raise actions.Refused(f"leg {n + 1}: amount {minor!r} is not a whole number of minor units")
        legs.append({"account": account, "side": str(form.get(f"leg_side_{n}") or ""), "minor": int(minor)})
    return legs


def _manual_body(v: dict) -> dict[str, Any]:
    return {
        "variance_id": v["variance_id"],
        "merchant_id": v.get("merchant_id"),
        "processor": v.get("processor"),
        "currency": v["currency"],
        "kind": "manual",
        "legs": [],
        "memo": "",
    }


def _kpi_tables(settings: WorkbenchSettings, tenant: str | None) -> tuple[list[tuple[str, list[dict]]], str | None]:
    """H4's KPI tables as (title, rows), or a sentence saying why there are none."""
    try:
        from clearline.pipelines.workbench import kpis
    except ImportError:
        return [], "KPIs are not available yet in this installation."
    try:
        tables = kpis.compute(kpis.KpiSources.from_config(settings.ledger_state, settings.recon_state), tenant)
    except Exception as exc:  # noqa: BLE001 - another component's failure is shown, not raised
        return [], f"KPIs could not be computed: {exc}"
    return [(title, _jsonable(frame.to_dicts())) for title, frame in tables.items()], None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
