"""The store reads a batch's legs as columns (ledger/store.py `_Legs`) and spells their
chain bytes in one Polars pass (`chain.canonical_many`); these tests hold both to the
per-event rules they stand in for: `_invalid_legs` for every Posted, `chain.canonical`
and `chain.link` for every posting, on batches with malformed legs and duplicates."""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.events import MAX_MINOR, Money
from clearline.ledger import chain, invariants
from clearline.ledger.model import Posted, Posting, Rejected, Source
from clearline.ledger.store import LedgerStore, _invalid_legs, _Legs

TOPIC = "payments.events"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

# Legs as a rule may meet them: mostly sound and balanced, some with a bad amount, side,
# account or currency type, some unbalanced, some in two currencies.
ACCOUNTS = ["rs_001:processor_receivable:adyen", "rs_001:merchant_payable:m_1", "platform:bank_cash", 'x "q" \\ é']
amount = st.one_of(
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.sampled_from([-1, -500, MAX_MINOR, MAX_MINOR // 2 + 1, 2**64, True, 1.5]),
)
currency = st.sampled_from(["USD", "USD", "USD", "EUR"])
side = st.sampled_from(["debit", "credit", "debit", "credit", "DEBIT", ""])
account = st.one_of(st.sampled_from(ACCOUNTS), st.sampled_from(["", None]))


@st.composite
def legs(draw) -> list[tuple]:
    """A balanced event's legs (pairs), then perhaps one leg changed or added."""
    out = []
    for _ in range(draw(st.integers(0, 3))):
        a, c = draw(st.integers(0, 10_000)), draw(currency)
        out += [(draw(st.sampled_from(ACCOUNTS)), "debit", a, c), (draw(st.sampled_from(ACCOUNTS)), "credit", a, c)]
    if draw(st.booleans()):
        leg = (draw(account), draw(side), draw(amount), draw(currency))
        if out and draw(st.booleans()):
            out[draw(st.integers(0, len(out) - 1))] = leg
        else:
            out.append(leg)
    return out


def posted(offset: int, event_id: str, event_legs: list[tuple], partition: int = 0) -> Posted:
    """Money takes what it is given, so a malformed leg reaches the store as a faulty rule
    would hand it over."""
    return Posted(
        Source(TOPIC, partition, offset),
        event_id,
        "payment.captured",
        "rs_001",
        T0,
        tuple(Posting(a, s, Money(m, c)) for a, s, m, c in event_legs),
    )


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(legs(), max_size=12))
def test_the_columnar_screen_refuses_exactly_what_the_rule_refuses(batch):
    ps = [posted(i, f"e{i}", b) for i, b in enumerate(batch)]
    columns = _Legs(ps)
    assert columns.invalid() == {i: why for i, b in enumerate(batch) if (why := _invalid_legs(b))}


text = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            text.filter(bool),
            st.datetimes(timezones=st.just(timezone.utc)).map(chain.epoch_us),
            st.lists(st.tuples(text, st.sampled_from(["debit", "credit"]), st.integers(0, MAX_MINOR), text)),
        ),
        max_size=6,
    )
)
def test_the_chain_bytes_of_a_batch_are_each_postings_canonical_bytes(events):
    expected = [
        chain.canonical(eid, seq, *leg, chain.iso_from_epoch_us(us))
        for eid, us, event_legs in events
        for seq, leg in enumerate(event_legs)
    ]
    flat = [leg for _, _, event_legs in events for leg in event_legs]
    got = chain.canonical_many(
        pl.Series([e for e, _, _ in events], dtype=pl.String),
        pl.Series(chain.iso_from_epoch_us_many([us for _, us, _ in events]), dtype=pl.String),
        np.array([len(event_legs) for _, _, event_legs in events], np.int64),
        pl.Series([a for a, _, _, _ in flat], dtype=pl.String),
        pl.Series([s for _, s, _, _ in flat], dtype=pl.String),
        pl.Series([m for _, _, m, _ in flat], dtype=pl.Int64),
        pl.Series([c for _, _, _, c in flat], dtype=pl.String),
    )
    assert got == expected


# ------------------------------------------------------------------- the store, whole

EVENT_IDS = [f"e{i}" for i in range(6)]
message = st.one_of(
    st.tuples(st.just("posted"), st.sampled_from(EVENT_IDS), legs()),
    st.tuples(st.just("rejected"), st.sampled_from(EVENT_IDS + [None]), st.just([])),
)


def _reference(log: list[list[tuple]]) -> tuple[list[tuple], list[tuple], dict]:
    """The store's answer restated one event at a time with the per-event rules: each
    partition in offset order (one batch per partition, so the order within the batch is
    the store's), `_invalid_legs` deciding a Posted's legs and `chain.canonical` /
    `chain.link` chaining each posting. (postings rows, dead letters, counters)."""
    status: dict[str, tuple[str, Source, str | None]] = {}
    rows, letters, count = [], [], {}
    for p, msgs in enumerate(log):
        c = count[p] = {"posted": 0, "duplicate": 0, "dead_lettered": 0}
        head = chain.genesis(TOPIC, p)
        for off, (kind, eid, event_legs) in enumerate(msgs):
            src = Source(TOPIC, p, off)
            why = _invalid_legs(event_legs) if kind == "posted" else None
            if kind == "rejected" or why is not None:
                reason = "signature" if kind == "rejected" else "posting_invalid"
                detail = "signature: refused" if kind == "rejected" else why
                if eid is not None and eid not in status:
                    status[eid] = ("rejected", src, reason)
                c["dead_lettered"] += 1
                letters.append((src, eid, reason, detail))
            elif eid not in status:
                status[eid] = ("posted", src, None)
                c["posted"] += 1
                for seq, (acc, side_, minor, ccy) in enumerate(event_legs):
                    h = chain.link(head, chain.canonical(eid, seq, acc, side_, minor, ccy, chain.iso_utc(T0)))
                    rows.append((p, off, seq, eid, acc, side_, minor, ccy, head, h))
                    head = h
            elif status[eid][0] == "posted":
                c["duplicate"] += 1
            else:
                _, first, first_reason = status[eid]
                c["dead_lettered"] += 1
                detail = f"event {eid} was rejected at {first.topic}[{first.partition}]@{first.offset}: {first_reason}"
                letters.append((src, eid, "rejected_before", detail))
    return rows, letters, count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=st.lists(st.lists(message, max_size=10), min_size=1, max_size=3), data=st.data())
def test_the_store_posts_refuses_and_chains_as_the_per_event_rules_do(log, data):
    def outcome(p: int, off: int, m: tuple) -> Posted | Rejected:
        kind, eid, event_legs = m
        if kind == "rejected":
            return Rejected(Source(TOPIC, p, off), eid, "signature", "signature: refused", b"raw")
        return posted(off, eid, event_legs, partition=p)

    outcomes = [outcome(p, off, m) for p, msgs in enumerate(log) for off, m in enumerate(msgs)]
    cut = data.draw(st.integers(0, len(outcomes)), label="cut")  # two batches, the second re-sending some
    again = data.draw(st.integers(0, cut), label="again")
    with tempfile.TemporaryDirectory() as tmp, LedgerStore(Path(tmp) / "l.duckdb") as s:
        results = [s.apply(data.draw(st.permutations(b))) for b in (outcomes[:cut], outcomes[again:])]
        rows, letters, count = _reference(log)
        got_rows = (
            s.cursor()
            .execute(
                'SELECT partition, "offset", seq, event_id, account, side, amount_minor, currency, prev_hash, hash '
                'FROM postings ORDER BY partition, "offset", seq'
            )
            .fetchall()
        )
        assert got_rows == rows
        got_letters = sorted(
            ((d.source, d.event_id, d.reason, d.detail) for r in results for d in r.dead_letters),
            key=lambda x: (x[0].partition, x[0].offset),
        )
        assert got_letters == letters
        got_count = {
            p: {k: getattr(part, k) for k in ("posted", "duplicate", "dead_lettered")}
            for (_, p), part in s.partitions().items()
        }
        assert got_count == {p: c for p, c in count.items() if log[p]}
        assert invariants.check(s) == [] and chain.verify(s).ok
