"""The decision API's store commits every record to disk (fsync, `synchronous=FULL`)
before the answer, and shares one commit among the records that wait together (group
commit), with the same idempotency as one record at a time."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clearline.models.api_store import DecisionStore, SharedWriter


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


def test_two_processes_stores_share_one_writer_one_commit_and_its_rules(tmp_path):
    """Two workers' stores (here two loops on two threads, as two processes would be) hand
    their records to one `SharedWriter`: records waiting together share one commit across
    workers, each on disk before its answer, and the store's rules hold as with a writer
    of its own: one decision per order (the first stored wins, whichever worker sent it),
    a reused decision id fails alone."""
    writer = SharedWriter(tmp_path / "d.db")
    stores = [DecisionStore(tmp_path / "d.db", writer=writer.address) for _ in range(2)]
    blocker = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
    linked, blocked = threading.Barrier(3), threading.Barrier(3)

    def worker(w: int) -> list:
        async def one(i: int):
            got = await stores[w].add_durably(f"dec_{w}_{i}", "rs_001", f"o{i}", f"h{w}", {"w": w, "i": i})
            assert (got.decision_id, "rs_001", f"o{i}") in _seen(tmp_path / "d.db")  # committed before the answer
            return got

        async def run():
            await stores[w].add_durably(f"dec_{w}_first", "rs_002", f"first{w}", "h", {})  # the link is up
            linked.wait()
            blocked.wait()
            tasks = [asyncio.ensure_future(one(i)) for i in range(10)]
            tasks.append(asyncio.ensure_future(one(100 + w)))  # an order only this worker decides
            if w == 1:  # a decision id the other worker's store already used, for another order
                tasks.append(asyncio.ensure_future(stores[w].add_durably("dec_0_first", "rs_001", "o-x", "h", {})))
            return await asyncio.gather(*tasks, return_exceptions=True)

        return asyncio.run(run())

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(worker, w) for w in range(2)]
        linked.wait()
        before = writer.commits
        blocker.execute("BEGIN IMMEDIATE")  # the writer waits: both workers' records queue meanwhile
        blocked.wait()
        time.sleep(0.3)
        blocker.execute("COMMIT")
        got = [f.result() for f in futures]

    for i in range(10):  # each order decided once: both workers get the record stored first
        assert got[0][i] == got[1][i] and got[0][i].decision_id in (f"dec_0_{i}", f"dec_1_{i}")
        assert got[0][i].request_hash == "h" + got[0][i].decision_id[4]
    assert got[0][10].decision_id == "dec_0_100" and got[1][10].decision_id == "dec_1_101"
    assert isinstance(got[1][11], sqlite3.IntegrityError) and "dec_0_first" in str(got[1][11])
    assert writer.commits - before <= 2  # 23 records of two workers: what the writer held when blocked, then the rest
    assert len(_seen(tmp_path / "d.db")) == 14
    for store in stores:
        store.close()
    writer.close()
    blocker.close()


def test_a_store_whose_shared_writer_is_gone_fails_its_requests_and_connects_again(tmp_path):
    writer = SharedWriter(tmp_path / "d.db")
    store = DecisionStore(tmp_path / "d.db", writer=writer.address)

    async def run():
        first = await store.add_durably("dec_1", "rs_001", "o1", "h", {"decision": "approve"})
        writer.close()  # the writer ends: the next request fails instead of waiting for ever
        with pytest.raises((ConnectionError, OSError)):
            await asyncio.wait_for(store.add_durably("dec_2", "rs_001", "o2", "h", {}), 10)
        return first

    assert asyncio.run(run()).decision_id == "dec_1"
    again = SharedWriter(tmp_path / "d.db")
    store.writer = again.address

    async def later():
        return await store.add_durably("dec_3", "rs_001", "o1", "h", {})

    assert asyncio.run(later()).decision_id == "dec_1"  # connected again; o1 was decided before
    store.close()
    again.close()


def test_a_shared_writer_that_fails_refuses_its_workers_instead_of_leaving_them_waiting(tmp_path, monkeypatch):
    """A fault in the writer's thread ends it: the records waiting on it fail, and so does
    every later record (its socket refuses them), each at once, not after a timeout."""

    def broken(self, db, messages):
        raise RuntimeError("a fault in the writer")

    monkeypatch.setattr(SharedWriter, "_commit", broken)
    writer = SharedWriter(tmp_path / "d.db")
    store = DecisionStore(tmp_path / "d.db", writer=writer.address)

    async def run():
        for order in ("o1", "o2"):
            with pytest.raises(ConnectionError):  # the link went away, then refused (not TimeoutError)
                await asyncio.wait_for(store.add_durably(f"dec_{order}", "rs_001", order, "h", {}), 5)

    asyncio.run(run())
    store.close()
    writer.close()
