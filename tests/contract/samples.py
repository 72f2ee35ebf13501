"""Messages built by Clearline's own code, for tests that check them against the contract
without running a flow."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec

from clearline.events import Money


def decisions() -> list[dict]:
    """Two decision records exactly as the risk flow publishes them (the sink's record,
    encoded the way its journal encodes it): one scored, with reason codes and a
    challenger in the shadow, and one by the conservative rules with the kill switch on."""
    from clearline.models.decision import Decision, Shadow, UnderwritingRequest
    from clearline.models.reasons import ReasonCode
    from clearline.models.scorer import ModelRef
    from clearline.pipelines.connectors.decision_sink import decision_record

    at = datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
    first = UnderwritingRequest("evt_1", "ord_1", "buy_1", "m_00001", at, Money(250000, "EUR"), 30)
    second = UnderwritingRequest("evt_2", "ord_2", "buy_2", "m_00002", at, Money(120000, "USD"), 60)
    scored = Decision(
        first,
        "review",
        Money(200000, "EUR"),
        ("score_band:C",),
        ModelRef("gbm", "3"),
        0.31,
        "C",
        (ReasonCode("buyer_late_ratio_90d", 0.4, 0.0, 0.12), ReasonCode("buyer_orders_90d", None, 3.0, -0.01)),
        (("amount_minor", 250000.0), ("buyer_late_ratio_90d", 0.4), ("buyer_orders_90d", None)),
        challenger=Shadow(ModelRef("scorecard", "1"), 0.2, "approve", Money(250000, "EUR")),
    )
    fallback = Decision(second, "approve", Money(500000, "USD"), ("kill_switch",), kill_switch=True)
    now = datetime.now(timezone.utc)
    return [msgspec.json.decode(msgspec.json.encode(decision_record(d, now))) for d in (scored, fallback)]
