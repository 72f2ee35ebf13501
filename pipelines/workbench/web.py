"""What every page and route of the workbench shares: the stores, the templates, who is
asking (session or API token), which variances they may see, CSRF, and the one shape every
form POST has (`Workbench.form` / `Workbench.action`).

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
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader
from starlette.concurrency import run_in_threadpool

from clearline.currency import minor_to_decimal
from clearline.pipelines.workbench import actions, auth, login_limit
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.workbench.sources import Sources
from clearline.pipelines.workbench.state import WorkbenchState


class Denied(Exception):
    """Stop the request with this status and message (a page, or JSON under /api/)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class LoginFirst(Exception):
    """No live session: send the person to the login page, then back to `next`."""

    def __init__(self, next: str) -> None:
        super().__init__(next)
        self.next = next


def client_address(request: Request) -> str | None:
    """The peer's address as the server saw it (no X-Forwarded-For: nothing vouches for it)."""
    return request.client.host if request.client else None


def money(minor: int | None, currency: str | None) -> str:
    if minor is None or not currency:
        return ""
    try:
        return f"{minor_to_decimal(int(minor), currency)} {currency}"
    except (KeyError, ValueError):
        return f"{minor} minor {currency}"


def cell(value: Any) -> str:
    """A KPI table's cell: floats (rates, hours) to four decimals, nulls empty."""
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("clearline.pipelines.workbench", "templates"),
        autoescape=True,  # every value escaped
    )
    env.filters["money"] = money
    env.filters["cell"] = cell
    return env


@dataclass
class Workbench:
    """The shared dependencies of every router: settings, the workbench's own store, the
    published snapshots, the report rules (SLA tiers), the templates, the clock (epoch
    seconds: session expiry and "today" for the timing rule) and the Kafka broker
    adjustments go to (None: the configured one)."""

    settings: WorkbenchSettings
    state: WorkbenchState
    sources: Sources
    rules: Any
    env: Environment
    clock: Callable[[], float]
    bootstrap: str | None = None

    @property
    def guard(self) -> login_limit.Guard:
        """The failed-login rule over the store, on this application's clock."""
        return login_limit.Guard(self.state, self.settings.login_limit, self.clock)

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock(), timezone.utc).date()

    # ------------------------------------------------------------------ pages

    def csrf_token(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return token

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        user = context.pop("user", None)
        html = self.env.get_template(name).render(
            user=user, csrf=self.csrf_token(request), flash=request.session.pop("flash", None), **context
        )
        return HTMLResponse(html, status_code=status)

    # ------------------------------------------------------------------ who asks

    def session_user(self, request: Request) -> dict | None:
        name, issued = request.session.get("user"), request.session.get("issued")
        if not name or issued is None:
            return None
        if self.clock() - float(issued) > self.settings.session_minutes * 60:
            request.session.clear()
            request.session["flash"] = "Your session expired: log in again."
            return None
        return self.state.user(name)

    def page_user(self, request: Request) -> dict:
        user = self.session_user(request)
        if user is None:
            raise LoginFirst(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return user

    def api_user(self, request: Request) -> dict:
        """The token's user. A bad token counts as a failed login from the client address;
        too many and the address is refused (429), a right token too, until it cools off."""
        client = client_address(request)
        try:
            self.guard.check("api", None, client)
        except login_limit.TooMany as exc:
            raise Denied(429, exc.message, {"Retry-After": str(exc.retry_after_s)}) from None
        header = request.headers.get("authorization", "")
        user = self.state.user_by_token(header[7:].strip()) if header.lower().startswith("bearer ") else None
        if user is None:
            if header:
                self.state.record("api", "token_failed", None, client=client)
                self.guard.failed("api", None, client)
            raise Denied(401, "a Bearer token is required (clearline workbench user add NAME --role … --token)")
        return user

    @staticmethod
    def tenant_filter(user: dict) -> str | None:
        return None if user["tenant"] == auth.PLATFORM else user["tenant"]

    def visible(self, user: dict, variance_id: str) -> dict:
        """The variance if this user may see it; 404 otherwise (absent or another tenant's)."""
        row = self.sources.variance(variance_id)
        if row is None or not auth.sees(user["tenant"], self.sources.tenant_of(row)):
            raise Denied(404, f"no variance {variance_id} for {user['name']}")
        return row

    # ------------------------------------------------------------------ form POSTs

    async def checked_form(self, request: Request):
        """The POSTed form, after its CSRF token is checked (403 without it)."""
        form = await request.form()
        sent = str(form.get("csrf_token") or "")
        expected = request.session.get("csrf") or ""
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Denied(403, "this form has expired or did not come from this site (CSRF token missing or wrong)")
        return form

    def form(self, router: APIRouter, path: str) -> Callable:
        """Register `work(request, form, **path_params) -> Response` as the POST at `path`:
        the form is read and its CSRF token checked on the event loop, then the work runs in
        the thread pool (it may wait on a store or on Kafka). Typed path parameters use
        Starlette's convertors (`{proposal_id:int}`)."""

        def register(work: Callable[..., Response]) -> Callable[..., Response]:
            async def endpoint(request: Request) -> Response:
                form = await self.checked_form(request)
                return await run_in_threadpool(work, request, form, **request.path_params)

            router.add_api_route(path, endpoint, methods=["POST"], name=work.__name__)
            return work

        return register

    def action(
        self,
        router: APIRouter,
        path: str,
        back: str | Callable[..., str],
        refused: str,
        catch: type[Exception] = actions.Refused,
    ) -> Callable:
        """Register a logged-in person's action as the form POST at `path`:
        `work(user, form, **path_params)` does it and returns the message to flash; a
        refusal (`catch`, by default `actions.Refused`) is flashed as "<refused>: why",
        `refused` formatted with the path parameters. Either way the person is sent to
        `back` (a path formatted with the path parameters, or a function of the form and
        them), where the message shows."""

        def register(work: Callable[..., str]) -> Callable[..., str]:
            def act(request: Request, form, **params: Any) -> Response:
                user = self.page_user(request)
                try:
                    message = work(user, form, **params)
                except catch as exc:
                    message = f"{refused.format(**params)}: {exc}"
                request.session["flash"] = message
                target = back(form, **params) if callable(back) else back.format(**params)
                return RedirectResponse(target, status_code=303)

            act.__name__ = work.__name__
            self.form(router, path)(act)
            return work

        return register
