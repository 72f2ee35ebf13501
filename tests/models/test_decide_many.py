"""`decide_many` scores a whole batch of requests in one model call; each request must get
exactly the decision `decide` gives it alone — same outcome, limit, score to the last bit,
reason codes and shadow — whatever else is in the batch."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from clearline import config
from clearline.events import Money
from clearline.models.decision import UnderwritingRequest, decide, decide_many
from clearline.models.policy import Policy
from tests.models.test_api_core import FAST  # the fitted scorecard and boosted trees, through the fast scorer

POLICY = Policy.from_config(config.load("policy"))
NAMES = FAST["gbm"].features

value = st.one_of(st.none(), st.floats(-1e4, 1e4, allow_nan=False), st.just(float("nan")), st.just("text"))
features = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={n: value for n in NAMES}),  # some features absent: unscorable
)


@st.composite
def requests(draw, i: int) -> tuple[UnderwritingRequest, dict | None]:
    amount = Money(draw(st.integers(1, 5_000_000)), draw(st.sampled_from(["EUR", "USD", "GBP", "JPY"])))
    request = UnderwritingRequest(
        f"evt_{i}",
        f"ord_{i}",
        f"b_{i % 3}",
        "m_1",
        datetime(2026, 1, 1, tzinfo=timezone.utc),
        amount,
        draw(st.sampled_from([30, 60])),
    )
    return request, draw(features)


batches = st.integers(0, 12).flatmap(lambda n: st.tuples(*(requests(i) for i in range(n))))


@settings(max_examples=60, deadline=None)
@given(
    items=batches,
    champion=st.sampled_from(["gbm", "scorecard", None]),
    challenger=st.sampled_from(["gbm", "scorecard", None]),
    kill=st.booleans(),
)
def test_a_batch_decides_each_request_as_it_would_be_decided_alone(items, champion, challenger, kill):
    policy = dataclasses.replace(POLICY, kill_switch=kill)
    champ, chall = FAST.get(champion), FAST.get(challenger)
    together = decide_many(list(items), champ, chall, policy)
    alone = [decide(request, f, champ, chall, policy) for request, f in items]
    assert together == alone
    assert [d.request for d in together] == [r for r, _ in items]  # one decision per request, in order


def test_a_batch_with_scorable_and_unscorable_requests_scores_only_the_scorable():
    full = {n: 1.0 for n in NAMES}
    items = [
        (
            UnderwritingRequest(
                f"evt_{i}", f"ord_{i}", "b", "m", datetime(2026, 1, 1, tzinfo=timezone.utc), Money(10_000, "EUR"), 30
            ),
            f,
        )
        for i, f in enumerate([full, None, {**full, NAMES[0]: "text"}, full])
    ]
    got = decide_many(items, FAST["gbm"], FAST["scorecard"], POLICY)
    assert [d.model is not None for d in got] == [True, False, False, True]
    assert [d.challenger is not None for d in got] == [True, False, False, True]
    assert got[2].missing_features == (NAMES[0],) and got[0].score == got[3].score
