"""The synthetic world: deterministic, valid under the contract, and internally consistent
money — every lifecycle, settlement batch and bank credit adds up."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from clearline import events
from clearline.pipelines.cli import main
from clearline.pipelines.world.discrepancies import CATEGORIES
from clearline.pipelines.world.generate import WorldOptions, generate

SIGN = {"charge": 1, "refund": -1, "chargeback": -1, "chargeback_reversal": 1, "fee": -1}


def _events(world: Path) -> list[events.Event]:
    return [events.decode(line.rstrip(b"\n")) for line in open(world / "events/events.jsonl", "rb")]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    opts = WorldOptions(days=20, merchants=5, seed=3)
    generate(opts, tmp_path / "a")
    generate(opts, tmp_path / "b")
    generate(WorldOptions(days=20, merchants=5, seed=4), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["events/events.jsonl"] != _digest(tmp_path / "c")["events/events.jsonl"]


def test_every_line_is_a_valid_canonical_event(small_world):
    world, manifest = small_world
    lines = (world / "events/events.jsonl").read_bytes().splitlines()
    decoded = [events.decode(line) for line in lines]
    assert len(decoded) == manifest["events"]
    assert all(events.encode(e) == line for e, line in zip(decoded, lines))
    assert len({e.event_id for e in decoded}) == len(decoded)
    assert {e.event_type for e in decoded} == set(events.EVENT_TYPES) - set(events.PERSON_EVENT_TYPES)


def test_parquet_holds_the_same_events(small_world):
    world, _ = small_world
    table = pl.read_parquet(world / "events/events.parquet")
    evs = _events(world)
    assert table["event_id"].to_list() == [e.event_id for e in evs]
    assert [json.loads(p) for p in table["payload"].head(50)] == [events.to_dict(e)["payload"] for e in evs[:50]]


def test_arrival_is_event_time_order_with_bounded_lateness(small_world):
    world, _ = small_world
    times = [e.occurred_at for e in _events(world)]
    running_max, late = times[0], 0
    for t in times[1:]:
        if t < running_max:
            late += 1
            assert running_max - t <= timedelta(seconds=900)
        running_max = max(running_max, t)
    assert 0 < late < 0.1 * len(times)


def test_payment_lifecycles_add_up(small_world):
    world, _ = small_world
    auth, captured, voided, refunded, disputed = (
        {},
        defaultdict(int),
        defaultdict(int),
        defaultdict(int),
        defaultdict(int),
    )
    for e in _events(world):
        p = e.payload
        if e.event_type == "payment.authorized":
            auth[p.payment_id] = p.amount.minor
        elif e.event_type == "payment.captured":
            captured[p.payment_id] += p.amount.minor
        elif e.event_type == "payment.voided":
            voided[p.payment_id] += p.amount.minor
        elif e.event_type == "payment.refunded":
            refunded[p.payment_id] += p.amount.minor
        elif e.event_type == "chargeback.opened":
            disputed[p.payment_id] += p.amount.minor
    assert any(0 < captured[k] < v for k, v in auth.items()), "the world must hold partial captures"
    for pid, amount in auth.items():
        assert captured[pid] + voided[pid] <= amount
        assert refunded[pid] + disputed[pid] <= captured[pid]
    assert any(voided.values()) and any(refunded.values()) and any(disputed.values())


def test_terms_orders_resolve_to_repayment_or_write_off(small_world):
    world, _ = small_world
    owed, settled = {}, defaultdict(int)
    for e in _events(world):
        p = e.payload
        if e.event_type == "order.created" and p.payment_method == "terms":
            owed[p.order_id] = p.amount.minor
        elif e.event_type in ("buyer.repayment", "buyer.default"):
            settled[p.order_id] += p.amount.minor
    resolved = [o for o in settled if o in owed]
    assert len(resolved) > 100
    assert all(settled[o] <= owed[o] for o in resolved)
    defaults = {e.payload.order_id for e in _events(world) if e.event_type == "buyer.default"}
    assert all(settled[o] == owed[o] for o in defaults)


def test_expected_payouts_equal_their_settlement_lines(small_world):
    world, _ = small_world
    by_batch = defaultdict(int)
    payouts = {}
    for e in _events(world):
        p = e.payload
        if e.event_type == "processor.settlement":
            assert p.net.currency == p.fee.currency
            by_batch[p.batch_id] += SIGN[p.record_type] * p.net.minor
        elif e.event_type == "processor.payout":
            payouts[p.payout_id] = p.amount.minor
    assert payouts
    for payout_id, amount in payouts.items():
        assert amount == by_batch[payout_id] and amount > 0


def test_true_default_probability_is_written_and_informative(small_world):
    world, _ = small_world
    orders = pl.read_parquet(world / "truth/orders.parquet").filter(pl.col("payment_method") == "terms")
    p, y = orders["p_default"].to_numpy(), orders["defaulted"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert abs(y.mean() - p.mean()) < 0.02  # outcomes are drawn from the written probabilities
    pos, neg = p[y], p[~y]
    auc = (pos[:, None] > neg[None, :]).mean()
    assert 0.7 < auc < 0.95  # informative, not a giveaway


def test_every_variance_category_is_injected_with_truth(small_world):
    world, manifest = small_world
    truth = pl.read_csv(world / "truth/discrepancies.csv")
    assert set(truth["kind"]) == set(CATEGORIES)
    assert all(manifest["discrepancies"][k] >= 1 for k in CATEGORIES)
    assert (truth["amount_minor"] > 0).all()
    line_kinds = truth.filter(pl.col("line_id").is_not_null())
    assert line_kinds["line_id"].n_unique() == line_kinds.height


def test_clean_world_has_no_discrepancies(clean_world):
    world, manifest = clean_world
    assert pl.read_csv(world / "truth/discrepancies.csv").height == 0
    assert sum(manifest["discrepancies"].values()) == 0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--days", "0"], "--days"),
        (["--merchants", "-3"], "--merchants"),
        (["--seed", "-1"], "--seed"),
        (["--discrepancy-rate", "0.9"], "--discrepancy-rate"),
        (["--days", "ten"], "'ten' is not a valid integer"),
    ],
)
def test_bad_options_get_a_clear_error(tmp_path, args, needle):
    result = CliRunner().invoke(main, ["generate", "--out", str(tmp_path / "w"), *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


def test_generate_json_reports_the_manifest(tmp_path):
    result = CliRunner().invoke(
        main, ["generate", "--days", "10", "--merchants", "3", "--out", str(tmp_path / "w"), "--json"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    assert manifest == json.loads((tmp_path / "w/world.json").read_text())
    assert manifest["events"] == sum(manifest["events_by_type"].values())


def test_two_worlds_share_no_event_id(tmp_path):
    generate(WorldOptions(days=10, merchants=3, seed=1), tmp_path / "a")
    generate(WorldOptions(days=10, merchants=3, seed=2), tmp_path / "b")
    ids = [{e.event_id for e in _events(tmp_path / w)} for w in ("a", "b")]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
