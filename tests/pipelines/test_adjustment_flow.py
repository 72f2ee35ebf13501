"""An adjusting entry through the real broker, the ledger flow and the reconciliation flow:
a generated world with fee mismatches, reconciled; the entry proposed for one of them is
published approved by another user (twice: a double click); the ledger posts it once,
moving the processor receivable and the fee expense by exactly the difference, with every
consumed message accounted for and the chain verifying; self-approved and unbalanced
entries (signed) are dead-lettered with their reason while the flow carries on; the
reconciliation flow and a batch over the ledger's archive see the variance closed, named
by the event and its approver; a rebuild from offset 0 gives the same chain head."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from clearline import events
from clearline.events import AdjustmentLeg, AdjustmentPosted, Event, Money
from clearline.pipelines.connectors.adjustments import publish_adjustment
from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon import propose_adjustment
from tests.pipelines.ledger_harness import (
    balances,
    private_configs,
    produce_raw,
    read_topic,
    signed,
    topic_stats,
)
from tests.pipelines.test_recon_flow import Deployment, clearline, drop, facts, world_files

pytestmark = pytest.mark.kafka


def ledger_once(dep: Deployment) -> None:
    clearline(
        "ledger",
        "run",
        "--once",
        "--topic",
        dep.events,
        "--deadletter-topic",
        dep.dlq,
        "--state-dir",
        str(dep.ledger),
        "--metrics-port",
        "0",
    )


def hand_made(variance: dict, tenant: str, proposed_by: str, approved_by: str, legs: tuple, n: str) -> bytes:
    """A signed-able adjustment.posted built by hand, past the publisher's own checks."""
    now = datetime.now(timezone.utc)
    payload = AdjustmentPosted(
        variance["variance_id"], "fee", "our_error", "by hand", proposed_by, approved_by, now, legs
    )
    return events.encode(Event(f"adj_hand_{n}", "adjustment.posted", now, variance["merchant_id"], tenant, payload))


@pytest.fixture(scope="module")
def flowed(kafka_bootstrap, tmp_path_factory):
    world = tmp_path_factory.mktemp("adjust-world")
    generate(WorldOptions(days=30, merchants=4, seed=31), world)
    with ExitStack() as stack:
        dep = Deployment(stack, kafka_bootstrap, tmp_path_factory.mktemp("adjust-flow"))
        dep.produce(world)  # the world's events, posted by `ledger run --once`
        drop(world_files(world), dep.inbox)
        dep.run_once()
        store = dep.store()
        fee = store.filter(pl.col("category") == "fee_mismatch").sort("variance_id").row(0, named=True)
        proposal = propose_adjustment(fee)
        resellers = pl.read_parquet(world / "events" / "events.parquet", columns=["merchant_id", "reseller_id"])
        tenant = resellers.filter(pl.col("merchant_id") == fee["merchant_id"])["reseller_id"][0]
        before = balances(dep.ledger)
        totals_before, *_ = topic_stats(dep.ledger, dep.events)
        configs = private_configs(tmp_path_factory.mktemp("adjust-configs") / "configs", topic=dep.events)
        approval = dict(
            reseller_id=tenant,
            proposed_by="alice",
            approved_by="bob",
            code="our_error",
            note="Stripe's report shows the higher fee: book it",
            config_dir=configs,
            bootstrap=kafka_bootstrap,
        )
        event_ids = [publish_adjustment(proposal, **approval), publish_adjustment(proposal, **approval)]
        fee_legs = proposal.legs
        unbalanced = (fee_legs[0], AdjustmentLeg(fee_legs[1].account, "credit", Money(1, proposal.currency)))
        bad = [
            hand_made(fee, tenant, "carol", "carol", fee_legs, "self"),
            hand_made(fee, tenant, "carol", "dave", unbalanced, "unbalanced"),
        ]
        produce_raw(kafka_bootstrap, dep.events, [(b, fee["merchant_id"].encode(), signed(b, tenant)) for b in bad])
        ledger_once(dep)
        dep.run_once()
        yield {
            "dep": dep,
            "fee": fee,
            "proposal": proposal,
            "tenant": tenant,
            "before": before,
            "totals_before": totals_before,
            "event_ids": event_ids,
            "found_before": set(store["variance_id"]),
        }


def test_a_double_click_publishes_one_event_id(flowed):
    first, second = flowed["event_ids"]
    assert first == second and first.startswith("adj_")


def test_the_ledger_posts_it_once_and_dead_letters_the_bad_entries_with_their_reason(flowed):
    dep, before = flowed["dep"], flowed["totals_before"]
    totals, *_ = topic_stats(dep.ledger, dep.events)
    assert totals == {
        "consumed": before["consumed"] + 4,
        "posted": before["posted"] + 1,
        "duplicate": before["duplicate"] + 1,
        "dead_lettered": before["dead_lettered"] + 2,
    }
    assert totals["consumed"] == totals["posted"] + totals["duplicate"] + totals["dead_lettered"]
    letters = {json.loads(m.value())["event_id"]: dict(m.headers()) for m in read_topic(dep.bootstrap, dep.dlq)}
    assert {k: v["reason"].decode() for k, v in letters.items()} == {
        "adj_hand_self": "posting",
        "adj_hand_unbalanced": "posting",
    }
    assert "maker_checker" in letters["adj_hand_self"]["detail"].decode()
    assert "unbalanced in" in letters["adj_hand_unbalanced"]["detail"].decode()


def test_the_receivable_and_the_fee_expense_move_by_exactly_the_difference(flowed):
    dep, fee, proposal, tenant = flowed["dep"], flowed["fee"], flowed["proposal"], flowed["tenant"]
    after, before = balances(dep.ledger), flowed["before"]
    processor, currency = fee["processor"], proposal.currency
    difference = fee["amount_minor"]
    sign = 1 if proposal.legs[0].account.startswith("fee_expense") else -1  # an overcharge is a debit of expense
    receivable = (f"platform:processor_receivable:{processor}", currency)
    expense = (f"{tenant}:fee_expense:{processor}", currency)
    assert after[receivable] - before.get(receivable, 0) == -sign * difference
    assert after[expense] - before.get(expense, 0) == sign * difference
    moved = {k for k in set(after) | set(before) if after.get(k, 0) != before.get(k, 0)}
    assert moved == {
        receivable,
        expense,
        (f"platform:tenant_due:{tenant}", currency),
        (f"{tenant}:platform_due", currency),
    }


def test_invariants_and_the_chain_hold_and_a_rebuild_gives_the_same_head(flowed):
    dep = flowed["dep"]
    check = json.loads(clearline("ledger", "check", "--state-dir", str(dep.ledger), "--json").stdout)
    assert check["ok"], check["violations"]
    verify = json.loads(clearline("ledger", "verify", "--state-dir", str(dep.ledger), "--json").stdout)
    assert verify["ok"]
    rebuilt = json.loads(
        clearline("ledger", "rebuild", "--state-dir", str(dep.ledger), "--topic", dep.events, "--json").stdout
    )
    assert rebuilt["identical"] and rebuilt["consumed"] == rebuilt["rebuilt_consumed"]


def test_the_stream_resolves_the_variance_naming_the_event_and_its_approver(flowed):
    dep, fee = flowed["dep"], flowed["fee"]
    row = dep.store().filter(pl.col("variance_id") == fee["variance_id"]).row(0, named=True)
    event_id = flowed["event_ids"][0]
    assert row["status"] == "resolved" and event_id in row["note"] and "approved by bob" in row["note"]
    assert fee["variance_id"] not in set(dep.view()["variance_id"]), "withdrawn from the topic's open set"


def test_an_entry_approved_months_after_the_traffic_brings_nothing_due(flowed):
    """The entry is stamped now; the world's traffic ended months ago. A person's event
    does not move reconciliation's event time, so no pending item comes due because of it."""
    dep = flowed["dep"]
    assert set(dep.store()["variance_id"]) == flowed["found_before"], "no variance found because of the entry"
    status = json.loads((dep.state / "published" / "status.json").read_text())
    assert datetime.fromisoformat(status["watermark"]) < datetime.now(timezone.utc) - timedelta(days=30)


def test_a_batch_over_the_ledgers_archive_closes_it_too_and_agrees_with_the_stream(flowed):
    dep, fee = flowed["dep"], flowed["fee"]
    state = dep.batch_state()
    out = json.loads(
        clearline("recon", "--archive", str(dep.ledger / "archive"), "--state-dir", str(state), "--json").stdout
    )
    assert out["closed_by_adjustments"] >= 1
    assert fee["variance_id"] not in {item["variance_id"] for item in out["items"]}
    import duckdb

    with duckdb.connect(str(state / "variances.duckdb"), read_only=True) as con:
        status, note = con.execute(
            "SELECT status, note FROM variances WHERE variance_id = ?", [fee["variance_id"]]
        ).fetchone()
    assert status == "resolved" and flowed["event_ids"][0] in note
    batch = pl.DataFrame(out["items"]).with_columns(since=pl.col("since").str.to_date())
    assert facts(dep.view()) == facts(batch.select(dep.view().columns))
