"""The synthetic world: deterministic, valid under the contract, and internally consistent
money — every lifecycle, settlement batch and bank credit adds up."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from clearline import config, events
from clearline.currency import minor_to_decimal
from clearline.pipelines.cli import main
from clearline.pipelines.world import bank_files
from clearline.pipelines.world.discrepancies import CATEGORIES
from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.pipelines.world.ids import letter_ids
from clearline.pipelines.world.settlement_files import _decimal, _negated, _plus

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


# --- the vectorised parts equal the per-value rules they replace ------------------------

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(I64, I64), min_size=1, max_size=20), st.sampled_from(["USD", "JPY", "KWD", "CLF"]))
def test_report_decimals_are_minor_to_decimal_for_any_i64(pairs, currency):
    """Settlement reports format whole columns of minor units at once (also negated and
    summed, as debit columns and gross = net + fee need): each is exactly
    `minor_to_decimal` of the Python integer, with no wrap-around at the i64 edges."""
    frame = pl.DataFrame({"a": [a for a, _ in pairs], "b": [b for _, b in pairs], "ccy": currency})
    got = frame.select(
        plain=_decimal(pl.col("a"), "ccy"),
        negated=_decimal(_negated(pl.col("a")), "ccy"),
        summed=_decimal(_plus(pl.col("a"), pl.col("b")), "ccy"),
    )
    assert got["plain"].to_list() == [minor_to_decimal(a, currency) for a, _ in pairs]
    assert got["negated"].to_list() == [minor_to_decimal(-a, currency) for a, _ in pairs]
    assert got["summed"].to_list() == [minor_to_decimal(a + b, currency) for a, b in pairs]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=26**5 - 200), st.integers(min_value=0, max_value=150))
def test_letter_ids_spell_the_counter_in_base_26_letters(start, count):
    ids = letter_ids("x_", start, count, width=5)
    spelt = []
    for n in range(start, start + count):
        letters = ""
        for _ in range(5):
            n, digit = divmod(n, 26)
            letters = chr(ord("a") + digit) + letters
        spelt.append("x_" + letters)
    assert ids.dtype == pl.String and ids.to_list() == spelt


def test_letter_ids_refuse_a_counter_beyond_their_width():
    with pytest.raises(ValueError, match="do not fit in 2 letters"):
        letter_ids("x_", 675, 2, width=2)


def test_camt_entries_written_as_text_parse_back_to_their_values(tmp_path):
    """camt.053 entries are written from a template, not as lxml elements: markup,
    ampersands and a carriage return in a reference or text still parse back unchanged,
    and text XML cannot hold is refused as lxml refuses it."""
    account = config.load("platform")["bank_accounts"]["EUR"]
    text = "R&D <refund> 'a' \"b\"\rnext " + "x" * 150
    entry = {
        "amount_minor": -12_345,
        "kind": "merchant_payout",
        "bank_reference": "BR<&>",
        "customer_reference": None,
        "text": text,
        "booking_date": date(2026, 1, 2),
        "value_date": date(2026, 1, 3),
    }
    statement = bank_files.Statement(account, "EUR", date(2026, 1, 2), 1, 0, (entry,))
    ns = {"c": bank_files.CAMT_NS}
    tree = etree.fromstring(bank_files.camt053_bytes(statement))
    ntry = tree.find(".//c:Ntry", ns)
    assert ntry.findtext("c:Amt", namespaces=ns) == "123.45"
    assert ntry.findtext("c:AcctSvcrRef", namespaces=ns) == "BR<&>"
    assert ntry.findtext(".//c:EndToEndId", namespaces=ns) == "NOTPROVIDED"
    assert "".join(u.text for u in ntry.iterfind(".//c:Ustrd", ns)) == text
    assert ntry.findtext("c:ValDt/c:Dt", namespaces=ns) == "2026-01-03"
    with pytest.raises(ValueError, match="XML compatible"):
        bank_files.camt053_bytes(replace(statement, entries=({**entry, "text": "bell \x07"},)))
