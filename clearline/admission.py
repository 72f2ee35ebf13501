"""What may enter the ledger: the checks every consumed message passes before posting.

In order, because each check needs the one before it: the tenant header names a known
tenant; the HMAC signature over the exact bytes verifies with that tenant's key; the bytes
are a valid contract event (which also refuses card numbers); and the event's reseller_id
is the tenant that signed it. The first failure is the reason a person reads in the
dead-letter topic, so each says what is wrong and what to do.

Whatever the reason, what is kept of a refused message (`kept`) has every card number
masked, and its detail too: a message refused for its signature can carry one as well as
a message refused for the card number itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from clearline import events
from clearline.signing import SIGNATURE_HEADER, TENANT_HEADER, TenantKeys, UnknownTenant, verify


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # short and sortable: signature, tenant, contract:<kind>, …
    detail: str  # what a person needs to act on it
    event_id: str | None


# A refused message is kept whole up to this size (every contract event fits eight times
# over), else as a prefix of it; the dead-letter producer sends what is kept.
KEPT_BYTES = 512 * 1024
DETAIL_CHARS = 2000

_EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9_.:\-]{0,63})"')


def sniff_event_id(raw: bytes | None) -> str | None:
    """The event_id of a message that may not parse, so a retried bad event is known again."""
    m = _EVENT_ID.search(raw or b"")
    return m.group(1).decode() if m else None


def admit(raw: bytes | None, headers: list[tuple[str, bytes]], keys: TenantKeys) -> events.Event | Refusal:
    """The event in a consumed message, or why it may not be posted.

    A refusal names the event_id only once the signature has verified: the ledger keeps a
    rejected id for good, so a forged message must not be able to claim the id of a real
    event that has not arrived yet. Its detail is masked (`events.masked_text`): it quotes
    headers and fields of a message that may carry a card number."""
    admitted = _admit(raw, headers, keys)
    if isinstance(admitted, events.Event):
        return admitted
    event_id = admitted.event_id
    return Refusal(
        admitted.reason,
        events.masked_text(admitted.detail, DETAIL_CHARS),
        None if event_id is None or events.contains_pan(event_id, wide=True) else event_id,
    )


def _admit(raw: bytes | None, headers: list[tuple[str, bytes]], keys: TenantKeys) -> events.Event | Refusal:
    if raw is None:
        return Refusal("empty", "the message has no value (a tombstone?); events must carry a JSON body", None)
    header = dict(headers)
    tenant = (header.get(TENANT_HEADER) or b"").decode("utf-8", "replace")
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
        return Refusal(f"contract:{exc.reason}", str(exc), event_id)
    if event.reseller_id != tenant:
        # no id: one tenant must not be able to claim the ids of another tenant's events
        return Refusal("tenant", f"signed by tenant {tenant!r} but reseller_id is {event.reseller_id!r}", None)
    return event


@dataclass(frozen=True, slots=True)
class Kept:
    """What is kept of a refused message: its bytes with every card number masked, cut to
    at most a bounded prefix; `length` and `sha256` are of the whole masked message, so a
    reader knows whether `data` is all of it and can check a copy against it."""

    data: bytes
    length: int
    sha256: str

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.length


def kept(raw: bytes | None, limit: int = KEPT_BYTES) -> Kept:
    """A refused message as the ledger keeps and forwards it, whatever the refusal: card
    numbers masked in the bytes (plain, grouped, JSON-escaped, UTF-16/32, inside bytes that
    are not UTF-8), at most `limit` bytes of them (masked again after the cut, which can
    leave a run of digits that reads as a card number where the whole did not)."""
    masked = events.mask_pans(raw or b"")
    data = masked if len(masked) <= limit else events.mask_pans(masked[:limit])
    return Kept(data, len(masked), hashlib.sha256(masked).hexdigest())
