"""The decision API: HTTP/JSON in front of `clearline.models.decision.decide`, the same decision
function the streaming risk flow calls, so an order gets the same decision, reasons and
model version whichever way it asked.

    POST /v1/decisions        decide an order on terms (idempotent on order_id per tenant)
    GET  /v1/decisions/{id}   a stored decision (only the tenant that asked may read it)
    GET  /health              liveness, and which model decides (or why the rules do)
    GET  /metrics             Prometheus: requests by route and status, latency histogram

Callers are tenants (resellers) with an API key (`X-API-Key`, see `clearline.models.api_core`). A
tenant may decide and read only for its own merchants: another tenant's merchant is 403,
as is another tenant's decision id. A repeated order_id with the same body gets the stored
decision (same decision id); with a different body, 409.

Hostile input is refused early and cheaply, in this order: the key (401) before a byte
of the body is read; the body's size (413, `limits.max_body_bytes` in configs/serve.yaml,
from Content-Length when sent, else counted as it arrives); JSON that does not parse or
nests deeper than `limits.max_json_depth` (422); then the fields (422 naming each bad
one: pydantic, with the ranges the OpenAPI document states — ids of the event contract's
shape, amounts up to `MAX_AMOUNT_MINOR`, times in 2000–2099); then card numbers (422 naming
the field, the number masked: nothing that looks like one is stored, echoed or logged).
Every error body is one `Problem`, declared for every status the server answers.

The handlers are `async def` and do their (CPU-bound, under a millisecond) work on the
event loop: one uvicorn worker per core, no thread hand-off per request, no GIL fights
between a thread pool and the loop. POST /v1/decisions, the hot path, is answered by
`_FastDecisions` from the same parts as its declared route, without FastAPI's routing
layers (see there); everything else is plain FastAPI.
"""

import base64
import gc
import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
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
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from clearline import config
from clearline.contract import CURRENCY_PATTERN, ID_PATTERN
from clearline.currency import EXPONENT, is_currency
from clearline.events import MAX_MINOR, Money, contains_pan, redact_pans
from clearline.freezes import Reader, reader_from_config
from clearline.models.api_core import ApiKeys, MerchantDirectory, OnlineFeatures, request_features
from clearline.models.api_store import DecisionStore, Stored
from clearline.models.decision import UnderwritingRequest, decide
from clearline.models.policy import KILL_SWITCH, NO_CHAMPION, Policy
from clearline.models.scorer import Scorer

log = logging.getLogger("clearline.api")

# An amount's upper bound: 12 digits, far inside what the ledger stores (`MAX_MINOR`,
# 2^63-1), ten billion in a two-decimal currency for one order on terms — and no amount
# the API admits can look like a card number (13 digits or more).
MAX_AMOUNT_MINOR = 10**12 - 1
assert MAX_AMOUNT_MINOR <= MAX_MINOR

# The order's time: RFC 3339 with its offset, in the years 2000–2099 (so no offset can
# carry it out of what a datetime holds), at most microseconds.
ORDER_TIME_PATTERN = (
    r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)$"
)
_ORDER_TIME = re.compile(ORDER_TIME_PATTERN)

# The event contract's identifier (1–64 of A-Z a-z 0-9 _ . : -), so a decided order's ids
# are ids the rest of Clearline takes.
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=64)]


def _whole(value: Any) -> Any:
    """A JSON number written with a fraction of zero (`1267.0`, `1.267e3`) is the integer
    JSON Schema says it is; the body's numbers are read as decimals, never binary floats,
    so `1267.0000000000000001` stays a fraction (refused) instead of rounding to 1267."""
    # under 10^19 first: 1e999999999 overflows decimal arithmetic
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 19 and value == int(value):
        return int(value)
    return value


WholeNumber = Annotated[StrictInt, BeforeValidator(_whole)]


def _order_time(value: Any) -> Any:
    if not isinstance(value, str) or not _ORDER_TIME.match(value):
        raise ValueError(
            "must be an RFC 3339 date-time with its timezone (Z or +HH:MM), in the years 2000-2099, "
            "e.g. 2026-11-22T01:00:00+00:00"
        )
    return value


OrderTime = Annotated[
    AwareDatetime,
    BeforeValidator(_order_time),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": ORDER_TIME_PATTERN}),
]


# --------------------------------------------------------------------------- wire models


class MoneyIn(BaseModel):
    """An amount: integer minor units (1999 EUR = 19.99 EUR) and an ISO 4217 code."""

    model_config = ConfigDict(extra="forbid")
    minor: WholeNumber = Field(gt=0, le=MAX_AMOUNT_MINOR, description="integer minor units, > 0")
    currency: str = Field(
        pattern=CURRENCY_PATTERN, description="ISO 4217 code, e.g. EUR", json_schema_extra={"enum": sorted(EXPONENT)}
    )

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, code: str) -> str:
        if not is_currency(code):
            raise ValueError(f"{code!r} is not an ISO 4217 currency code")
        return code


class DecisionRequest(BaseModel):
    """An order on terms asking to be underwritten."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "o-10001",
                    "buyer_id": "b_00042",
                    "merchant_id": "m_00001",
                    "amount": {"minor": 125000, "currency": "EUR"},
                    "terms_days": 30,
                    "occurred_at": "2026-11-22T01:00:00+00:00",
                }
            ]
        },
    )
    order_id: Id
    buyer_id: Id
    merchant_id: Id
    amount: MoneyIn
    terms_days: WholeNumber = Field(ge=1, le=365, description="net terms in days, e.g. 30")
    occurred_at: OrderTime | None = Field(
        None, description="the order's time (with a UTC offset); default: when the API receives it"
    )

    def card_numbers(self) -> list[dict[str, str]]:
        """The fields holding something that looks like a card number, each as a 422 error
        naming the field with the number masked. After validation only the ids can: the
        currency is a code, the amount has at most 12 digits, the time has none in a row."""
        ids = {"order_id": self.order_id, "buyer_id": self.buyer_id, "merchant_id": self.merchant_id}
        return [
            {"loc": ("body", name), "msg": f"a card number is not an id: {redact_pans(value)}", "type": "card_number"}
            for name, value in ids.items()
            if contains_pan(value)
        ]


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


class FieldError(BaseModel):
    field: str = Field(description="the field's path, e.g. amount.currency; `body` for the body as a whole")
    message: str
    type: str


class Problem(BaseModel):
    """Every error the API answers: what is wrong in one line, and for 422 each bad field."""

    detail: str
    errors: list[FieldError] | None = Field(None, description="422 only: each bad field and why")


@dataclass(frozen=True)
class ApiLimits:
    """What the API refuses before it looks at the fields (configs/serve.yaml `limits`)."""

    max_body_bytes: int
    max_json_depth: int

    @classmethod
    def from_config(cls, serve_cfg: dict[str, Any]) -> "ApiLimits":
        limits = serve_cfg["limits"]
        return cls(config.typed(limits, "max_body_bytes", int), config.typed(limits, "max_json_depth", int))


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
    # the workbench's emergency freezes, re-read only when the snapshot is replaced (a stat per request)
    freezes: Reader = field(default_factory=reader_from_config)

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
        """The stored decision for this order and whether it was made just now (stored
        with its own commit: `decide_durably` shares one with concurrent requests)."""
        stored, made = self.made(tenant, body)
        if stored is not None:
            return stored, False
        stored = self.store.add(*made)
        return stored, stored.decision_id == made[0]

    async def decide_durably(self, tenant: str, body: DecisionRequest) -> tuple[Stored, bool]:
        """`decide` on the event loop: the record joins the store's next group commit,
        and this returns once it is on disk."""
        stored, made = self.made(tenant, body)
        if stored is not None:
            return stored, False
        stored = await self.store.add_durably(*made)
        return stored, stored.decision_id == made[0]

    def made(self, tenant: str, body: DecisionRequest) -> tuple[Stored | None, tuple[str, str, str, str, dict] | None]:
        """The decision stored before for this order, or a new one to store: (decision id,
        tenant, order id, request hash, record), as `DecisionStore.add` takes them."""
        digest = request_hash(body)
        stored = self.store.by_order(tenant, body.order_id)
        if stored is not None:
            return stored, None
        event_id = _fresh_id()  # the API's request is its own event
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
        made = decide(request, features, self.champion, self.challenger, self.policy, self.freezes.current())
        # the risk flow's decision record (decision_id, Decision.to_dict(), decided_at) plus the tenant
        record = {"decision_id": decision_id, "tenant": tenant, **made.to_dict(), "decided_at": self.now().isoformat()}
        return None, (decision_id, tenant, body.order_id, digest, record)


def _fresh_id() -> str:
    """`api_` and a random hex: drawn again when its digits happen to read as a card
    number (a run of 13+ decimal digits, Luhn-valid: about one id in 250), which no
    record, answer or log may hold."""
    while contains_pan(event_id := "api_" + uuid.uuid4().hex):
        pass
    return event_id


def request_hash(body: DecisionRequest) -> str:
    """What identifies a request body for idempotency: the SHA-256 of its fields,
    canonically, in unpadded base64url — not hex, whose digits read as a card number (13+
    in a row, Luhn-valid) in about one digest in 250, and no stored record may hold one."""
    digest = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def same_request(stored_hash: str, body: DecisionRequest) -> bool:
    """Whether `body` is the request stored under `stored_hash` (a store written before
    the hash was base64url holds hex digests)."""
    if len(stored_hash) == 64:
        return stored_hash == base64.urlsafe_b64decode(request_hash(body) + "=").hex()
    return stored_hash == request_hash(body)


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
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._outcomes: dict[str, Any] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One request's count and latency. The labelled children are looked up once per
        (route, method, status) and kept: prometheus_client's `labels()` takes a lock and
        builds its key on every call."""
        children = self._children.get((route, method, status))
        if children is None:
            children = self._children[route, method, status] = (
                self.latency.labels(route, method),
                self.requests.labels(route, method, str(status)),
            )
        children[0].observe(seconds)
        children[1].inc()

    def decided(self, outcome: str) -> None:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self.decisions.labels(outcome)
        child.inc()

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
            self.metrics.observe(route, scope["method"], status[0], time.perf_counter() - start)


# --------------------------------------------------------------------------- the app

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the tenant's API key")
_ERRORS = {
    401: {"model": Problem, "description": "no or unknown API key"},
    403: {"model": Problem, "description": "another tenant's merchant or decision"},
    422: {"model": Problem, "description": "a bad request, naming each bad field and why"},
}
# Numbers with a fraction or exponent are read as decimals (see `_whole`); one decoder,
# made once (json.loads with parse_float builds one per call).
_DECODER = json.JSONDecoder(parse_float=Decimal)
_JSON_MEDIA = re.compile(r"application/(?:[^;]*\+)?json", re.IGNORECASE)


class _Outcome(msgspec.Struct):
    """The one field of a stored record the metrics need (decoded without the rest)."""

    decision: str


def _record(stored: Stored, replay: bool = False) -> Response:
    return Response(
        stored.record, media_type="application/json", headers={"Idempotent-Replay": "true"} if replay else None
    )


def _problem(exc: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def nests_deeper(doc: Any, limit: int) -> bool:
    """Whether a parsed JSON document nests arrays or objects more than `limit` deep (a
    scalar is 0 deep, `[]` 1, `{"amount": {}}` 2); level by level, never recursing."""
    level, depth = [doc], 0
    while level := [v for v in level if isinstance(v, (dict, list))]:
        depth += 1
        if depth > limit:
            return True
        level = [x for v in level for x in (v.values() if isinstance(v, dict) else v)]
    return False


class _FastDecisions:
    """POST /v1/decisions served without Starlette's router, FastAPI's dependency solver
    and the middleware between them — about a sixth of the server's CPU per decision in
    a profile under load. The route stays declared for the OpenAPI docs and their schema,
    and this layer answers with the statuses, bodies and headers the document declares.
    `_DecisionApp` hands it the route's requests, inside the metrics middleware, under
    the route's label.

    The key is checked from the headers before a byte of the body is read (a caller
    without one costs a hash), then the body is read up to the size limit: a larger
    Content-Length is refused before reading, a body without one as soon as it passes the
    limit. The rest of a refused body is never buffered (uvicorn drops it)."""

    def __init__(self, route: Any, limits: ApiLimits, caller: Callable, answer: Callable):
        self.route, self.limit, self.caller, self.answer = route, limits.max_body_bytes, caller, answer

    async def __call__(self, scope, receive, send):
        scope["route"] = self.route
        key = content_type = length = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        try:
            who = self.caller(key)
            if length is not None and length.isdigit() and (len(length) > 18 or int(length) > self.limit):
                raise self.too_large()
            response = await self.answer(who, content_type, await self.body(receive))
        except HTTPException as exc:
            response = _problem(exc)
        await response(scope, receive, send)

    async def body(self, receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise self.too_large()
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def too_large(self) -> HTTPException:
        return HTTPException(413, f"the body is over {self.limit} bytes, the most a decision request may have")


class _DecisionApp(FastAPI):
    """FastAPI, but POST /v1/decisions goes straight to `fast` (`_FastDecisions` in the
    metrics middleware), before FastAPI's telemetry wrapper and Starlette's middleware
    stack (error, telemetry and body-limit middleware): those layers cost the hot route
    CPU on every request and do nothing it needs. An exception the fast path does not
    answer itself reaches uvicorn, which answers 500 as Starlette's error middleware
    would. Every other request, and the OpenAPI document, is plain FastAPI."""

    fast: Callable | None = None
    fast_path = ""

    async def __call__(self, scope, receive, send):
        if (
            self.fast is not None
            and scope["type"] == "http"
            and scope["path"] == self.fast_path
            and scope["method"] == "POST"
        ):
            return await self.fast(scope, receive, send)
        return await super().__call__(scope, receive, send)


def create_app(service: DecisionService, limits: ApiLimits | None = None) -> FastAPI:
    """The app; `limits` default to configs/serve.yaml's."""
    limits = limits or ApiLimits.from_config(config.load("serve"))
    app = _DecisionApp(
        title="Clearline decision API",
        version="1",
        description="Underwriting decisions for orders on terms: the same policy, model and reason codes "
        "as the streaming risk flow. Money is integer minor units plus an ISO 4217 code. "
        f"A request body is at most {limits.max_body_bytes} bytes and nests at most {limits.max_json_depth} deep; "
        "no field may hold a card number (13–19 digits, Luhn-valid).",
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
        """422 naming each bad field by its path (e.g. amount.currency) and why; a card
        number in a field's name or its message is masked."""
        named = [
            {
                "field": redact_pans(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0])),
                "message": redact_pans(e["msg"]),
                "type": e["type"],
            }
            for e in errors
        ]
        text = "; ".join(f"{e['field']}: {e['message']}" for e in named)
        return JSONResponse({"detail": text, "errors": jsonable_encoder(named)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(list(exc.errors()))

    async def decided(who: str, body: DecisionRequest) -> Response:
        owner = service.merchants.owner(body.merchant_id)
        if owner != who:
            raise HTTPException(403, f"merchant {body.merchant_id!r} is not a merchant of tenant {who!r}")
        stored, new = await service.decide_durably(who, body)
        if new:
            metrics.decided(msgspec.json.decode(stored.record, type=_Outcome).decision)
            return _record(stored)
        if not same_request(stored.request_hash, body):
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
        operation_id="post_decision",
        responses={
            200: {
                "model": DecisionOut,
                "description": "the decision (stored, or the one stored before for this order_id)",
                "links": {
                    "GetDecision": {
                        "operationId": "get_decision",
                        "parameters": {"decision_id": "$response.body#/decision_id"},
                    }
                },
            },
            409: {"model": Problem, "description": "order_id already decided with another body"},
            413: {"model": Problem, "description": f"a body over {limits.max_body_bytes} bytes"},
            **_ERRORS,
        },
    )
    async def post_decision(body: DecisionRequest, who: Annotated[str, Depends(tenant)]) -> Response:
        return await decided(who, body)  # documents the route: `_FastDecisions` answers it

    too_deep = [
        {"loc": ("body",), "msg": f"JSON nested more than {limits.max_json_depth} deep", "type": "json_too_deep"}
    ]

    async def answer(who: str, content_type: str | None, raw: bytes) -> Response:
        """POST /v1/decisions for `_FastDecisions`, once the key and the size passed: a body
        declared JSON (application/json or application/*+json) must parse and nest at most
        `max_json_depth` deep (422), then the fields (422: a body not declared JSON is
        validated as bytes and fails, an empty one is missing), card numbers (422), then
        the merchant (403) and the decision."""
        data: Any = raw
        if raw and _JSON_MEDIA.fullmatch((content_type or "").split(";")[0].strip()):
            try:
                data = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))  # as json.loads
            except RecursionError:
                return invalid(too_deep)
            except ValueError as exc:
                return invalid([{"loc": ("body",), "msg": f"JSON decode error: {exc}", "type": "json_invalid"}])
            if raw.count(b"[") + raw.count(b"{") > limits.max_json_depth and nests_deeper(data, limits.max_json_depth):
                return invalid(too_deep)
        if not raw:
            return invalid([{"loc": ("body",), "msg": "Field required", "type": "missing"}])
        try:
            body = DecisionRequest.model_validate(data)
        except ValidationError as exc:
            return invalid([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])
        cards = body.card_numbers()
        if cards:
            return invalid(cards)
        return await decided(who, body)

    @app.get(
        "/v1/decisions/{decision_id}",
        response_model=None,
        summary="A stored decision",
        operation_id="get_decision",
        responses={200: {"model": DecisionOut}, 404: {"model": Problem, "description": "no such decision"}, **_ERRORS},
    )
    async def get_decision(decision_id: str, who: Annotated[str, Depends(tenant)]) -> Response:
        if contains_pan(decision_id):
            return invalid(
                [{"loc": ("path", "decision_id"), "msg": "a card number is not a decision id", "type": "card_number"}]
            )
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
            "freezes": {"snapshot": str(service.freezes.path), "active": len(service.freezes.current())},
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    route = next(r for r in app.routes if getattr(r, "endpoint", None) is post_decision)
    app.fast, app.fast_path = _Measure(_FastDecisions(route, limits, caller, answer), metrics), route.path
    app.add_middleware(_Measure, metrics=metrics)  # every other route
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
