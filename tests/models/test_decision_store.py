"""The decision API's store commits every record to disk (fsync, `synchronous=FULL`)
before the answer, and shares one commit among the records that wait together (group
commit), with the same idempotency as one record at a time."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from clearline.models.api_store import DecisionStore


def _seen(path) -> set[tuple[str, str, str]]:
    """What another connection (another process) reads: only what was committed."""
    db = sqlite3.connect(path)
    try:
        return set(db.execute("SELECT decision_id, tenant, order_id FROM decisions"))
    finally:
        db.close()


def test_records_waiting_together_share_one_commit_each_on_disk_before_its_answer(tmp_path):
    store = DecisionStore(tmp_path / "d.db")
    blocker = sqlite3.connect(tmp_path / "d.db", isolation_level=None)

    async def run():
        blocker.execute("BEGIN IMMEDIATE")  # the writer must wait: every record below queues meanwhile

        async def one(i: int):
            got = await store.add_durably(f"dec_{i}", "rs_001", f"o{i}", "h", {"decision": "approve", "i": i})
            assert ("dec_%d" % i, "rs_001", f"o{i}") in _seen(tmp_path / "d.db")  # committed before the answer
            return got

        tasks = [asyncio.ensure_future(one(i)) for i in range(20)]
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in tasks)
        blocker.execute("COMMIT")
        return await asyncio.gather(*tasks)

    got = asyncio.run(run())
    assert [s.decision_id for s in got] == [f"dec_{i}" for i in range(20)]
    assert store.commits <= 2  # 20 records: the one (or few) the writer held when blocked, then the rest
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: a commit is fsynced
    store.close()
    blocker.close()


def test_a_group_keeps_one_decision_per_order_and_one_bad_record_fails_alone(tmp_path):
    store = DecisionStore(tmp_path / "d.db")

    async def run():
        return await asyncio.gather(
            store.add_durably("dec_1", "rs_001", "o1", "h1", {"decision": "approve"}),
            store.add_durably("dec_2", "rs_001", "o1", "h2", {"decision": "decline"}),  # same order, same group
            store.add_durably("dec_3", "rs_002", "o1", "h1", {"decision": "review"}),  # another tenant's o1
            store.add_durably("dec_3", "rs_001", "o9", "h", {"decision": "review"}),  # a decision id used twice
            store.add_durably("dec_4", "rs_001", "o4", "h", {"decision": "approve"}),
            return_exceptions=True,
        )

    first, racing, other_tenant, reused, fourth = asyncio.run(run())
    assert racing == first and first.decision_id == "dec_1" and other_tenant.decision_id == "dec_3"
    assert isinstance(reused, sqlite3.IntegrityError) and "dec_3" in str(reused)
    assert fourth.decision_id == "dec_4"
    assert _seen(tmp_path / "d.db") == {("dec_1", "rs_001", "o1"), ("dec_3", "rs_002", "o1"), ("dec_4", "rs_001", "o4")}
    store.close()
    again = DecisionStore(tmp_path / "d.db")
    assert again.add("dec_5", "rs_001", "o1", "h", {"decision": "decline"}) == first  # the same rule without a loop
    with pytest.raises(sqlite3.IntegrityError, match="dec_4"):
        again.add("dec_4", "rs_001", "o7", "h", {})
    again.close()


def test_the_records_of_one_turn_of_the_loop_share_one_commit(tmp_path):
    """Requests the loop runs in one turn hand their records over together: one commit,
    not one each. Each request here lets go of the GIL for a moment before its record (a
    decision's SQLite reads do): handed over one by one, the first record woke the writer,
    which took it alone and committed, then the next one or two."""
    store = DecisionStore(tmp_path / "d.db")

    async def one(i: int):
        time.sleep(0.002)  # the request's work, letting go of the GIL (the writer thread may run)
        return await store.add_durably(f"dec_{i}", "rs_001", f"o{i}", "h", {"decision": "approve", "i": i})

    async def run():
        return await asyncio.gather(*(one(i) for i in range(8)))

    got = asyncio.run(run())
    assert [s.decision_id for s in got] == [f"dec_{i}" for i in range(8)]
    assert store.commits == 1
    store.close()
