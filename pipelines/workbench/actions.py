"""What a person does in the workbench, as functions of the person, the request and the
stores: every action is checked (role, tenant, the rule it must keep), then done, then
appended to the audit log — a refused approval too.

Variance changes go the way `clearline recon resolve` goes: each is a queued request in the
recon state folder (`queue_resolution`, durable before the page answers), applied by the
running recon flow at its next tick; when no flow holds the variance store the workbench
applies the queue itself at once and publishes the store's snapshot. Either way, nothing a
person did is lost if a flow restarts: a request stays in the queue until it is applied
(once: see clearline.recon.variances.resolutions).

Adjusting entries are maker-checker: a resolver's proposal is stored here; a different
person approves it, and approval publishes `adjustment.posted` to payments.events (H2's
`publish_adjustment`), which the ledger posts like any event. At or above the configured
threshold (per currency, the largest leg) only an approver may approve; below it any
resolver who is not the proposer may. Never the proposer.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import duckdb

from clearline.events import AdjustmentLeg, Money
from clearline.pipelines.workbench import auth
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.workbench.state import WorkbenchState

ADJUSTED_CATEGORIES = ("fee_mismatch", "currency_fx_mismatch", "amount_mismatch")


class Refused(ValueError):
    """An action the workbench refuses; the message says why, in words for the person."""


class NotAllowed(Refused):
    """Refused because of who asks (their role), not what they asked."""


def resolution(
    settings: WorkbenchSettings, code: str | None, note: str, watch_until: date | None, today: date
) -> dict[str, Any]:
    """The timing rule and its neighbours, as a pure check of one resolution request:
    a code from the configuration and a note are required; a code that watches (timing)
    requires a date after today by which the variance must clear, others take none.
    Returns the request's fields for the queue."""
    if not note or not note.strip():
        raise Refused("a note is required: say what was found or done")
    known = settings.code(code or "")
    if known is None:
        raise Refused(f"resolution code {code!r}: choose one of {', '.join(c.code for c in settings.codes)}")
    if known.watch:
        if watch_until is None:
            raise Refused(f"{known.code}: give the date by which it must clear (it reopens if it has not)")
        if watch_until <= today:
            raise Refused(f"{known.code}: the date it must clear by ({watch_until}) must be after today ({today})")
    elif watch_until is not None:
        raise Refused(f"{known.code}: only a timing resolution takes a date")
    return {"note": note.strip(), "assignee": None, "code": known.code, "watch_until": watch_until}


def assignment(note: str, assignee: str) -> dict[str, Any]:
    if not assignee or not assignee.strip():
        raise Refused("assign to whom? give a name")
    return {"note": (note or "").strip() or f"assigned to {assignee.strip()}", "assignee": assignee.strip()}


def move(settings: WorkbenchSettings, state: WorkbenchState, user: dict, variance_ids: list[str], request: dict) -> str:
    """Queue one request per variance (assign or resolve), audit each, then apply the queue
    when no flow holds the store. Returns "applied" or "queued" (the flow applies it)."""
    from clearline.recon import queue_resolution

    if not auth.may(user["role"], "resolver"):
        raise NotAllowed(f"{user['name']} is a {user['role']}: only a resolver or an approver may do that")
    action = "assign" if request.get("assignee") else "resolve"
    for vid in variance_ids:
        queue_resolution(
            settings.recon_state,
            vid,
            request["note"],
            request.get("assignee"),
            code=request.get("code"),
            actor=user["name"],
            watch_until=request.get("watch_until"),
        )
        state.record(user["name"], action, vid, **{k: v for k, v in request.items() if v is not None})
    return settle(settings)


def settle(settings: WorkbenchSettings) -> str:
    """Apply the queue now when no flow holds the variance store (and publish it)."""
    from clearline.recon import VarianceStore, apply_resolutions, publish_variances

    path = settings.recon_state / "variances.duckdb"
    if not path.is_file():
        return "queued"
    try:
        store = VarianceStore(path)
    except duckdb.IOException:
        return "queued"
    with store:
        apply_resolutions(settings.recon_state, store)
        publish_variances(settings.recon_state, store, checkpoint=True)
    return "applied"


# ------------------------------------------------------------------ adjusting entries


def adjustments() -> dict[str, Any] | None:
    """H2's adjustment surface, or None while it is not there (the page then says so)."""
    try:
        from clearline.pipelines.connectors.adjustments import PublishError, publish_adjustment
        from clearline.recon import ADJUSTMENT_ACCOUNTS, AdjustmentProposal, check_adjustment, propose_adjustment
    except (ImportError, AttributeError):
        return None
    return {
        "PublishError": PublishError,
        "accounts": ADJUSTMENT_ACCOUNTS,
        "Proposal": AdjustmentProposal,
        "check": check_adjustment,
        "propose": propose_adjustment,
        "publish": publish_adjustment,
    }


def to_body(proposal) -> dict[str, Any]:
    """A proposal as the workbench stores and edits it: its legs as account, side and minor
    units of the body's currency (the form's fields)."""
    body = dataclasses.asdict(proposal)
    body["legs"] = [{"account": leg.account, "side": leg.side, "minor": leg.amount.minor} for leg in proposal.legs]
    return body


def from_body(adj: dict, body: dict[str, Any]):
    """The proposal a stored or edited body states, its legs the contract's."""
    currency = str(body["currency"])
    legs = tuple(
        AdjustmentLeg(str(leg["account"]), str(leg["side"]), Money(int(leg["minor"]), currency)) for leg in body["legs"]
    )
    return adj["Proposal"](**{**body, "legs": legs})


def largest_leg(body: dict[str, Any]) -> int:
    return max((int(leg["minor"]) for leg in body["legs"]), default=0)


def propose(state: WorkbenchState, user: dict, variance: dict, tenant: str | None, body: dict[str, Any]) -> int:
    adj = adjustments()
    if adj is None:
        raise Refused("adjustments are not available yet in this installation")
    if not auth.may(user["role"], "resolver"):
        raise NotAllowed(f"{user['name']} is a {user['role']}: only a resolver or an approver may propose")
    standing = [p for p in state.proposals(variance["variance_id"]) if p["status"] in ("proposed", "approved")]
    if standing:
        p = standing[-1]
        raise Refused(
            f"proposal {p['proposal_id']} is {p['status']} already: one entry per break"
            + (" (refuse it first to propose another)" if p["status"] == "proposed" else "")
        )
    body = {**body, "variance_id": variance["variance_id"]}
    problems = adj["check"](from_body(adj, body))
    if problems:
        raise Refused("the entry cannot be posted: " + "; ".join(problems))
    pid = state.add_proposal(variance["variance_id"], tenant, body, user["name"])
    state.record(user["name"], "propose", variance["variance_id"], proposal_id=pid, legs=body["legs"])
    return pid


def approve(
    settings: WorkbenchSettings,
    state: WorkbenchState,
    user: dict,
    proposal: dict,
    note: str,
    bootstrap=None,
    variance: dict | None = None,
) -> str:
    """Approve and publish; the event id. Refusals are audited before they are raised.
    `variance` (as published now): an entry for a variance resolved meanwhile is refused."""
    adj = adjustments()
    vid, pid = proposal["variance_id"], proposal["proposal_id"]
    body = proposal["body"]
    threshold = settings.threshold(body["currency"])
    why = None
    if adj is None:
        why = "adjustments are not available yet in this installation"
    elif proposal["status"] != "proposed":
        why = f"proposal {pid} is {proposal['status']} already"
    elif user["name"].casefold() == proposal["proposed_by"].casefold():
        why = f"{user['name']} proposed this entry: another person must approve it (maker-checker)"
    elif not auth.may(user["role"], "resolver"):
        why = f"{user['name']} is a viewer: viewers do not approve"
    elif largest_leg(body) >= threshold and not auth.may(user["role"], "approver"):
        why = (
            f"the entry reaches the approval threshold ({threshold} minor units of {body['currency']}):"
            " only an approver may approve it"
        )
    elif not note or not note.strip():
        why = "a note is required: say why the entry is right"
    elif variance is not None and variance.get("status") == "resolved":
        why = f"{vid} is resolved already ({variance.get('note') or 'no note'}): refuse the entry instead"
    if why:
        state.record(user["name"], "approve_refused", vid, proposal_id=pid, reason=why)
        raise Refused(why)
    try:
        event_id = adj["publish"](
            from_body(adj, body),
            reseller_id=proposal["tenant"] or auth.PLATFORM,
            proposed_by=proposal["proposed_by"],
            approved_by=user["name"],
            code="written_off" if body.get("kind") == "write_off" else "our_error",
            note=note.strip(),
            bootstrap=bootstrap,
        )
    except ValueError as exc:
        state.record(user["name"], "approve_refused", vid, proposal_id=pid, reason=str(exc))
        raise Refused(str(exc)) from None
    except adj["PublishError"] as exc:  # Kafka did not take it: still a proposal, approve again later
        state.record(user["name"], "approve_failed", vid, proposal_id=pid, reason=str(exc))
        raise Refused(f"the entry was not published, it stays proposed (try again): {exc}") from None
    state.decide(pid, "approved", user["name"], event_id=event_id)
    state.record(user["name"], "approve", vid, proposal_id=pid, event_id=event_id, note=note.strip())
    return event_id


def refuse(state: WorkbenchState, user: dict, proposal: dict, note: str) -> None:
    """Refuse a proposal (its proposer too may: withdrawing an entry needs no second person)."""
    if not auth.may(user["role"], "resolver"):
        raise NotAllowed(f"{user['name']} is a {user['role']}: only a resolver or an approver may refuse a proposal")
    if proposal["status"] != "proposed":
        raise Refused(f"proposal {proposal['proposal_id']} is {proposal['status']} already")
    if not note or not note.strip():
        raise Refused("a note is required: say what is wrong with the entry")
    state.decide(proposal["proposal_id"], "refused", user["name"], reason=note.strip())
    state.record(user["name"], "refuse", proposal["variance_id"], proposal_id=proposal["proposal_id"], note=note)


# ------------------------------------------------------------------ emergency freezes


def _published_freezes(settings: WorkbenchSettings, state: WorkbenchState) -> None:
    from clearline.pipelines.workbench import freezes

    keys = ("kind", "target", "tenant", "reason", "frozen_by", "frozen_at")
    freezes.publish(settings.state_dir, [{k: f[k] for k in keys} for f in state.freezes(active_only=True)])


def freeze(
    settings: WorkbenchSettings, state: WorkbenchState, user: dict, kind: str, target: str, reason: str, owner
) -> int:
    """Freeze a target (checked, stored, audited, published); its id."""
    from clearline.pipelines.workbench import freezes
    from clearline.pipelines.workbench.state import UserError

    target = (target or "").strip()
    why = freezes.check(user, kind, target, owner)
    if why is None and not (reason or "").strip():
        why = "a reason is required: say why it must be held"
    if why:
        state.record(user["name"], "freeze_refused", None, kind=kind, target=target, reason=why)
        raise Refused(why)
    try:
        fid = state.add_freeze(kind, target, owner if kind == "merchant" else None, reason.strip(), user["name"])
    except UserError as exc:
        state.record(user["name"], "freeze_refused", None, kind=kind, target=target, reason=str(exc))
        raise Refused(str(exc)) from None
    state.record(user["name"], "freeze", None, freeze_id=fid, kind=kind, target=target, reason=reason.strip())
    _published_freezes(settings, state)
    return fid


def lift(
    settings: WorkbenchSettings,
    state: WorkbenchState,
    user: dict,
    freeze_id: int,
    note: str,
    owner,
    bootstrap: str | None = None,
) -> list:
    """Lift a freeze (checked, audited, published) and release every payout it held (one
    `payout.released` event each, published before the lift is recorded: if Kafka does
    not take them, the freeze stays and the lift may be tried again). The releases."""
    from clearline.pipelines.connectors.payout_release import release_held
    from clearline.pipelines.connectors.signed_publish import PublishError
    from clearline.pipelines.workbench import freezes
    from clearline.pipelines.workbench.state import UserError

    current = state.freeze(freeze_id)
    if current is None:
        raise Refused(f"no freeze {freeze_id}")
    why = freezes.check(user, current["kind"], current["target"], owner)
    if why is None and not (note or "").strip():
        why = "a note is required: say why the hold can end"
    if why:
        state.record(user["name"], "lift_refused", None, freeze_id=freeze_id, reason=why)
        raise Refused(why)
    if current["lifted_at"] is not None:
        raise Refused(f"freeze {freeze_id} was lifted already, by {current['lifted_by']}")
    try:
        released = release_held(
            settings.ledger_state / "archive", current["kind"], current["target"], user["name"], bootstrap=bootstrap
        )
    except PublishError as exc:
        state.record(user["name"], "lift_failed", None, freeze_id=freeze_id, reason=str(exc))
        raise Refused(f"the held payouts were not released, so the freeze stays (try again): {exc}") from None
    try:
        state.lift_freeze(freeze_id, user["name"], note.strip())
    except UserError as exc:
        raise Refused(str(exc)) from None
    state.record(
        user["name"],
        "lift",
        None,
        freeze_id=freeze_id,
        kind=current["kind"],
        target=current["target"],
        note=note,
        released=[e.event_id for e in released],
    )
    _published_freezes(settings, state)
    return released
