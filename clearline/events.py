"""The event contract: one envelope, one typed payload per event type, and the rules for
what may travel on `payments.events`.

Every other part of Clearline reads events through `decode` and builds them through
`Event` + `encode`, so the contract is enforced in one place:

* money is an integer count of minor units plus an ISO 4217 code, never a float;
* each payload is a frozen dataclass below; its annotations *are* the schema, so the
  validator and the typed record can never drift apart;
* validation collects every problem with its field path ("payload.amount.minor") and a
  reason a person can act on, instead of stopping at the first;
* nothing that looks like a card number (13–19 digits, Luhn-valid) may appear anywhere:
  such a message is refused and the number redacted in the error;
* `schema_version` lets readers accept every version they know; a new version may only
  add event types or optional fields, never reinterpret one.

Signing is HMAC-SHA256 over the exact message bytes with the tenant's key (see
`clearline.signing`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Annotated, Any, Iterator, Literal, Mapping

import msgspec

from clearline.currency import EXPONENT, is_currency

SCHEMA_VERSION = 1
PLATFORM = "platform"  # merchant_id and reseller_id of the platform's own events (payouts)
KNOWN_SCHEMA_VERSIONS = frozenset({1})
MAX_MESSAGE_BYTES = 64 * 1024
# Every integer is bounded. Amounts: the ledger stores minor units as a signed 64-bit
# integer (DuckDB BIGINT, Parquet int64), and sums them in 128 bits, so no balance of
# admitted amounts can overflow. Other integers (counts, days) are 32-bit.
MAX_MINOR = 2**63 - 1
MIN_INT, MAX_INT = -(2**31), 2**31 - 1
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
_DECIMAL = re.compile(r"\d{1,12}(\.\d{1,12})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?")
# The usual spelling (ASCII digits, "Z"): `datetime.fromisoformat` reads it as UTC itself
_RFC3339_Z = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z")


# ---------------------------------------------------------------------------- records


T = typing.TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """A frozen, slotted dataclass whose `__init__` sets each field through its slot's
    descriptor instead of `object.__setattr__` by name: the same object (still frozen,
    equal and hashed as before) at about half the cost. The flows make one Event per
    consumed message and the ledger several records of its own (ledger.model)."""
    names = [f.name for f in dataclasses.fields(cls)]
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    scope = {f"_set_{n}": getattr(cls, n).__set__ for n in names} | {f"_default_{n}": v for n, v in defaults.items()}
    params = ", ".join(f"{n}=_default_{n}" if n in defaults else n for n in names)
    body = "".join(f"\n    _set_{n}(self, {n})" for n in names)
    exec(f"def __init__(self, {params}):{body}", scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls


@quick_init
@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of an ISO 4217 currency (1999 USD = $19.99)."""

    minor: int
    currency: str


Method = Literal["card", "ach"]
PaymentMethod = Literal["card", "ach", "terms"]
SettlementRecord = Literal["charge", "refund", "chargeback", "chargeback_reversal", "fee"]


@dataclass(frozen=True, slots=True)
class OrderCreated:
    """A buyer's order; on terms it is also the underwriting request the risk flow scores."""

    order_id: str
    buyer_id: str
    amount: Money
    payment_method: PaymentMethod
    terms_days: int
    due_date: date | None = None


@dataclass(frozen=True, slots=True)
class PaymentAuthorized:
    """A hold on the buyer's instrument; captures draw on it, a void releases the rest."""

    payment_id: str
    order_id: str
    buyer_id: str
    processor: str
    method: Method
    amount: Money
    instrument_token: str


@dataclass(frozen=True, slots=True)
class PaymentCaptured:
    payment_id: str
    capture_id: str
    processor: str
    amount: Money
    final: bool


@dataclass(frozen=True, slots=True)
class PaymentVoided:
    """Releases what is left of an authorization (after partial captures, or all of it)."""

    payment_id: str
    processor: str
    amount: Money


@dataclass(frozen=True, slots=True)
class PaymentRefunded:
    payment_id: str
    refund_id: str
    processor: str
    amount: Money


@dataclass(frozen=True, slots=True)
class ChargebackOpened:
    payment_id: str
    chargeback_id: str
    processor: str
    amount: Money
    reason_code: str


@dataclass(frozen=True, slots=True)
class ChargebackReversed:
    payment_id: str
    chargeback_id: str
    processor: str
    amount: Money


@dataclass(frozen=True, slots=True)
class ProcessorSettlement:
    """The processor's notice that one item settled into a payout batch, net of its fee.

    `gross` is in the presentment currency, `net` and `fee` in the settlement currency;
    `fx_rate` (decimal text, settlement per presentment unit) is set when they differ.
    """

    processor: str
    settlement_id: str
    batch_id: str
    record_type: SettlementRecord
    payment_id: str
    gross: Money
    fee: Money
    net: Money
    available_on: date
    fx_rate: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessorPayout:
    """A payout batch sent to the platform's bank account: the sum of its lines' net."""

    processor: str
    payout_id: str
    amount: Money
    arrival_date: date
    line_count: int


@dataclass(frozen=True, slots=True)
class BuyerRepayment:
    order_id: str
    buyer_id: str
    repayment_id: str
    amount: Money
    due_date: date
    days_late: int


@dataclass(frozen=True, slots=True)
class BuyerDefault:
    """The platform writes off what a buyer still owes on an order."""

    order_id: str
    buyer_id: str
    amount: Money
    days_past_due: int


@dataclass(frozen=True, slots=True)
class MerchantPayout:
    payout_id: str
    amount: Money
    value_date: date
    order_count: int


FreezeKind = Literal["merchant", "bank_account"]


@dataclass(frozen=True, slots=True)
class PayoutHeld:
    """A merchant payout the platform's payout run did not send because an emergency
    freeze held its target (the merchant, or the bank account it would leave from): what
    the book owed the merchant is set aside (`payouts_held`), and no money leaves the bank.
    `frozen_kind` and `frozen_target` name the freeze, so lifting it finds what it held."""

    payout_id: str
    amount: Money
    value_date: date
    order_count: int
    frozen_kind: FreezeKind
    frozen_target: str


@dataclass(frozen=True, slots=True)
class PayoutReleased:
    """A held payout sent once its freeze was lifted: it leaves the bank on `value_date`,
    the day of the release. Published by the person who lifted the freeze (the workbench),
    one per held payout, with an id derived from the payout's, so a second lift of the same
    payout is a duplicate, not a second payment."""

    payout_id: str
    amount: Money
    value_date: date
    released_by: str


@dataclass(frozen=True, slots=True)
class FeeCharged:
    """A fee the platform charges a merchant (take rate on financed orders, dispute fee)."""

    fee_id: str
    kind: Literal["platform_fee", "dispute_fee"]
    amount: Money
    reference: str


AdjustmentKind = Literal["fee", "fx", "amount", "write_off", "manual"]


@dataclass(frozen=True, slots=True)
class AdjustmentLeg:
    """One line of an adjusting entry: `amount` (at least one minor unit) debited or
    credited to an account of the chart named without its tenant, "<account>[:<sub-ledger
    key>]" ("fee_expense:stripe", "bank_cash:USD"). The ledger places it in the books the
    chart keeps that account in: the event's tenant's, or the platform's."""

    account: str
    side: Literal["debit", "credit"]
    amount: Money


@dataclass(frozen=True, slots=True)
class AdjustmentPosted:
    """An adjusting entry that closes a reconciliation variance: proposed by one person,
    approved by another (maker-checker), posted by the ledger as its legs say. `code` is
    the resolution code (our_error, written_off, …); `kind` what the entry corrects."""

    variance_id: str
    kind: AdjustmentKind
    code: str
    note: str
    proposed_by: str
    approved_by: str
    approved_at: datetime
    legs: tuple[AdjustmentLeg, ...]


PAYLOADS: dict[str, type] = {
    "order.created": OrderCreated,
    "payment.authorized": PaymentAuthorized,
    "payment.captured": PaymentCaptured,
    "payment.voided": PaymentVoided,
    "payment.refunded": PaymentRefunded,
    "chargeback.opened": ChargebackOpened,
    "chargeback.reversed": ChargebackReversed,
    "processor.settlement": ProcessorSettlement,
    "processor.payout": ProcessorPayout,
    "buyer.repayment": BuyerRepayment,
    "buyer.default": BuyerDefault,
    "merchant.payout": MerchantPayout,
    "fee.charged": FeeCharged,
    # added in schema_version 1: new types, nothing reinterpreted
    "adjustment.posted": AdjustmentPosted,
    "payout.held": PayoutHeld,
    "payout.released": PayoutReleased,
}
# Event types people publish (through the finance workbench), not the flows of money a
# generated world plays out.
PERSON_EVENT_TYPES = ("adjustment.posted", "payout.released")
# Text fields the contract bounds by name, in characters, and lists by name, in items.
MAX_CHARS = {
    "account": 140,
    "code": 64,
    "note": 1000,
    "proposed_by": 128,
    "approved_by": 128,
    "frozen_target": 140,
    "released_by": 128,
}
MAX_ITEMS = {"legs": 16}
EVENT_TYPES = tuple(PAYLOADS)
Payload = typing.Union[tuple(PAYLOADS.values())]  # type: ignore[valid-type]


@quick_init
@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    event_type: str
    occurred_at: datetime
    merchant_id: str
    reseller_id: str
    payload: Payload
    schema_version: int = SCHEMA_VERSION


# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class Issue:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class ContractError(ValueError):
    """An event breaks the contract. `issues` names each field path and why."""

    def __init__(self, issues: list[Issue]):
        # masked here, once for every message: an error quotes values cut short, and a cut
        # run of digits can read as a card number where the whole did not
        self.issues = [Issue(masked_text(i.path), masked_text(i.reason)) for i in issues]
        super().__init__("; ".join(map(str, issues)))

    @property
    def reason(self) -> str:
        """A short machine-sortable reason: the first issue's kind of problem."""
        return self.issues[0].reason.split(":")[0] if self.issues else "invalid"


# ------------------------------------------------------------------------- PAN guard

# A run of digits in groups split by single spaces or dashes ("4111 1111 1111 1111").
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,}(?![0-9])")  # 13 digits or more
_MAYBE_RUN = re.compile(r"[0-9][0-9 \-]{11,}[0-9]")  # a cheap necessary condition for _DIGIT_RUN
# The same condition over UTF-8 bytes, cheaper still: every byte a run can hold (digit,
# space, dash) read as "0", every other byte as "x"; a run is then 13 "0"s in a row. UTF-8
# spells ASCII characters as themselves and nothing else with bytes below 0x80, so the
# bytes hold such a row exactly when the text does.
_RUN_BYTES = bytes(0x30 if b in b"0123456789 -" else 0x78 for b in range(256))
_RUN_OF_13 = b"0" * 13
_GROUP = re.compile(r"[0-9]+")
# Bytes kept from a refused message may spell a card number other ways too: digits as JSON
# escapes ("\u0034"), or in UTF-16/32 text (NUL bytes beside every digit). The wide run
# reads those as well; it is what masks whatever the ledger keeps or forwards.
_WIDE_DIGIT = r"(?:[0-9]|\\u003[0-9])"
_WIDE_GAP = r"\x00*(?:(?:[ \-]|\\u00(?:20|2[dD]))\x00*)?"
_WIDE_RUN = re.compile(rf"(?<![0-9]){_WIDE_DIGIT}(?:{_WIDE_GAP}{_WIDE_DIGIT}){{12,}}(?![0-9])")
_WIDE_GROUP = re.compile(rf"{_WIDE_DIGIT}+")
# In bytes with NULs (UTF-16/32) every digit is a group of its own: read at another
# alignment, digits beside the number are other characters ("9" + number + "999…").
_ONE_DIGIT = re.compile(_WIDE_DIGIT)
# The same over the bytes as they are: an escape's hex digits are digits like any other.
_BYTES_RUN = re.compile(r"(?<![0-9])[0-9](?:\x00*(?:[ \-]\x00*)?[0-9]){12,}(?![0-9])")
_NOT_DIGIT = re.compile(r"\\u003|[^0-9]")  # what to drop from a span to read its digits
_ANY_DIGIT = re.compile(r"[0-9]")
_LONG_DIGITS = re.compile(r"[0-9]{20,}")
_OTHER_ESCAPE = re.compile(r"\\u(?!003[0-9]|0020|002[dD])[0-9a-fA-F]{4}")
MASK_ALL_OVER_GROUPS = 10_000


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _pan_spans(text: str, wide: bool = False, reading: str = "bytes") -> list[tuple[int, int]]:
    """Spans of card-number-like digits: 13–19 Luhn-valid digits made of whole groups.

    A card number is often written next to other figures ("4111 1111 1111 1111 12/26"),
    so every run of consecutive groups is tried, not only the whole run. `wide` also
    reads digits with NUL bytes between them (UTF-16/32), in one of three `reading`s:
    "bytes" as they are (an escape's hex digits are digits), "escapes" with "\\u0034"
    read as the digit 4, and "json" as JSON reads it: other escapes ("\\u0004") too."""
    spans: list[tuple[int, int]] = []
    if wide:
        if "\\" not in text and "\x00" not in text and not _MAYBE_RUN.search(text):
            return spans
        if reading == "bytes":
            runs, group = _BYTES_RUN, (_ANY_DIGIT if "\x00" in text else _GROUP)
        else:
            runs, group = _WIDE_RUN, (_ONE_DIGIT if "\x00" in text else _WIDE_GROUP)
        # 20 digits in a row are no card number, nor part of one: hidden from the slow
        # search, same length, so the spans found still index `text`. Their first and
        # last digit stay: beside a NUL, each may be a digit of UTF-16/32 text.
        if reading == "json":
            text = _OTHER_ESCAPE.sub("######", text)
        text = _LONG_DIGITS.sub(lambda m: m.group()[0] + "#" * (len(m.group()) - 2) + m.group()[-1], text)
    else:
        runs, group = _DIGIT_RUN, _GROUP
        if not _MAYBE_RUN.search(text):
            return spans
    for m in runs.finditer(text):
        groups = [(g.start(), g.end(), _NOT_DIGIT.sub("", g.group())) for g in group.finditer(text, m.start(), m.end())]
        i = 0
        while i < len(groups):
            longest, digits = None, ""
            for j in range(i, len(groups)):
                digits += groups[j][2]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and _luhn_ok(digits):
                    longest = j
            if longest is not None:
                spans.append((groups[i][0], groups[longest][1]))
                i = longest
            i += 1
    return spans


def _may_hold_pan(raw: bytes) -> bool:
    """False when the UTF-8 text of `raw` cannot hold a card number (`contains_pan`, not
    wide): no 13 digits, spaces or dashes in a row. Per consumed message, in C."""
    return _RUN_OF_13 in raw.translate(_RUN_BYTES)


def contains_pan(text: str, wide: bool = False) -> bool:
    """True if a Luhn-valid 13–19 digit number (spaces or dashes allowed) is in `text`;
    `wide`: also written as JSON escapes or in UTF-16/32."""
    return bool(_spans_any_reading(text, wide))


def redact_pans(text: str, wide: bool = False) -> str:
    """`text` with every PAN-like number masked but its last four digits, as PCI DSS allows.

    Repeated until none is left: the four digits kept can make a new one with the digits
    that follow them ("4111 1111 1111 1111 2222 3333 4444")."""
    spans = _spans_any_reading(text, wide)
    while spans:
        out, last = [], 0
        for start, end in spans:
            digits = _NOT_DIGIT.sub("", text[start:end])
            out += [text[last:start], "*" * (len(digits) - 4) + digits[-4:]]
            last = end
        text = "".join(out) + text[last:]
        spans = _spans_any_reading(text, wide)
    return text


def _spans_any_reading(text: str, wide: bool) -> list[tuple[int, int]]:
    """Spans of the first reading of `text` that finds any (wide: bytes, escapes, JSON);
    masking repeats until none finds one."""
    for reading in ("bytes", "escapes", "json") if wide and "\\u" in text else ("bytes",):
        spans = _pan_spans(text, wide, reading)
        if spans:
            return spans
    return []


def mask_pans(data: bytes) -> bytes:
    """`data` with every card number masked (`redact_pans`, wide), whatever its encoding:
    read byte for byte, so bytes that are not UTF-8 pass through unchanged.

    The search tries every run of up to 19 digits' worth of groups, so its cost grows with
    the number of digit groups; bytes with more than `MASK_ALL_OVER_GROUPS` of them (no
    event has a tenth as many: "1 1 1 …" garbage does) have every digit masked instead."""
    text = data.decode("latin-1")
    if len(_GROUP.findall(text)) > MASK_ALL_OVER_GROUPS:
        return _ANY_DIGIT.sub("*", text).encode("latin-1")
    masked = redact_pans(text, wide=True)
    return data if masked is text else masked.encode("latin-1")


def masked_text(text: str, limit: int | None = None) -> str:
    """`text` cut to `limit` characters, then masked: a cut can leave a run of digits that
    reads as a card number where the whole did not."""
    return redact_pans(text if limit is None else text[:limit], wide=True)


def _pan_paths(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, redacted text) of every parsed string or number holding a PAN, keys too."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if contains_pan(str(k)):
                yield sub, redact_pans(str(k))
            yield from _pan_paths(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _pan_paths(v, f"{path}[{i}]")
    elif isinstance(value, (str, int)) and not isinstance(value, bool) and contains_pan(str(value)):
        yield path, redact_pans(str(value))


# --------------------------------------------------------------------- encode/decode


def _to_wire(value: Any) -> Any:
    if isinstance(value, Money):
        return {"minor": value.minor, "currency": value.currency}
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: _to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


def to_dict(event: Event) -> dict[str, Any]:
    """The wire form of an event as plain JSON types (money as {minor, currency}).

    Optional fields that are absent are written as null, so the form has one spelling
    and the generator's vectorised JSON is byte-identical to `encode`."""
    payload = {f.name: _to_wire(getattr(event.payload, f.name)) for f in dataclasses.fields(event.payload)}
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "occurred_at": _to_wire(event.occurred_at),
        "merchant_id": event.merchant_id,
        "reseller_id": event.reseller_id,
        "schema_version": event.schema_version,
        "payload": payload,
    }


def encode(event: Event) -> bytes:
    """Canonical JSON bytes: compact, keys in contract order, what gets signed."""
    return json.dumps(to_dict(event), separators=(",", ":"), ensure_ascii=False).encode()


def decode(raw: bytes | str) -> Event:
    """Parse and validate one message; raises ContractError naming every problem."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise ContractError([Issue("", f"oversize: {size} bytes, the limit is {MAX_MESSAGE_BYTES}")])
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise ContractError([Issue("", f"encoding: not UTF-8 at byte {exc.start}")]) from None
    if (not isinstance(raw, bytes) or _may_hold_pan(raw)) and contains_pan(text):
        raise ContractError([Issue("", f"pan: a card number appears in the event: {redact_pans(text)[:300]}")])
    if "\\" not in text:
        event = _fast_decode(raw)
        if event is not None:
            return event
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(
            [Issue("", f"json: malformed at line {exc.lineno} column {exc.colno}: {exc.msg}")]
        ) from None
    except RecursionError:
        raise ContractError([Issue("", "depth: the JSON nests arrays or objects too deep to read")]) from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise ContractError([Issue("", f"range: a number too long to read ({exc.args[0][:60]})")]) from None
    try:
        if "\\" in text:  # escapes can spell digits the raw scan cannot see ("\u0034…")
            hidden = [
                Issue(path, f"pan: a card number appears in the field: {masked[:80]}")
                for path, masked in _pan_paths(doc)
            ]
            if hidden:
                raise ContractError(hidden)
        return from_dict(doc)
    except RecursionError:
        raise ContractError([Issue("", "depth: the JSON nests arrays or objects too deep to read")]) from None


def from_dict(doc: Any) -> Event:
    """Validate an already-parsed JSON document into a typed Event."""
    issues: list[Issue] = []
    if not isinstance(doc, dict):
        raise ContractError([Issue("", f"type: the event must be a JSON object, got {_kind(doc)}")])
    _no_extra(doc, _ENVELOPE, "", issues)
    event_id = _check_id(doc, "event_id", "", issues)
    merchant_id = _check_id(doc, "merchant_id", "", issues)
    reseller_id = _check_id(doc, "reseller_id", "", issues)
    occurred_at = _field(doc, "occurred_at", datetime, "", issues)
    version = _field(doc, "schema_version", int, "", issues)
    if isinstance(version, int) and version not in KNOWN_SCHEMA_VERSIONS:
        issues.append(
            Issue(
                "schema_version", f"version: {version} is not one this reader knows ({sorted(KNOWN_SCHEMA_VERSIONS)})"
            )
        )
    event_type = doc.get("event_type")
    cls = PAYLOADS.get(event_type) if isinstance(event_type, str) else None
    if event_type is None:
        issues.append(Issue("event_type", "missing: required field"))
    elif cls is None:
        issues.append(
            Issue("event_type", f"unknown: {event_type!r} is not an event type (one of {', '.join(EVENT_TYPES)})")
        )
    payload = None
    if "payload" not in doc:
        issues.append(Issue("payload", "missing: required field"))
    elif not isinstance(doc["payload"], dict):
        issues.append(Issue("payload", f"type: expected an object, got {_kind(doc['payload'])}"))
    elif cls is not None:
        payload = _build(cls, doc["payload"], "payload", issues)
    if issues:
        raise ContractError(issues)
    return Event(event_id, event_type, occurred_at, merchant_id, reseller_id, payload, version)


# ------------------------------------------------------------------------ validation

_ENVELOPE = ("event_id", "event_type", "occurred_at", "merchant_id", "reseller_id", "schema_version", "payload")


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "an integer",
        float: "a number with a fraction",
    }.get(type(value), type(value).__name__)


def _figure(n: int) -> str:
    """An integer as a person reads it in an error: whole if short, else its size."""
    text = str(n)
    return text if len(text) <= 40 else f"a {len(text.lstrip('-'))}-digit integer"


def _no_extra(doc: dict, allowed: tuple[str, ...], prefix: str, issues: list[Issue]) -> None:
    for key in doc:
        if key not in allowed:
            issues.append(
                Issue(f"{prefix}{key}", f"unknown: field not in the contract (expected {', '.join(allowed)})")
            )


def _check_id(doc: dict, name: str, prefix: str, issues: list[Issue]) -> str | None:
    value = _field(doc, name, str, prefix, issues)
    if isinstance(value, str) and not _ID.fullmatch(value):
        issues.append(
            Issue(prefix + name, f"format: {value[:80]!r} is not an identifier (1–64 of A-Z a-z 0-9 _ . : -)")
        )
        return None
    return value


def _field(doc: dict, name: str, typ: Any, prefix: str, issues: list[Issue], optional: bool = False) -> Any:
    path = prefix + name
    if name not in doc or doc[name] is None:
        if not optional:
            issues.append(Issue(path, "missing: required field"))
        return None
    if typing.get_origin(typ) is tuple:
        return _records(doc[name], typing.get_args(typ)[0], MAX_ITEMS[name], path, issues)
    value = _coerce(doc[name], typ, path, issues)
    limit = MAX_CHARS.get(name)
    if isinstance(value, str) and limit is not None and len(value) > limit:
        issues.append(Issue(path, f"length: {len(value)} characters, at most {limit}"))
        return None
    return value


def _records(value: Any, cls: type, limit: int, path: str, issues: list[Issue]) -> tuple | None:
    """A list of 1 to `limit` nested records (an adjustment's legs), each checked like a
    payload, its problems named by index ("payload.legs[1].side")."""
    if not isinstance(value, list):
        issues.append(Issue(path, f"type: expected an array, got {_kind(value)}"))
        return None
    if not 1 <= len(value) <= limit:
        issues.append(Issue(path, f"length: {len(value)} items, 1 to {limit} allowed"))
        return None
    before, items = len(issues), []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            issues.append(Issue(f"{path}[{i}]", f"type: expected an object, got {_kind(item)}"))
            continue
        items.append(_build(cls, item, f"{path}[{i}]", issues))
    return tuple(items) if len(issues) == before else None


def _coerce(value: Any, typ: Any, path: str, issues: list[Issue]) -> Any:
    if typ is Money:
        return _money(value, path, issues)
    if id(typ) in _LITERALS:
        allowed = typing.get_args(typ)
        if value not in allowed:
            issues.append(Issue(path, f"enum: {value!r} is not one of {', '.join(map(str, allowed))}"))
            return None
        return value
    if typ is bool:
        if not isinstance(value, bool):
            issues.append(Issue(path, f"type: expected true or false, got {_kind(value)}"))
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            issues.append(Issue(path, f"type: expected an integer, got {_kind(value)}"))
            return None
        if not MIN_INT <= value <= MAX_INT:
            issues.append(Issue(path, f"range: {_figure(value)} is outside {MIN_INT}..{MAX_INT} (a 32-bit integer)"))
            return None
        return value
    if typ is str:
        if not isinstance(value, str) or not value:
            issues.append(Issue(path, f"type: expected a non-empty string, got {_kind(value)}"))
            return None
        return value
    if typ is datetime:
        return _timestamp(value, path, issues)
    if typ is date:
        return _calendar_date(value, path, issues)
    raise TypeError(f"contract field type {typ!r} has no validator")  # a programming error


def _calendar_date(value: Any, path: str, issues: list[Issue]) -> date | None:
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    issues.append(Issue(path, f"format: {str(value)[:40]!r} is not a date (YYYY-MM-DD)"))
    return None


def _timestamp(value: Any, path: str, issues: list[Issue]) -> datetime | None:
    if type(value) is str and _RFC3339_Z.fullmatch(value):
        try:  # the same datetime as below (tzinfo timezone.utc), without the conversions
            return datetime.fromisoformat(value)
        except ValueError:  # a month 13, say: said below
            pass
    if not isinstance(value, str):
        issues.append(Issue(path, f"type: expected an RFC 3339 UTC timestamp string, got {_kind(value)}"))
        return None
    try:
        if not _RFC3339.fullmatch(value):
            raise ValueError(value)
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        issues.append(Issue(path, f"format: {value[:40]!r} is not an RFC 3339 timestamp"))
        return None
    if ts.utcoffset() is None or ts.utcoffset().total_seconds() != 0:
        issues.append(Issue(path, f"timezone: {value!r} must be UTC (end in Z or +00:00)"))
        return None
    return ts.astimezone(timezone.utc)


def _money(value: Any, path: str, issues: list[Issue]) -> Money | None:
    if not isinstance(value, dict):
        issues.append(Issue(path, f"type: expected money as {{minor, currency}}, got {_kind(value)}"))
        return None
    before = len(issues)
    _no_extra(value, ("minor", "currency"), path + ".", issues)
    minor = value.get("minor")
    if "minor" not in value:
        issues.append(Issue(path + ".minor", "missing: required field"))
    elif isinstance(minor, float):
        issues.append(
            Issue(path + ".minor", f"type: {minor!r} has a fraction; money is an integer count of minor units")
        )
    elif isinstance(minor, bool) or not isinstance(minor, int):
        issues.append(Issue(path + ".minor", f"type: expected an integer count of minor units, got {_kind(minor)}"))
    elif minor > MAX_MINOR:
        issues.append(
            Issue(
                path + ".minor",
                f"range: {_figure(minor)} is above {MAX_MINOR}, the largest amount the ledger stores "
                "(minor units are a signed 64-bit integer)",
            )
        )
    currency = value.get("currency")
    if "currency" not in value:
        issues.append(Issue(path + ".currency", "missing: required field"))
    elif not is_currency(currency):
        issues.append(Issue(path + ".currency", f"currency: {currency!r} is not an ISO 4217 code"))
    return Money(minor, currency) if len(issues) == before else None


def _hints(cls: type) -> dict[str, tuple[Any, bool]]:
    """Field name -> (type, optional) from the payload dataclass's annotations."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        optional = (typing.get_origin(hint) in (typing.Union, types.UnionType)) and type(None) in args
        out[name] = (next(a for a in args if a is not type(None)) if optional else hint, optional)
    return out


_PAYLOAD_FIELDS = {cls: _hints(cls) for cls in (*PAYLOADS.values(), AdjustmentLeg)}
# by identity: hashing a Literal type costs more than the check it guards
_LITERALS = frozenset(
    id(t) for fields in _PAYLOAD_FIELDS.values() for t, _ in fields.values() if typing.get_origin(t) is Literal
)


def _build(cls: type, doc: dict, prefix: str, issues: list[Issue]) -> Any:
    fields = _PAYLOAD_FIELDS[cls]
    before = len(issues)
    _no_extra(doc, tuple(fields), prefix + ".", issues)
    values = {}
    for name, (typ, optional) in fields.items():
        if typ is str and name.endswith("_id"):
            values[name] = None if optional and doc.get(name) is None else _check_id(doc, name, prefix + ".", issues)
        else:
            values[name] = _field(doc, name, typ, prefix + ".", issues, optional)
    _check_amounts(values, prefix, issues)
    amount = values.get("amount")
    if cls is AdjustmentLeg and isinstance(amount, Money) and amount.minor == 0:
        issues.append(Issue(f"{prefix}.amount.minor", "range: a leg moves at least 1 minor unit"))
    return cls(**values) if len(issues) == before else None


def _check_amounts(values: Mapping[str, Any], prefix: str, issues: list[Issue]) -> None:
    """Money in payloads is a magnitude; direction comes from the event type."""
    for name, value in values.items():
        if isinstance(value, Money) and value.minor < 0:
            issues.append(Issue(f"{prefix}.{name}.minor", f"sign: {value.minor} is negative; amounts are magnitudes"))
    rate = values.get("fx_rate")
    if rate is not None and (not _DECIMAL.fullmatch(rate) or not rate.strip("0.")):
        issues.append(Issue(f"{prefix}.fx_rate", f"format: {rate!r} is not a positive decimal rate"))


# --------------------------------------------------------------------------- fast path
# The contract again as msgspec Structs, so a well-formed message is parsed and checked in
# one pass of compiled code instead of field by field in Python. It is only a shortcut:
# everything it accepts, `from_dict` accepts with the same Event (the same regexes, the
# same timestamp and date parsing, no extra fields, no nulls for required fields); on any
# doubt it gives up (None) and `from_dict` runs, which names every problem. Messages with
# a backslash never take it (escapes get their own PAN scan in `decode`).

# Ids are read as plain text and matched against _ID after decoding: msgspec's `pattern`
# costs about a microsecond an id, a bound fullmatch a fraction of that.
_TextS = Annotated[str, msgspec.Meta(min_length=1)]


class _MoneyS(msgspec.Struct, forbid_unknown_fields=True):
    minor: Annotated[int, msgspec.Meta(ge=0, le=MAX_MINOR)]
    currency: str


class _EnvelopeS(msgspec.Struct, forbid_unknown_fields=True):
    event_id: str
    event_type: str
    occurred_at: str
    merchant_id: str
    reseller_id: str
    schema_version: int
    payload: msgspec.Raw


def _struct_of(cls: type) -> type:
    """The msgspec twin of a payload dataclass; dates and times stay text (parsed below)."""
    fields = []
    for name, (typ, optional) in _PAYLOAD_FIELDS[cls].items():
        if typ is Money:
            t: Any = _MoneyS
        elif typ is str:
            t = str if name.endswith("_id") else _TextS
        elif typ in (date, datetime):
            t = str
        elif typ is int:
            t = Annotated[int, msgspec.Meta(ge=MIN_INT, le=MAX_INT)]
        else:  # bool, Literal: msgspec checks them exactly as _coerce does
            t = typ
        fields.append((name, t | None, None) if optional else (name, t))
    return msgspec.defstruct(f"_{cls.__name__}S", fields, forbid_unknown_fields=True)


_FAST_ENVELOPE = msgspec.json.Decoder(_EnvelopeS)
_FAST_PAYLOADS = {
    event_type: (
        cls,
        msgspec.json.Decoder(_struct_of(cls)),
        tuple((name, typ) for name, (typ, _) in _PAYLOAD_FIELDS[cls].items() if typ in (Money, date, datetime)),
        tuple(name for name, (typ, _) in _PAYLOAD_FIELDS[cls].items() if typ is str and name.endswith("_id")),
    )
    for event_type, cls in PAYLOADS.items()
    # the rare events a person publishes (nested legs, bounded text) always take from_dict
    if event_type not in PERSON_EVENT_TYPES
}


_is_id = _ID.fullmatch


def _fast_decode(raw: bytes | str) -> Event | None:
    try:
        env = _FAST_ENVELOPE.decode(raw)
        spec = _FAST_PAYLOADS.get(env.event_type)
        if spec is None or env.schema_version not in KNOWN_SCHEMA_VERSIONS:
            return None
        cls, decoder, typed, ids = spec
        values = decoder.decode(env.payload)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return None
    if not (_is_id(env.event_id) and _is_id(env.merchant_id) and _is_id(env.reseller_id)):
        return None
    for name in ids:
        value = getattr(values, name)
        if value is not None and not _is_id(value):
            return None
    issues: list[Issue] = []
    occurred_at = _timestamp(env.occurred_at, "", issues)
    for name, typ in typed:  # the fields msgspec left as text (dates, times) or as its own Money
        value = getattr(values, name)
        if value is None:
            continue
        if typ is Money:
            if value.currency not in EXPONENT:
                return None
        else:  # parsed here, into the Struct (msgspec does not check what is set on one)
            setattr(values, name, (_timestamp if typ is datetime else _calendar_date)(value, "", issues))
    rate = getattr(values, "fx_rate", None)
    if issues or (rate is not None and (not _DECIMAL.fullmatch(rate) or not rate.strip("0."))):
        return None
    try:
        # the payload dataclass (and its Money) built from the Struct's fields in C: the
        # same object as cls(**fields), at a fraction of the cost of frozen __init__s
        payload = msgspec.convert(values, cls, from_attributes=True)
    except msgspec.ValidationError:
        return None
    return Event(
        env.event_id, env.event_type, occurred_at, env.merchant_id, env.reseller_id, payload, env.schema_version
    )
