"""The ledger store (ledger/store.py), its hash chain, invariants and snapshots.

Every test writes a real DuckDB file. Outcomes are built here by hand (the posting rules
live elsewhere); account keys follow the "<tenant>:<name>[:<sub>]" convention.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.events import Money
from clearline.ledger import chain, invariants
from clearline.ledger.model import Posted, Posting, Rejected, Source
from clearline.ledger.snapshot import SnapshotNotFound, SnapshotPublisher, publish_snapshot, read_snapshot
from clearline.ledger.store import LedgerStore
from tests import REPO_ROOT

TOPIC = "payments.events"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
RECV = "rs_001:processor_receivable:adyen"
PAYABLE = "rs_001:merchant_payable:m_00001"
FEES = "rs_001:fee_revenue"
CASH = "platform:bank_cash"


def posted(
    partition: int,
    offset: int,
    event_id: str,
    legs: list[tuple[str, str, int]] | None = None,
    currency: str = "USD",
    at: datetime = T0,
    topic: str = TOPIC,
) -> Posted:
    """A Posted with `legs` (account, side, minor); default a 1000 capture."""
    legs = legs if legs is not None else [(RECV, "debit", 1000), (PAYABLE, "credit", 1000)]
    return Posted(
        Source(topic, partition, offset),
        event_id,
        "payment.captured",
        "rs_001",
        at,
        tuple(Posting(a, s, Money(m, currency)) for a, s, m in legs),
    )


def rejected(
    partition: int,
    offset: int,
    event_id: str | None,
    reason: str = "signature",
    raw: bytes = b'{"bad":1}',
    topic: str = TOPIC,
) -> Rejected:
    return Rejected(Source(topic, partition, offset), event_id, reason, f"{reason}: refused", raw)


def counters(store: LedgerStore, partition: int = 0) -> dict[str, int]:
    p = store.partitions()[(TOPIC, partition)]
    return {k: getattr(p, k) for k in ("next_offset", "consumed", "posted", "duplicate", "dead_lettered")}


def n_rows(store: LedgerStore, table: str) -> int:
    return store.cursor().execute(f"SELECT COUNT(*) FROM {table}").fetchall()[0][0]


@pytest.fixture
def store(tmp_path):
    with LedgerStore(tmp_path / "ledger.duckdb") as s:
        yield s


# --------------------------------------------------------------------------- idempotency


def test_a_batch_applied_twice_is_skipped_and_redelivered_events_are_duplicates(store):
    batch = [posted(0, i, f"evt_{i}") for i in range(5)]
    r1 = store.apply(batch)
    assert (r1.consumed, r1.posted, r1.duplicate, r1.dead_lettered, r1.postings) == (5, 5, 0, 0, 10)

    # the same messages again (a replay after a crash): below next_offset, not recounted
    r2 = store.apply(batch)
    assert (r2.consumed, r2.replayed, r2.version) == (0, 5, r1.version)
    assert counters(store) == {"next_offset": 5, "consumed": 5, "posted": 5, "duplicate": 0, "dead_lettered": 0}

    # the same events as new messages (a producer retry): duplicates, no new postings
    r3 = store.apply([posted(0, 5 + i, f"evt_{i}") for i in range(5)])
    assert (r3.consumed, r3.posted, r3.duplicate) == (5, 0, 5)
    assert n_rows(store, "postings") == 10 and n_rows(store, "events") == 5
    assert counters(store) == {"next_offset": 10, "consumed": 10, "posted": 5, "duplicate": 5, "dead_lettered": 0}
    assert invariants.check(store) == []


def test_a_partly_replayed_batch_counts_only_the_new_offsets(store):
    store.apply([posted(0, i, f"evt_{i}") for i in range(10)])
    r = store.apply([posted(0, i, f"evt_{i}") for i in range(5, 15)] + [posted(0, 12, "evt_12")])
    assert (r.replayed, r.consumed, r.posted) == (6, 5, 5)  # 5..9 committed, offset 12 twice
    assert counters(store)["consumed"] == 15 and n_rows(store, "postings") == 30


def test_duplicates_within_one_batch_and_across_partitions(store):
    r = store.apply([posted(1, 0, "a"), posted(0, 3, "a"), posted(0, 4, "a"), posted(1, 1, "b")])
    # first occurrence in (topic, partition, offset) order wins: partition 0 offset 3
    assert (r.posted, r.duplicate) == (2, 2)
    row = store.cursor().execute("SELECT partition, \"offset\" FROM events WHERE event_id = 'a'").fetchall()[0]
    assert row == (0, 3)
    assert invariants.check(store) == []


def test_the_unique_key_decides_even_if_python_state_is_stale(tmp_path):
    """Two handles on one file in turn: the second has no cache of what the first wrote,
    yet the primary key still turns the repeated event into a duplicate."""
    path = tmp_path / "ledger.duckdb"
    with LedgerStore(path) as s:
        s.apply([posted(0, 0, "evt_x")])
    with LedgerStore(path) as s:
        r = s.apply([posted(1, 0, "evt_x")])
        assert (r.posted, r.duplicate, r.postings) == (0, 1, 0)


# ----------------------------------------------------------------------------- rejections


def test_rejections_keep_raw_bytes_and_a_retried_bad_event_fails_the_same_way(store):
    raw = b"\xff\xfe not json \x00"
    r = store.apply([rejected(0, 0, None, "json", raw), rejected(0, 1, "evt_bad", "signature", b"sig1")])
    assert (r.dead_lettered, r.posted) == (2, 0) and len(r.dead_letters) == 2
    rows = (
        store.cursor()
        .execute('SELECT "offset", event_id, reason, raw, origin FROM rejections ORDER BY "offset"')
        .fetchall()
    )
    assert rows == [(0, None, "json", raw, "flow"), (1, "evt_bad", "signature", b"sig1", "flow")]

    # the same bad event again: dead-lettered again, the first rejection stays the answer
    r = store.apply([rejected(0, 2, "evt_bad", "schema", b"sig2")])
    assert (r.dead_lettered, r.duplicate) == (1, 0)
    # now arriving as a valid posting: it still fails the same way, nothing is posted
    r = store.apply([posted(0, 3, "evt_bad")])
    assert (r.posted, r.dead_lettered, r.postings) == (0, 1, 0)
    assert r.dead_letters[0].reason == "rejected_before" and "signature" in r.dead_letters[0].detail
    ev = (
        store.cursor().execute("SELECT status, reason, \"offset\" FROM events WHERE event_id = 'evt_bad'").fetchall()[0]
    )
    assert ev == ("rejected", "signature", 1)
    assert n_rows(store, "postings") == 0
    assert counters(store) == {"next_offset": 4, "consumed": 4, "posted": 0, "duplicate": 0, "dead_lettered": 4}
    assert n_rows(store, "rejections") == 4
    assert [d.reason for d in store.dead_letters_since(0)] == ["json", "signature", "schema", "rejected_before"]
    assert invariants.check(store) == []


def test_a_rejection_never_unposts_a_posted_event(store):
    store.apply([posted(0, 0, "evt_1")])
    before = store.balances()
    r = store.apply([rejected(0, 1, "evt_1", "signature")])
    assert r.dead_lettered == 1
    assert store.cursor().execute("SELECT status FROM events WHERE event_id = 'evt_1'").fetchall()[0] == ("posted",)
    assert store.balances().equals(before)
    assert invariants.check(store) == []


def test_an_unbalanced_or_malformed_posting_is_refused_not_written(store):
    r = store.apply(
        [
            posted(0, 0, "evt_unbal", [(RECV, "debit", 1000), (PAYABLE, "credit", 999)]),
            posted(0, 1, "evt_neg", [(RECV, "debit", -5), (PAYABLE, "credit", -5)]),
            posted(0, 2, "evt_ok", [(RECV, "debit", 1000), (PAYABLE, "credit", 970), (FEES, "credit", 30)]),
            posted(0, 3, "evt_none", []),  # an event that moves no money (e.g. an order) is posted with no legs
        ]
    )
    assert (r.posted, r.dead_lettered, r.postings) == (2, 2, 3)
    assert {d.event_id: d.reason for d in r.dead_letters} == {
        "evt_unbal": "posting_invalid",
        "evt_neg": "posting_invalid",
    }
    assert "USD debits − credits = 1" in r.dead_letters[0].detail
    assert invariants.check(store) == []


# ------------------------------------------------------------------ offset accounting (property)

EVENT_IDS = [f"e{i}" for i in range(8)]
message = st.one_of(
    st.tuples(st.just("posted"), st.sampled_from(EVENT_IDS), st.integers(0, 2), st.integers(1, 10_000)),
    st.tuples(st.just("rejected"), st.sampled_from(EVENT_IDS + [None]), st.just(0), st.just(0)),
)


def _outcome(partition: int, offset: int, m: tuple) -> Posted | Rejected:
    kind, eid, pairs, amount = m
    if kind == "rejected":
        return rejected(partition, offset, eid, raw=f"raw-{partition}-{offset}".encode())
    legs = []
    for j in range(pairs):
        legs += [
            (f"rs_00{j}:processor_receivable:p", "debit", amount + j),
            (f"rs_00{j}:merchant_payable:m", "credit", amount + j),
        ]
    return posted(partition, offset, eid, legs)


def _model(batches: list[list[Posted | Rejected]]) -> tuple[dict, int]:
    """An independent re-statement of the counting rules: per-partition counters and the
    number of postings that must exist."""
    next_offset: dict[int, int] = defaultdict(int)
    count = defaultdict(lambda: {"consumed": 0, "posted": 0, "duplicate": 0, "dead_lettered": 0})
    status: dict[str, str] = {}
    legs = 0
    for batch in batches:
        for o in sorted(batch, key=lambda o: (o.source.partition, o.source.offset)):
            p, off = o.source.partition, o.source.offset
            if off < next_offset[p]:
                continue
            next_offset[p] = off + 1
            c = count[p]
            c["consumed"] += 1
            first = o.event_id is not None and o.event_id not in status
            if isinstance(o, Posted):
                if first:
                    status[o.event_id] = "posted"
                    c["posted"] += 1
                    legs += len(o.postings)
                elif status[o.event_id] == "posted":
                    c["duplicate"] += 1
                else:
                    c["dead_lettered"] += 1
            else:
                if first:
                    status[o.event_id] = "rejected"
                c["dead_lettered"] += 1
    return {p: dict(c, next_offset=next_offset[p]) for p, c in count.items()}, legs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs=st.lists(st.lists(message, max_size=12), min_size=1, max_size=3), data=st.data())
def test_every_consumed_offset_is_accounted_for(logs, data):
    log = [[_outcome(p, off, m) for off, m in enumerate(msgs)] for p, msgs in enumerate(logs)]
    position = [0] * len(log)
    batches: list[list] = []
    for _ in range(data.draw(st.integers(0, 8), label="batches")):
        batch: list = []
        for _ in range(data.draw(st.integers(1, 3))):
            p = data.draw(st.integers(0, len(log) - 1))
            start = max(0, position[p] - data.draw(st.integers(0, 3), label="rewind"))
            chunk = log[p][start : start + data.draw(st.integers(1, 5))]
            batch += chunk
            position[p] = max(position[p], start + len(chunk))
        batches.append(data.draw(st.permutations(batch)))
    batches.append([o for p in range(len(log)) for o in log[p][position[p] :]])  # the rest

    with tempfile.TemporaryDirectory() as tmp, LedgerStore(Path(tmp) / "l.duckdb") as s:
        for b in batches:
            r = s.apply(b)
            assert r.consumed == r.posted + r.duplicate + r.dead_lettered
        expected, legs = _model(batches)
        got = {
            p: {k: getattr(st_, k) for k in ("next_offset", "consumed", "posted", "duplicate", "dead_lettered")}
            for (_, p), st_ in s.partitions().items()
        }
        assert got == expected
        for p, c in got.items():
            assert c["consumed"] == c["posted"] + c["duplicate"] + c["dead_lettered"] == len(log[p])
        assert n_rows(s, "postings") == legs
        assert invariants.check(s) == []
        assert chain.verify(s).ok


def test_a_failed_batch_leaves_no_trace_and_can_be_retried(store, monkeypatch):
    store.apply([posted(0, 0, "evt_0")])
    import clearline.ledger.store as mod

    real = mod._postings_table

    def boom(*args):  # the postings fail after the batch's events rows are written
        raise OSError("disk full")

    monkeypatch.setattr(mod, "_postings_table", boom)
    with pytest.raises(OSError):
        store.apply([posted(0, 1, "evt_1"), rejected(0, 2, None)])
    monkeypatch.setattr(mod, "_postings_table", real)
    assert counters(store)["consumed"] == 1 and n_rows(store, "events") == 1 and n_rows(store, "rejections") == 0
    r = store.apply([posted(0, 1, "evt_1"), rejected(0, 2, None)])
    assert (r.posted, r.dead_lettered) == (1, 1)
    assert invariants.check(store) == [] and chain.verify(store).ok


def test_before_commit_sees_exactly_the_newly_posted_events_and_can_veto_the_batch(store):
    store.apply([posted(0, 0, "evt_0"), rejected(0, 1, "evt_bad")])
    seen = []
    batch = [
        posted(0, 2, "evt_0"),
        posted(0, 3, "evt_new"),
        posted(0, 4, "evt_new"),
        posted(0, 5, "evt_bad"),
        posted(0, 6, "evt_legs", legs=[("rs_1:fee_revenue:platform_fee", "credit", 5)]),
        posted(0, 1, "evt_x"),
    ]
    with pytest.raises(OSError):
        store.apply(batch, before_commit=lambda fresh: (seen.extend(fresh), _raise(OSError("archive disk full"))))
    assert [o.event_id for o in seen] == ["evt_new"]  # not duplicates, rejected ids, bad legs, replays
    assert counters(store)["consumed"] == 2 and n_rows(store, "events") == 2
    seen.clear()
    r = store.apply(batch, before_commit=seen.extend)
    assert [o.event_id for o in seen] == ["evt_new"] and (r.posted, r.duplicate, r.dead_lettered) == (1, 2, 2)


def _raise(exc: Exception) -> None:
    raise exc


def test_the_store_cannot_commit_a_broken_offset_count(store):
    store.apply([posted(0, 0, "evt_0")])
    with pytest.raises(duckdb.ConstraintException):
        store.con.execute("UPDATE offsets SET consumed = consumed + 1")


# ---------------------------------------------------------------------------------- chain


def _world(partitions: int = 3, per_partition: int = 25) -> list[list]:
    log = []
    for p in range(partitions):
        msgs = []
        for off in range(per_partition):
            at = T0 + timedelta(minutes=off, microseconds=p)
            if off % 11 == 7:
                msgs.append(rejected(p, off, f"bad_{p}_{off}"))
            elif off % 9 == 8:
                msgs.append(posted(p, off, f"evt_{p}_{off - 1}", at=at))  # a redelivered event
            else:
                amt = 100 + 7 * off + p
                msgs.append(
                    posted(
                        p,
                        off,
                        f"evt_{p}_{off}",
                        [(RECV, "debit", amt), (PAYABLE, "credit", amt - 3), (FEES, "credit", 3)],
                        currency=["USD", "EUR"][p % 2],
                        at=at,
                    )
                )
        log.append(msgs)
    return log


def _postings(s: LedgerStore) -> list[tuple]:
    return (
        s.cursor()
        .execute('SELECT * EXCLUDE (version) FROM postings ORDER BY topic, partition, "offset", seq')
        .fetchall()
    )


def test_a_replay_in_another_interleaving_rebuilds_the_identical_chain(tmp_path):
    log = _world()
    # (a) partition after partition, in batches of 7
    a = LedgerStore(tmp_path / "a.duckdb")
    for p in (2, 0, 1):
        for i in range(0, len(log[p]), 7):
            a.apply(log[p][i : i + 7])
    # (b) round-robin one message at a time, batches of 5, a crash-replay midway, and a reopen
    b_path = tmp_path / "b.duckdb"
    b = LedgerStore(b_path)
    rr = [log[p][i] for i in range(len(log[0])) for p in range(len(log))]
    for i in range(0, 40, 5):
        b.apply(rr[i : i + 5])
    b.apply(rr[30:45])  # re-delivers 30..39: skipped
    b.close()
    b = LedgerStore(b_path)
    for i in range(45, len(rr), 5):
        b.apply(list(reversed(rr[i : i + 5])))
    assert chain.head(a) == chain.head(b) == chain.verify(a).head == chain.verify(b).head
    assert _postings(a) == _postings(b)
    assert a.stats()["partitions"] == b.stats()["partitions"]
    assert chain.verify(a).ok and chain.verify(b).ok
    a.close(), b.close()


def test_the_chain_bytes_are_the_documented_ones(store):
    """The chain format, restated independently of clearline.ledger.chain: a change to it
    breaks every published head, so it must be deliberate."""
    account = 'rs_001:caf\u00e9 "x"'
    store.apply([posted(0, 0, "evt_1", [(account, "debit", 1999), (PAYABLE, "credit", 1999)])])
    genesis = hashlib.sha256(b"clearline-ledger-v1\x00payments.events\x000").digest()
    first = json.dumps(
        ["evt_1", 0, account, "debit", 1999, "USD", "2025-03-01T12:00:00.000000Z"], separators=(",", ":")
    ).encode()
    assert first == chain.canonical("evt_1", 0, account, "debit", 1999, "USD", chain.iso_utc(T0))
    h0 = hashlib.sha256(genesis + first).digest()
    second = json.dumps(
        ["evt_1", 1, PAYABLE, "credit", 1999, "USD", "2025-03-01T12:00:00.000000Z"], separators=(",", ":")
    ).encode()
    h1 = hashlib.sha256(h0 + second).hexdigest()
    rows = store.cursor().execute("SELECT prev_hash, hash FROM postings ORDER BY seq").fetchall()
    assert rows == [(genesis.hex(), h0.hex()), (h0.hex(), h1)]
    assert chain.head(store) == hashlib.sha256(f"payments.events\x000\x002\x00{h1}\n".encode()).hexdigest()


@settings(max_examples=300)
@given(us=st.lists(st.datetimes(timezones=st.just(timezone.utc)).map(chain.epoch_us), max_size=20))
def test_a_batch_of_event_times_is_spelled_as_each_alone(us):
    """The store spells a batch's event times in one Polars pass for the chain; it must be
    `iso_utc`'s spelling for every datetime there is (years below 1000 included)."""
    assert chain.iso_from_epoch_us_many(us) == [chain.iso_from_epoch_us(u) for u in us]


def test_verify_names_the_posting_whose_amount_was_changed(store):
    log = _world(partitions=2, per_partition=12)
    store.apply([o for msgs in log for o in msgs])
    assert chain.verify(store).ok
    store.con.execute(
        'UPDATE postings SET amount_minor = amount_minor + 100 WHERE partition = 1 AND "offset" = 5 AND seq = 1'
    )
    result = chain.verify(store)
    assert not result.ok and len(result.bad_links) == 1
    bad = result.first_bad
    assert (bad.topic, bad.partition, bad.offset, bad.seq, bad.event_id, bad.account, bad.problem) == (
        TOPIC,
        1,
        5,
        1,
        "evt_1_5",
        PAYABLE,
        "hash",
    )
    stored = (
        store.cursor()
        .execute('SELECT hash FROM postings WHERE partition = 1 AND "offset" = 5 AND seq = 1')
        .fetchall()[0][0]
    )
    assert bad.stored == stored and bad.expected != stored
    assert "offset 5 seq 1" in str(result) and "evt_1_5" in str(result)


def test_verify_notices_a_truncated_tail(store):
    store.apply([o for msgs in _world(partitions=1, per_partition=6) for o in msgs])
    store.con.execute('DELETE FROM postings WHERE "offset" = (SELECT MAX("offset") FROM postings)')
    result = chain.verify(store)
    assert not result.ok and result.first_bad.problem == "length"


# ----------------------------------------------------------------------------- invariants


def test_invariants_flag_an_unbalanced_event_inserted_by_hand(store):
    store.apply([posted(0, 0, "evt_0"), posted(0, 1, "evt_1")])
    assert invariants.check(store) == []
    store.con.execute("""
        INSERT INTO postings SELECT topic, partition, "offset", 2, event_id, 'rs_001:fee_revenue', 'credit',
               25, currency, occurred_at, hash, hash, version FROM postings WHERE event_id = 'evt_1' AND seq = 1""")
    found = invariants.check(store)
    kinds = {(v.check, v.details.get("event_id")) for v in found}
    assert ("balance", "evt_1") in kinds and ("legs", "evt_1") in kinds
    assert any(v.check == "balance" and "USD: total debits 2000 ≠ total credits 2025" in v.message for v in found)
    assert any(v.check == "offsets" and "chain length 4 but 5 posting rows" in v.message for v in found)
    assert not chain.verify(store).ok


def test_invariants_check_floors_on_the_accounts_normal_side(store):
    store.apply(
        [
            posted(0, 0, "evt_0", [(CASH, "debit", 500), (PAYABLE, "credit", 500)]),
            posted(0, 1, "evt_1", [(PAYABLE, "debit", 800), (CASH, "credit", 800)]),
        ]
    )  # pays out more than owed
    floor = lambda account: 0 if account.split(":")[1] in ("merchant_payable", "bank_cash") else None
    side = lambda account: "credit" if ":merchant_payable" in account else "debit"
    found = invariants.check(store, floor_of=floor, normal_side=side)
    assert sorted((v.details["account"], v.details["balance"]) for v in found) == [(CASH, -300), (PAYABLE, -300)]
    assert all(v.check == "floor" for v in found)
    assert invariants.check(store) == []  # no floors by default


def test_invariants_flag_offset_counters_that_disagree_with_the_rows(store):
    store.apply([posted(0, 0, "evt_0"), rejected(0, 1, None)])
    store.con.execute("DELETE FROM rejections")
    found = invariants.check(store)
    assert [v.message for v in found] == ["payments.events[0]: dead-lettered counter 1 but 0 rejection rows"]


# -------------------------------------------------------------------------------- queries


def _known(store: LedgerStore) -> None:
    d = lambda n: T0 + timedelta(days=n)
    store.apply(
        [
            posted(
                0, 0, "cap_1", [(RECV, "debit", 10_000), (PAYABLE, "credit", 9_700), (FEES, "credit", 300)], at=d(0)
            ),
            posted(0, 1, "cap_2", [(RECV, "debit", 5_000), (PAYABLE, "credit", 4_850), (FEES, "credit", 150)], at=d(1)),
            posted(1, 0, "payout_1", [(PAYABLE, "debit", 9_700), (CASH, "credit", 9_700)], at=d(2)),
            posted(1, 1, "cap_eur", [(RECV, "debit", 2_000), (PAYABLE, "credit", 2_000)], currency="EUR", at=d(3)),
            rejected(1, 2, None),
        ]
    )


def test_balances_on_a_known_example(store):
    _known(store)
    b = store.balances()
    assert b.rows() == [
        (CASH, "USD", 0, 9_700, -9_700),
        (FEES, "USD", 0, 450, -450),
        (PAYABLE, "EUR", 0, 2_000, -2_000),
        (PAYABLE, "USD", 9_700, 14_550, -4_850),
        (RECV, "EUR", 2_000, 0, 2_000),
        (RECV, "USD", 15_000, 0, 15_000),
    ]
    assert b.columns == ["account", "currency", "debit", "credit", "balance"]
    assert b.group_by("currency").agg(pl.col("balance").sum()).sort("currency").rows() == [("EUR", 0), ("USD", 0)]
    as_of = store.balances(as_of=T0 + timedelta(days=1), account="rs_001:merchant_payable")
    assert as_of.rows() == [(PAYABLE, "USD", 0, 14_550, -14_550)]
    assert store.balances(tenant="platform").rows() == [(CASH, "USD", 0, 9_700, -9_700)]
    assert store.balances(account="rs_001:merchant_pay").is_empty()  # prefix stops at a ':'
    assert store.balances(as_of=T0 - timedelta(days=1)).is_empty()


def test_statement_has_a_running_balance_that_includes_earlier_postings(store):
    _known(store)
    s = store.statement(PAYABLE, from_=T0 + timedelta(days=1), to=T0 + timedelta(days=2))
    assert s.select("event_id", "event_type", "currency", "debit", "credit", "balance").rows() == [
        ("cap_2", "payment.captured", "USD", 0, 4_850, -14_550),
        ("payout_1", "payment.captured", "USD", 9_700, 0, -4_850),
    ]
    full = store.statement(PAYABLE)
    assert full["event_id"].to_list() == ["cap_1", "cap_2", "payout_1", "cap_eur"]
    assert full["balance"].to_list() == [-9_700, -14_550, -4_850, -2_000]  # per currency


def test_stats_count_per_partition_and_in_total(store):
    _known(store)
    s = store.stats()
    assert [
        (p["partition"], p["consumed"], p["posted"], p["dead_lettered"], p["chain_length"]) for p in s["partitions"]
    ] == [(0, 2, 2, 0, 6), (1, 3, 2, 1, 4)]
    assert (s["totals"]["postings"], s["totals"]["consumed"], s["totals"]["rejections"]) == (10, 5, 1)
    assert s["head"] == chain.head(store) and s["version"] == store.version


# ------------------------------------------------------------------------------- snapshots


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.equals(b)


def test_snapshots_are_incremental_compacted_and_equal_the_store(store, tmp_path):
    snap = tmp_path / "snap"
    with pytest.raises(SnapshotNotFound):
        read_snapshot(snap)
    log = _world(partitions=2, per_partition=30)
    rr = [log[p][i] for i in range(30) for p in range(2)]
    for i in range(0, len(rr), 3):
        store.apply(rr[i : i + 3])
        pub = publish_snapshot(store, snap, fanout=4, max_level=2)
        assert pub.version == store.version and pub.head == chain.head(store)
    assert publish_snapshot(store, snap).noop
    with read_snapshot(snap) as s:
        assert s.version == store.version and s.head == chain.head(store)
        assert _same(s.balances(), store.balances())
        assert _same(s.statement(PAYABLE), store.statement(PAYABLE))
        assert s.stats() == store.stats()
        assert chain.verify(s).ok and chain.verify(s).head == s.head
        assert invariants.check(s) == []
        assert s.scan("postings").select(pl.len()).collect().item() == n_rows(store, "postings")
        assert s.sql("SELECT COUNT(*) AS n FROM rejections")["n"][0] == n_rows(store, "rejections")
        # 20 batches, fanout 4: level-1 files of 4 batches, at most 3 loose batch files
        assert all(len(s.files(t)) <= 8 for t in ("events", "postings"))
        assert max(f["level"] for f in s.manifest["tables"]["postings"]) >= 1
    manifests = sorted((snap / "manifests").glob("*.json"))
    assert len(manifests) <= 16


@pytest.mark.parametrize("keep_recent_rows", [1_000_000, 0], ids=["from-memory", "read-back"])
def test_snapshots_across_a_restart_mix_both_export_paths(tmp_path, keep_recent_rows):
    """Published from the batches held in memory, or read back from DuckDB (after a
    restart with publication behind, or with the memory off): the same snapshot."""
    snap, path = tmp_path / "snap", tmp_path / "ledger.duckdb"
    log = _world(partitions=2, per_partition=20)
    rr = [log[p][i] for i in range(20) for p in range(2)]
    with LedgerStore(path, keep_recent_rows=keep_recent_rows) as s:
        s.apply(rr[:10])
        publish_snapshot(s, snap)
        s.apply(rr[10:20])  # committed, not yet published when the process stops
    with LedgerStore(path, keep_recent_rows=keep_recent_rows) as s:
        s.apply(rr[20:30])
        assert s.committed_since(s.version - 2) is None  # a batch before the restart is not in memory
        publish_snapshot(s, snap, fanout=2)  # reads versions 2..3 back from the file
        s.apply(rr[30:])
        publish_snapshot(s, snap, fanout=2)  # and merges files written both ways
        with read_snapshot(snap) as r:
            assert r.version == s.version == 4
            assert _same(r.balances(), s.balances()) and r.stats() == s.stats()
            for t in ("events", "postings", "rejections"):
                ours = s.cursor().sql(f"SELECT * FROM {t} ORDER BY ALL").pl()
                assert _same(r.sql(f"SELECT * FROM {t} ORDER BY ALL"), ours), t
            assert chain.verify(r).ok and invariants.check(r) == []
            assert max(f["level"] for f in r.manifest["tables"]["postings"]) >= 1


def test_an_empty_store_publishes_an_empty_snapshot(store, tmp_path):
    publish_snapshot(store, tmp_path / "snap")
    with read_snapshot(tmp_path / "snap") as s:
        assert s.version == 0 and s.balances().is_empty() and s.stats()["totals"]["postings"] == 0
        assert chain.verify(s).ok and invariants.check(s) == []


def test_a_rebuilt_store_starts_a_fresh_snapshot_lineage(tmp_path):
    snap = tmp_path / "snap"
    with LedgerStore(tmp_path / "one.duckdb") as a:
        a.apply([posted(0, i, f"evt_{i}") for i in range(4)])
        publish_snapshot(a, snap)
    with LedgerStore(tmp_path / "two.duckdb") as b:
        b.apply([posted(0, 0, "evt_0")])
        publish_snapshot(b, snap)
        with read_snapshot(snap) as s:
            assert s.store_id == b.store_id and s.stats()["totals"]["postings"] == 2
            assert _same(s.balances(), b.balances())


def test_a_snapshot_is_readable_by_another_process_while_the_writer_holds_the_file(store, tmp_path):
    snap = tmp_path / "snap"
    _known(store)
    publish_snapshot(store, snap)
    store.apply([posted(0, 2, "cap_3", [(RECV, "debit", 1), (PAYABLE, "credit", 1)])])  # writer keeps going
    publish_snapshot(store, snap)
    reader = f"""
import duckdb
from clearline.ledger.snapshot import read_snapshot
try:
    duckdb.connect({str(store.path)!r}, read_only=True)
    print("opened")
except Exception:
    print("locked")
s = read_snapshot({str(snap)!r})
b = s.balances(account={PAYABLE!r})
print(b.filter(b["currency"] == "USD")["balance"][0], s.version)
"""
    out = subprocess.run(
        [sys.executable, "-c", reader],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["locked", "-4851", str(store.version)]


def test_a_background_publisher_keeps_the_snapshot_current(store, tmp_path):
    snap = tmp_path / "snap"
    publisher = SnapshotPublisher(store, snap, fanout=4).start()
    log = _world(partitions=2, per_partition=24)
    rr = [log[p][i] for i in range(24) for p in range(2)]
    for i in range(0, len(rr), 4):
        store.apply(rr[i : i + 4])
        publisher.notify()
    assert publisher.flush().version == store.version
    store.apply([posted(5, 0, "late")])
    publisher.notify()
    assert publisher.stop().version == store.version
    with read_snapshot(snap) as s:
        assert s.stats() == store.stats() and _same(s.balances(), store.balances())


def test_a_publisher_waiting_out_its_interval_publishes_at_once_before_the_store_drops_rows(tmp_path, monkeypatch):
    """The store holds the latest batches for the publisher, up to `keep_recent_rows`;
    past that a publication reads them back from the file. So once the rows committed
    since the last publication fill half of that window, the publisher does not wait out
    `interval_s`: it publishes at once, from memory."""
    import clearline.ledger.snapshot as snapshot

    def no_read_back(*args):
        raise AssertionError("published by reading rows back from the store")

    monkeypatch.setattr(snapshot, "_copy", no_read_back)
    snap = tmp_path / "snap"
    log = _world(partitions=1, per_partition=40)[0]
    with LedgerStore(tmp_path / "ledger.duckdb", keep_recent_rows=60) as store:
        publisher = SnapshotPublisher(store, snap, interval_s=3600).start()
        store.apply(log[:2])
        publisher.notify()
        deadline = time.monotonic() + 30
        while publisher.last is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.last.version == 1  # the first publication; the next waits the hour out
        for i in range(2, 40, 2):  # 38 events, ~120 rows: twice the window
            store.apply(log[i : i + 2])
            publisher.notify()  # raises if a publication had to read rows back
            time.sleep(0.05)
        assert publisher.last.version > 1  # published again well within the hour
        assert publisher.stop().version == store.version
        with read_snapshot(snap) as s:
            assert s.stats() == store.stats() and chain.verify(s).ok


def test_shards_read_together_give_the_single_store_ledger(tmp_path):
    """One store per worker, each owning some partitions: their snapshots read together
    equal one store that consumed every partition, head included."""
    log = _world(partitions=3, per_partition=12)
    with (
        LedgerStore(tmp_path / "all.duckdb") as whole,
        LedgerStore(tmp_path / "s0.duckdb") as s0,
        LedgerStore(tmp_path / "s1.duckdb") as s1,
    ):
        whole.apply([o for msgs in log for o in msgs])
        s0.apply(log[0] + log[2])
        s1.apply(log[1])
        publish_snapshot(s0, tmp_path / "snap" / "shard-0")
        publish_snapshot(s1, tmp_path / "snap" / "shard-1")
        with read_snapshot(tmp_path / "snap") as s:
            assert s.head == chain.head(whole) == chain.verify(s).head
            assert _same(s.balances(), whole.balances())
            assert s.stats()["partitions"] == whole.stats()["partitions"]
            assert invariants.check(s) == []
