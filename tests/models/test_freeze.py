"""Emergency freezes on the decision side: the pure policy (`policy.held`) and `decide_many`
with the active freezes as an input (Hypothesis), and the snapshot the workbench publishes
as the decision side reads it (`clearline.freezes.Reader`): found where configs/ say,
re-read only when replaced, a lift seen at the next read."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline import config
from clearline.events import Money
from clearline.freezes import NONE, Freezes, FreezeSnapshotError, Reader, path_from_config, read_active
from clearline.models import policy as pol
from clearline.models.decision import decide_many
from clearline.models.policy import OUTCOMES, Policy, PolicyError
from clearline.pipelines.workbench import freezes as workbench_freezes
from tests.models.test_api_core import FAST  # the fitted scorecard and boosted trees, through the fast scorer
from tests.models.test_decide_many import requests as one_request

POLICY = Policy.from_config(config.load("policy"))
CURRENCIES = sorted(POLICY.conservative.limit_minor)
MERCHANTS = ("m_1", "m_2", "m_3")

scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
amounts = st.builds(Money, st.integers(min_value=0, max_value=5_000_000), st.sampled_from(CURRENCIES + ["JPY"]))
policies = st.builds(
    lambda kill, outcome: dataclasses.replace(POLICY, kill_switch=kill, freeze_outcome=outcome),
    st.booleans(),
    st.sampled_from(["decline", "review"]),
)


def _freeze(kind: str, target: str) -> dict:
    return {
        "kind": kind,
        "target": target,
        "tenant": "rs_001" if kind == "merchant" else None,
        "reason": "suspected fraud ring",
        "frozen_by": "alice",
        "frozen_at": "2026-12-06T23:00:00+00:00",
    }


# ---------------------------------------------------------------------------- the pure policy


@given(policies, scores, amounts, st.sampled_from(["by_score", pol.NO_CHAMPION, pol.FEATURES_UNAVAILABLE]))
def test_a_frozen_merchant_is_never_approved_whatever_the_score_limits_or_kill_switch(policy, score, amount, how):
    unfrozen = pol.by_score(policy, score, amount) if how == "by_score" else pol.conservative(policy, amount, how)
    held = pol.held(policy, unfrozen, pol.FROZEN_MERCHANT)
    assert held.outcome != "approve"
    assert OUTCOMES.index(held.outcome) <= OUTCOMES.index(policy.freeze_outcome)  # never better than configured
    assert OUTCOMES.index(held.outcome) <= OUTCOMES.index(unfrozen.outcome)  # never better than without it
    assert held.reasons == (pol.FROZEN_MERCHANT, *unfrozen.reasons)  # the freeze first, the rest kept
    assert held.band == unfrozen.band and held.credit_limit.currency == amount.currency
    if held.outcome == "decline":
        assert held.credit_limit.minor == 0
    assert pol.held(policy, unfrozen, None) == unfrozen  # no freeze: exactly as it was


def test_the_freeze_outcome_is_read_from_the_policy_file_and_checked():
    assert POLICY.freeze_outcome == "decline"  # the shipped default
    review = Policy.from_config({**config.load("policy"), "freezes": {"snapshot": None, "outcome": "review"}})
    assert review.freeze_outcome == "review"
    with pytest.raises(PolicyError, match="freezes.outcome: must be review or decline, got 'approve'"):
        Policy.from_config({**config.load("policy"), "freezes": {"outcome": "approve"}})


# ---------------------------------------------------------------------------- decide_many


def requests(i: int):
    """test_decide_many's request i (any amount, currency, features), of one of MERCHANTS."""
    return st.tuples(one_request(i), st.sampled_from(MERCHANTS)).map(
        lambda t: (dataclasses.replace(t[0][0], merchant_id=t[1]), t[0][1])
    )


batches = st.integers(1, 10).flatmap(lambda n: st.tuples(*(requests(i) for i in range(n))))


@settings(max_examples=60, deadline=None)
@given(
    items=batches,
    frozen=st.sets(st.sampled_from(MERCHANTS)),
    champion=st.sampled_from(["gbm", "scorecard", None]),
    challenger=st.sampled_from(["gbm", "scorecard", None]),
    policy=policies,
)
def test_decide_holds_a_frozen_merchants_orders_and_leaves_the_others_exactly_as_without_freezes(
    items, frozen, champion, challenger, policy
):
    champ, chall = FAST.get(champion), FAST.get(challenger)
    # a processor or bank account with a merchant's name is another target: it holds no merchant
    active = [_freeze("merchant", m) for m in frozen] + [_freeze("processor", "m_1"), _freeze("bank_account", "m_2")]
    held = decide_many(list(items), champ, chall, policy, Freezes.of(active))
    free = decide_many(list(items), champ, chall, policy)
    assert free == decide_many(list(items), champ, chall, policy, NONE)
    for h, f in zip(held, free, strict=True):
        if h.request.merchant_id not in frozen:
            assert h == f
            assert pol.FROZEN_MERCHANT not in h.policy_reasons
            continue
        assert h.outcome != "approve" and h.policy_reasons == (pol.FROZEN_MERCHANT, *f.policy_reasons)
        assert OUTCOMES.index(h.outcome) <= OUTCOMES.index(f.outcome)
        # what the models said is still recorded: the freeze is a policy reason, not a missing score
        assert (h.model, h.score, h.band, h.reason_codes, h.inputs, h.kill_switch) == (
            f.model,
            f.score,
            f.band,
            f.reason_codes,
            f.inputs,
            f.kill_switch,
        )
        assert (h.challenger is None) == (f.challenger is None)
        if h.challenger is not None:
            assert h.challenger.outcome != "approve" and h.challenger.score == f.challenger.score
        assert h.to_dict()["policy_reasons"][0] == pol.FROZEN_MERCHANT  # the record keeps it


# ---------------------------------------------------------------------------- the snapshot


def test_the_reader_sees_what_the_workbench_publishes_and_a_lift_without_a_restart(tmp_path):
    state = tmp_path / "workbench"
    reader = Reader(state / "published" / "freezes.json")
    assert len(reader.current()) == 0  # no file yet: nothing frozen
    workbench_freezes.publish(state, [_freeze("merchant", "m_1"), _freeze("processor", "adyen")])
    first = reader.current()
    assert first.holding("merchant", "m_1")["reason"] == "suspected fraud ring"
    assert first.holding("processor", "adyen") is not None and first.holding("merchant", "m_2") is None
    assert reader.current() is first  # not replaced since: not parsed again
    workbench_freezes.publish(state, [_freeze("processor", "adyen")])  # the merchant's freeze lifted
    lifted = reader.current()
    assert lifted is not first and lifted.holding("merchant", "m_1") is None and len(lifted) == 1
    assert read_active(state) == [_freeze("processor", "adyen")]  # the workbench's reader, the same format
    (state / "published" / "freezes.json").unlink()
    assert len(reader.current()) == 0


def test_a_snapshot_that_is_not_one_is_an_error_at_start_and_keeps_the_last_good_set_while_running(tmp_path):
    path = tmp_path / "published" / "freezes.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"freezes": [{"kind": "merchant"}]}')
    with pytest.raises(FreezeSnapshotError, match=f"freezes snapshot {path}: expected"):
        Reader(path)
    assert isinstance(FreezeSnapshotError("x"), config.ConfigError)  # the CLI prints it as one error line
    workbench_freezes.publish(tmp_path, [_freeze("merchant", "m_1")])
    reader = Reader(path)
    tmp = path.with_name("bad")
    tmp.write_text("{not json")
    os.replace(tmp, path)
    assert reader.current().holding("merchant", "m_1") is not None  # a bad write does not forget a freeze


def test_the_snapshot_is_the_workbench_state_folders_unless_the_policy_file_names_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARLINE_HOME", str(tmp_path))
    workbench_state = config.state_path(config.load("workbench")["state_dir"])
    assert path_from_config(config.load("policy")) == workbench_state / "published" / "freezes.json"
    assert path_from_config({"freezes": {"snapshot": "elsewhere/f.json"}}) == tmp_path / "elsewhere" / "f.json"
    assert path_from_config({"freezes": {"snapshot": "/abs/f.json"}}) == Path("/abs/f.json")
    assert path_from_config({}) == workbench_state / "published" / "freezes.json"  # a policy file from before
