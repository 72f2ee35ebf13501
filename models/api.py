"""The decision API: HTTP/JSON in front of `clearline.models.decision.decide`, the same decision
function the streaming risk flow calls, so an order gets the same decision, reasons and
model version whichever way it asked.

    POST /v1/decisions        decide an order on terms (idempotent on order_id per tenant)
    GET  /v1/decisions/{id}   a stored decision (only the tenant that asked may read it)
    GET  /health              liveness, and which model decides (or why the rules do)
    GET  /metrics             Prometheus: requests by route and status, latency histogram

Callers are tenants (resellers) with an API key (`X-API-Key`, see `clearline.models.api_core`). A
tenant may decide and read only for its own merchants: another tenant's merchant is 403,
as is another tenant's decision id. Bodies are checked by pydantic; a bad one gets 422
naming each bad field. A repeated order_id with the same body gets the stored decision
(same decision id); with a different body, 409.

The handlers are `async def` and do their (CPU-bound, under a millisecond) work on the
event loop: one uvicorn worker per core, no thread hand-off per request, no GIL fights
between a thread pool and the loop. POST /v1/decisions, the hot path, is answered by
`_FastDecisions` from the same parts as its declared route, without FastAPI's routing
layers (see there); everything else is plain FastAPI.
"""

import gc
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Literal

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)

from clearline.currency import is_currency
from clearline.events import Money
from clearline.models.api_core import ApiKeys, MerchantDirectory, OnlineFeatures, request_features
from clearline.models.api_store import DecisionStore, Stored
from clearline.models.decision import UnderwritingRequest, decide
from clearline.models.policy import KILL_SWITCH, NO_CHAMPION, Policy
from clearline.models.scorer import Scorer

log = logging.getLogger("clearline.api")

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=False)]


# --------------------------------------------------------------------------- wire models


class MoneyIn(BaseModel):
    """An amount: integer minor units (1999 EUR = 19.99 EUR) and an ISO 4217 code."""

    model_config = ConfigDict(extra="forbid")
    minor: StrictInt = Field(gt=0, description="integer minor units, > 0")
    currency: str = Field(description="ISO 4217 code, e.g. EUR")

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, code: str) -> str:
        if not is_currency(code):
            raise ValueError(f"{code!r} is not an ISO 4217 currency code")
        return code


class DecisionRequest(BaseModel):
    """An order on terms asking to be underwritten."""

    model_config = ConfigDict(extra="forbid")
    order_id: Id
    buyer_id: Id
    merchant_id: Id
    amount: MoneyIn
    terms_days: StrictInt = Field(ge=1, le=365, description="net terms in days, e.g. 30")
    occurred_at: AwareDatetime | None = Field(
        None, description="the order's time (with a UTC offset); default: when the API receives it"
    )


class MoneyOut(BaseModel):
    minor: int
    currency: str


class ModelOut(BaseModel):
    name: str
    version: str


class ReasonOut(BaseModel):
    feature: str
    value: float | None
    reference: float
    delta: float


class ShadowOut(BaseModel):
    model: ModelOut
    score: float
    decision: Literal["approve", "review", "decline"]
    credit_limit: MoneyOut


class DecisionOut(BaseModel):
    """The decision record: `clearline.models.decision.Decision.to_dict()` plus the API's ids."""

    decision_id: str
    tenant: str
    decided_at: str
    event_id: str
    order_id: str
    buyer_id: str
    merchant_id: str
    decision_time: str
    amount: MoneyOut
    terms_days: int
    decision: Literal["approve", "review", "decline"]
    credit_limit: MoneyOut
    policy_reasons: list[str]
    model: ModelOut | None
    score: float | None
    band: str | None
    reason_codes: list[ReasonOut]
    inputs: dict[str, Any]
    missing_features: list[str]
    challenger: ShadowOut | None
    kill_switch: bool


class Problem(BaseModel):
    detail: str


# --------------------------------------------------------------------------- the service


@dataclass
class DecisionService:
    """Everything a request needs, loaded once at start-up."""

    policy: Policy
    champion: Scorer | None
    challenger: Scorer | None
    keys: ApiKeys
    merchants: MerchantDirectory
    features: OnlineFeatures | None
    store: DecisionStore
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def decides_by(self) -> str:
        if self.policy.kill_switch:
            return f"conservative rules ({KILL_SWITCH})"
        if self.champion is None:
            return f"conservative rules ({NO_CHAMPION})"
        return "champion"

    def online(self, buyer_id: str, merchant_id: str, amount: Money) -> dict[str, Any] | None:
        """The request's features; None when the store cannot answer (the decision then
        falls back to the conservative rules, which say so)."""
        if self.features is None:
            return None
        try:
            return request_features(self.features.read(buyer_id, merchant_id), amount)
        except Exception:  # any failure of the store must still give the checkout a decision
            log.exception("online feature store read failed for buyer %s merchant %s", buyer_id, merchant_id)
            return None

    def decide(self, tenant: str, body: DecisionRequest) -> tuple[Stored, bool]:
        """The stored decision for this order and whether it was made just now."""
        digest = request_hash(body)
        stored = self.store.by_order(tenant, body.order_id)
        if stored is not None:
            return stored, False
        event_id = "api_" + uuid.uuid4().hex  # the API's request is its own event
        decision_id = "dec_" + event_id  # derived as the risk flow derives it from a request
        at = body.occurred_at.astimezone(timezone.utc) if body.occurred_at else self.now()
        request = UnderwritingRequest(
            event_id,
            body.order_id,
            body.buyer_id,
            body.merchant_id,
            at,
            Money(body.amount.minor, body.amount.currency),
            body.terms_days,
        )
        features = self.online(body.buyer_id, body.merchant_id, request.amount)
        made = decide(request, features, self.champion, self.challenger, self.policy)
        # the risk flow's decision record (decision_id, Decision.to_dict(), decided_at) plus the tenant
        record = {"decision_id": decision_id, "tenant": tenant, **made.to_dict(), "decided_at": self.now().isoformat()}
        stored = self.store.add(decision_id, tenant, body.order_id, digest, record)
        return stored, stored.decision_id == decision_id


def request_hash(body: DecisionRequest) -> str:
    """What identifies a request body for idempotency: its fields, canonically."""
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Request counts by route and status, and latency by route. With several uvicorn
    workers PROMETHEUS_MULTIPROC_DIR is set and /metrics sums every worker's files."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "clearline_api_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "clearline_api_request_seconds",
            "time from request to response, by route",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.decisions = Counter(
            "clearline_api_decisions", "new decisions by outcome", ["decision"], registry=self.registry
        )

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)


class _Measure:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): counts and
    times every HTTP request under its route template, so ids do not explode labels."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()


# --------------------------------------------------------------------------- the app

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the tenant's API key")
_ERRORS = {
    401: {"model": Problem, "description": "no or unknown API key"},
    403: {"model": Problem, "description": "another tenant's merchant or decision"},
}


class _Outcome(msgspec.Struct):
    """The one field of a stored record the metrics need (decoded without the rest)."""

    decision: str


def _record(stored: Stored, replay: bool = False) -> Response:
    return Response(
        stored.record, media_type="application/json", headers={"Idempotent-Replay": "true"} if replay else None
    )


class _FastDecisions:
    """POST /v1/decisions served without Starlette's router, FastAPI's dependency solver
    and the middleware between them — about a sixth of the server's CPU per decision in
    a profile under load. It calls the functions the declared route is made of, in the
    route's order (JSON, API key, fields, then the decision), so statuses, bodies and
    headers are the route's; the route stays declared for the OpenAPI docs and their
    schema. It runs inside the metrics middleware, under the route's label."""

    def __init__(self, app, route: Any, answer: Callable[[str | None, str | None, bytes], Response]):
        self.app, self.route, self.answer = app, route, answer

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.route.path:
            return await self.app(scope, receive, send)
        scope["route"] = self.route
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in (b"x-api-key", b"content-type")}
        await self.answer(headers.get(b"x-api-key"), headers.get(b"content-type"), b"".join(chunks))(
            scope, receive, send
        )


def create_app(service: DecisionService) -> FastAPI:
    app = FastAPI(
        title="Clearline decision API",
        version="1",
        description="Underwriting decisions for orders on terms: the same policy, model and reason codes "
        "as the streaming risk flow. Money is integer minor units plus an ISO 4217 code.",
    )
    metrics = Metrics()
    app.state.service = service

    def caller(key: str | None) -> str:
        found = service.keys.tenant_of(key)
        if found is None:
            raise HTTPException(
                401,
                "missing or unknown API key (header X-API-Key)"
                if key
                else "missing API key: send the tenant's key in the X-API-Key header",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        return found

    async def tenant(key: Annotated[str | None, Depends(_api_key)]) -> str:
        """The caller's tenant. `async def`, like the handlers: FastAPI runs a plain `def`
        dependency in its thread pool, a thread hand-off on every request for a hash."""
        return caller(key)

    def invalid(errors: list[dict[str, Any]]) -> JSONResponse:
        """422 naming each bad field by its path (e.g. amount.currency) and why."""
        named = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or e["loc"][0], "message": e["msg"], "type": e["type"]}
            for e in errors
        ]
        text = "; ".join(f"{e['field']}: {e['message']}" for e in named)
        return JSONResponse({"detail": text, "errors": jsonable_encoder(named)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(list(exc.errors()))

    def decided(who: str, body: DecisionRequest) -> Response:
        owner = service.merchants.owner(body.merchant_id)
        if owner != who:
            raise HTTPException(403, f"merchant {body.merchant_id!r} is not a merchant of tenant {who!r}")
        stored, new = service.decide(who, body)
        if new:
            metrics.decisions.labels(msgspec.json.decode(stored.record, type=_Outcome).decision).inc()
            return _record(stored)
        if stored.request_hash != request_hash(body):
            raise HTTPException(
                409,
                f"order_id {body.order_id!r} was already decided ({stored.decision_id}) "
                "for a different request; an order is decided once",
            )
        return _record(stored, replay=True)

    @app.post(
        "/v1/decisions",
        response_model=None,
        summary="Decide an order on terms",
        responses={
            200: {
                "model": DecisionOut,
                "description": "the decision (stored, or the one stored before for this order_id)",
            },
            409: {"model": Problem, "description": "order_id already decided with another body"},
            **_ERRORS,
        },
    )
    async def post_decision(body: DecisionRequest, who: Annotated[str, Depends(tenant)]) -> Response:
        return decided(who, body)

    def answer(key: str | None, content_type: str | None, raw: bytes) -> Response:
        """POST /v1/decisions for `_FastDecisions`, in FastAPI's order and with its rules:
        a body declared JSON (application/json or */*+json) must parse (422), then the key
        (401), then the fields (422: a body not declared JSON is validated as bytes and
        fails, an empty one is missing), then the decision."""
        media = (content_type or "").split(";")[0].strip().lower()
        try:
            data: Any = raw
            if raw and (media == "application/json" or media.startswith("application/") and media.endswith("+json")):
                try:
                    data = json.loads(raw)
                except ValueError as exc:
                    return invalid(
                        [{"loc": ("body", getattr(exc, "pos", 0)), "msg": "JSON decode error", "type": "json_invalid"}]
                    )
            who = caller(key)
            if not raw:
                return invalid([{"loc": ("body",), "msg": "Field required", "type": "missing"}])
            try:
                body = DecisionRequest.model_validate(data)
            except ValidationError as exc:
                return invalid([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])
            return decided(who, body)
        except HTTPException as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get(
        "/v1/decisions/{decision_id}",
        response_model=None,
        summary="A stored decision",
        responses={200: {"model": DecisionOut}, 404: {"model": Problem, "description": "no such decision"}, **_ERRORS},
    )
    async def get_decision(decision_id: str, who: Annotated[str, Depends(tenant)]) -> Response:
        stored = service.store.by_id(decision_id)
        if stored is None:
            raise HTTPException(404, f"no decision {decision_id!r}")
        if stored.tenant != who:
            raise HTTPException(403, f"decision {decision_id!r} belongs to another tenant")
        return _record(stored)

    @app.get("/health", summary="Liveness and what decides")
    async def health() -> dict[str, Any]:
        ref = lambda s: None if s is None else {"name": s.ref.name, "version": s.ref.version}  # noqa: E731
        return {
            "status": "ok",
            "worker": os.getpid(),  # which worker process answered: they share the port
            "decides_by": service.decides_by(),
            "champion": ref(service.champion),
            "challenger": ref(service.challenger),
            "kill_switch": service.policy.kill_switch,
            "feature_store": "connected" if service.features is not None else "none (decisions without features)",
            "tenants": sorted(service.keys.hashes),
            "merchants": len(service.merchants.owners),
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    route = next(r for r in app.routes if getattr(r, "endpoint", None) is post_decision)
    app.add_middleware(_FastDecisions, route=route, answer=answer)
    app.add_middleware(_Measure, metrics=metrics)  # added last: outermost, it counts the fast path too
    _freeze_the_loaded_heap()
    return app


def _freeze_the_loaded_heap() -> None:
    """Move everything loaded so far (scikit-learn, MLflow, Feast, the models: ~450,000
    objects) out of the garbage collector's reach. Why: a full collection walks every
    tracked object, and on this machine one took ~0.4 s — a stall every request queued
    behind it sees, the API's worst latencies. Objects made per request are still
    collected; the loaded ones live as long as the process anyway."""
    gc.collect()
    gc.freeze()
