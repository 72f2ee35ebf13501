"""What may enter the ledger: the checks every consumed message passes before posting.

In order, because each check needs the one before it: the tenant header names a known
tenant; the HMAC signature over the exact bytes verifies with that tenant's key; the bytes
are a valid contract event (which also refuses card numbers); and the event's reseller_id
is the tenant that signed it. The first failure is the reason a person reads in the
dead-letter topic, so each says what is wrong and what to do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from clearline import events
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, UnknownTenant, verify


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # short and sortable: signature, tenant, contract:<kind>, …
    detail: str  # what a person needs to act on it
    event_id: str | None


_EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9_.:\-]{0,63})"')


def sniff_event_id(raw: bytes | None) -> str | None:
    """The event_id of a message that may not parse, so a retried bad event is known again."""
    m = _EVENT_ID.search(raw or b"")
    return m.group(1).decode() if m else None


def admit(raw: bytes | None, headers: list[tuple[str, bytes]], keys: TenantKeys) -> events.Event | Refusal:
    """The event in a consumed message, or why it may not be posted.

    A refusal names the event_id only once the signature has verified: the ledger keeps a
    rejected id for good, so a forged message must not be able to claim the id of a real
    event that has not arrived yet."""
    if raw is None:
        return Refusal("empty", "the message has no value (a tombstone?); events must carry a JSON body", None)
    header = {k: v for k, v in headers}
    tenant = header.get(TENANT_HEADER, b"").decode("utf-8", "replace")
    if not tenant:
        return Refusal("tenant", f"no {TENANT_HEADER} header: the producer must name the signing tenant", None)
    try:
        key = keys.key(tenant)
    except UnknownTenant as exc:
        return Refusal("tenant", str(exc), None)
    if not verify(raw, header.get(SIGNATURE_HEADER), key):
        return Refusal(
            "signature",
            f"HMAC-SHA256 signature missing or wrong for tenant {tenant!r}: the bytes were "
            "altered after signing or signed with another key",
            None,
        )
    try:
        event = events.decode(raw)
    except events.ContractError as exc:
        # never echo an id from a message that carries a card number
        event_id = None if exc.reason == "pan" else sniff_event_id(raw)
        return Refusal(f"contract:{exc.reason}", str(exc)[:2000], event_id)
    if event.reseller_id != tenant:
        # no id: one tenant must not be able to claim the ids of another tenant's events
        return Refusal("tenant", f"signed by tenant {tenant!r} but reseller_id is {event.reseller_id!r}", None)
    return event


def redacted_raw(raw: bytes | None, refusal: Refusal) -> bytes:
    """The bytes to keep for a refused message: as sent, except card numbers masked."""
    if raw is None or not refusal.reason.startswith("contract:pan"):
        return raw or b""
    text = raw.decode("utf-8", "replace")
    masked = events.redact_pans(text)
    try:  # numbers hidden in JSON escapes are masked in the parsed form
        return json.dumps(_mask(json.loads(masked))).encode()
    except json.JSONDecodeError:
        return masked.encode()


def _mask(value):
    if isinstance(value, dict):
        return {_mask(k): _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        text = str(value)
        return events.redact_pans(text) if events.contains_pan(text) else value
    return value
