"""Logging in and out: the login form (argon2 through `WorkbenchState.login`), a fresh
session with its own CSRF token on success, both audited; too many failed logins for a
name or from an address refuse further attempts for a while (`login_limit`)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from clearline.pipelines.workbench import login_limit
from clearline.pipelines.workbench.web import Workbench, client_address


def router(wb: Workbench) -> APIRouter:
    routes = APIRouter()

    @routes.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/queue"):
        return wb.render(request, "login.html.j2", next=next)

    @wb.form(routes, "/login")
    def login(request: Request, form) -> Response:
        name, password = str(form.get("name") or ""), str(form.get("password") or "")
        target = str(form.get("next") or "/queue")
        if not target.startswith("/") or target.startswith("//"):
            target = "/queue"
        client, guard = client_address(request), wb.guard
        try:
            guard.check(name or "?", name, client)  # before the password is looked at
        except login_limit.TooMany as exc:
            request.session["flash"] = exc.message
            return wb.render(request, "login.html.j2", status=429, next=target)
        user = wb.state.login(name, password)
        if user is None:
            wb.state.record(name or "?", "login_failed", client=client)
            guard.failed(name or "?", name, client)
            return wb.render(request, "login.html.j2", status=401, next=target, error="Wrong name or password.")
        guard.succeeded(name)
        request.session.clear()
        request.session.update({"user": user["name"], "issued": wb.clock(), "csrf": secrets.token_urlsafe(32)})
        wb.state.record(user["name"], "login")
        return RedirectResponse(target, status_code=303)

    @wb.form(routes, "/logout")
    def logout(request: Request, form) -> Response:
        user = wb.session_user(request)
        if user:
            wb.state.record(user["name"], "logout")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @routes.get("/")
    def home():
        return RedirectResponse("/queue", status_code=303)

    return routes
