"""Publishing an approved adjusting entry: `adjustment.posted` on payments.events, signed
by its tenant like every other event, so the ledger posts it by its rule and the
reconciliation flow sees its variance closed. Events stay the one source of truth: the
workbench keeps no entry of its own beyond the proposal and the event id it got back.

The event id is a hash of the variance, the entry (kind, currency, legs) and its approval
(who proposed, who approved, code, note), never of the time: a double click, or a retry
after a timeout, publishes the same id, and the ledger counts the second a duplicate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from clearline import events
from clearline.pipelines.connectors.signed_publish import PublishError, publish_signed
from clearline.recon import AdjustmentProposal, check_adjustment

__all__ = ["Approval", "PublishError", "adjustment_event", "adjustment_id", "publish_adjustment"]


@dataclass(frozen=True, slots=True)
class Approval:
    """Who signs for an entry: the tenant whose key signs it (the merchant's reseller, or
    `platform`), who proposed it, who approved it, the resolution code and the note."""

    reseller_id: str
    proposed_by: str
    approved_by: str
    code: str
    note: str


def adjustment_id(proposal: AdjustmentProposal, approval: Approval) -> str:
    """`adj_` + 32 hex digits of SHA-256 over everything the event says but its time."""
    content = {
        "variance_id": proposal.variance_id,
        "merchant_id": proposal.merchant_id,
        "kind": proposal.kind,
        "currency": proposal.currency,
        "legs": [[leg.account, leg.side, leg.amount.minor] for leg in proposal.legs],
        "approval": dataclasses.astuple(approval),
    }
    return "adj_" + hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def adjustment_event(
    proposal: AdjustmentProposal, approval: Approval, approved_at: datetime | None = None
) -> events.Event:
    """The `adjustment.posted` event of an approved proposal; ValueError (its reason)
    when the approver proposed it, the entry cannot post, or the event breaks the contract."""
    a = approval
    if a.approved_by.strip().casefold() == a.proposed_by.strip().casefold():
        raise ValueError(f"{a.approved_by} proposed this entry: another person must approve it (maker-checker)")
    problems = check_adjustment(proposal)
    if problems:
        raise ValueError("the entry cannot be posted: " + "; ".join(problems))
    at = approved_at or datetime.now(timezone.utc)
    payload = events.AdjustmentPosted(
        proposal.variance_id, proposal.kind, a.code, a.note, a.proposed_by, a.approved_by, at, proposal.legs
    )
    merchant = proposal.merchant_id or events.PLATFORM
    event = events.Event(adjustment_id(proposal, a), "adjustment.posted", at, merchant, a.reseller_id, payload)
    try:
        events.decode(events.encode(event))  # the ledger's own contract check, before anything leaves
    except events.ContractError as exc:
        raise ValueError(f"the entry breaks the event contract: {exc}") from None
    return event


def publish_adjustment(
    proposal: AdjustmentProposal,
    *,
    reseller_id: str,
    proposed_by: str,
    approved_by: str,
    code: str,
    note: str,
    config_dir: Path | str | None = None,
    bootstrap: str | None = None,
) -> str:
    """Build, sign with `reseller_id`'s key (the merchant's reseller, or `platform`) and
    produce the approved entry to the ledger's events topic, keyed by merchant; returns
    the event id once Kafka acknowledged it. ValueError when it may not be published
    (see `adjustment_event`); PublishError when Kafka did not take it."""
    event = adjustment_event(proposal, Approval(reseller_id, proposed_by, approved_by, code, note))
    publish_signed([event], config_dir=config_dir, bootstrap=bootstrap)
    return event.event_id
