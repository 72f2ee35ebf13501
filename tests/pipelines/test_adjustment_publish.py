"""Publishing an approved entry, before anything reaches Kafka: the event is the contract's,
its id depends on the variance, the entry and the approval and never on the time, and what
may not be published is refused with its reason (a ValueError the workbench shows)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from clearline import events
from clearline.pipelines.connectors.adjustments import Approval, adjustment_event, publish_adjustment
from clearline.recon import AdjustmentProposal


def leg(account: str, side: str, minor: int) -> events.AdjustmentLeg:
    return events.AdjustmentLeg(account, side, events.Money(minor, "USD"))


PROPOSAL = AdjustmentProposal(
    "var_00000000000000000001",
    "m_00004",
    "stripe",
    "USD",
    "fee",
    (leg("fee_expense:stripe", "debit", 37), leg("processor_receivable:stripe", "credit", 37)),
    "fee over the notice",
)
APPROVAL = Approval("rs_001", "alice", "bob", "our_error", "checked against the report")


def test_the_event_says_what_was_approved_and_round_trips():
    at = datetime(2026, 2, 1, 12, tzinfo=timezone.utc)
    event = adjustment_event(PROPOSAL, APPROVAL, approved_at=at)
    assert (event.event_type, event.merchant_id, event.reseller_id, event.occurred_at) == (
        "adjustment.posted",
        "m_00004",
        "rs_001",
        at,
    )
    p = event.payload
    assert (p.variance_id, p.kind, p.code, p.proposed_by, p.approved_by, p.approved_at) == (
        PROPOSAL.variance_id,
        "fee",
        "our_error",
        "alice",
        "bob",
        at,
    )
    assert [(x.account, x.side, x.amount) for x in p.legs] == [
        ("fee_expense:stripe", "debit", events.Money(37, "USD")),
        ("processor_receivable:stripe", "credit", events.Money(37, "USD")),
    ]
    assert events.decode(events.encode(event)) == event


def test_the_id_is_the_same_for_the_same_approval_and_differs_for_another():
    now, later = datetime(2026, 2, 1, tzinfo=timezone.utc), datetime(2026, 2, 2, tzinfo=timezone.utc)
    one = adjustment_event(PROPOSAL, APPROVAL, approved_at=now).event_id
    assert adjustment_event(PROPOSAL, APPROVAL, approved_at=later).event_id == one
    others = {
        adjustment_event(PROPOSAL, Approval("rs_001", "alice", "carol", "our_error", APPROVAL.note)).event_id,
        adjustment_event(PROPOSAL, Approval("rs_001", "alice", "bob", "our_error", "another note")).event_id,
        adjustment_event(
            AdjustmentProposal(
                *[getattr(PROPOSAL, f) for f in ("variance_id", "merchant_id", "processor")],
                "USD",
                "fee",
                tuple(leg(x.account, x.side, 38) for x in PROPOSAL.legs),
                PROPOSAL.memo,
            ),
            APPROVAL,
        ).event_id,
    }
    assert one not in others and len(others) == 3


@pytest.mark.parametrize(
    "proposal, approval, reason",
    [
        (PROPOSAL, Approval("rs_001", "alice", " Alice", "our_error", "x"), "another person must approve it"),
        (
            AdjustmentProposal(
                PROPOSAL.variance_id,
                "m_00004",
                "stripe",
                "USD",
                "manual",
                (leg("fee_expense:stripe", "debit", 37), leg("capital", "credit", 37)),
                "",
            ),
            APPROVAL,
            "the entry cannot be posted: leg 2: account: 'capital'",
        ),
        (PROPOSAL, Approval("rs_001", "alice", "bob", "our_error", ""), "breaks the event contract: payload.note"),
        (PROPOSAL, Approval("rs_001", "alice", "bob", "c" * 65, "x"), "payload.code: length: 65 characters"),
    ],
)
def test_what_may_not_be_published_is_refused_before_kafka(proposal, approval, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        publish_adjustment(
            proposal,
            reseller_id=approval.reseller_id,
            proposed_by=approval.proposed_by,
            approved_by=approval.approved_by,
            code=approval.code,
            note=approval.note,
            bootstrap="127.0.0.1:1",  # never reached: the refusal comes first
        )
