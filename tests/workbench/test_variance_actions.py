"""How a person's actions reach the variance store: queued requests (durable files)
applied once, by whoever holds the store next, with the actor and the code on the
history; the timing rule that reopens a watched variance whose date passed."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timezone

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearline.pipelines.workbench import actions
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.recon import VarianceStore, apply_resolutions, pending_resolutions, queue_resolution
from clearline.recon.variances.store import expired
from tests.recon.test_recon_store import variances

SETTINGS = WorkbenchSettings.from_config("unused", "unused", "unused")
TODAY = date(2026, 5, 10)


@pytest.fixture
def store_dir(tmp_path):
    with VarianceStore(tmp_path / "variances.duckdb") as store:
        store.record(variances("stl_1", "stl_2", "stl_3"))
    return tmp_path


def ids(n: int = 3) -> list[str]:
    return variances("stl_1", "stl_2", "stl_3")["variance_id"].to_list()[:n]


def test_a_queued_request_is_applied_with_its_actor_code_and_date(store_dir):
    a, b, _ = ids()
    queue_resolution(store_dir, a, "Adyen confirmed a fee error", None, code="processor_error", actor="ann")
    queue_resolution(store_dir, b, "in transit", None, code="timing", actor="bob", watch_until=date(2026, 6, 1))
    assert [p["actor"] for p in pending_resolutions(store_dir)] == ["ann", "bob"]
    with VarianceStore(store_dir / "variances.duckdb") as store:
        assert apply_resolutions(store_dir, store, today=TODAY) == 2
        ra, rb = store.get(a), store.get(b)
        history = store.history(b)
    assert (ra["status"], ra["code"], ra["watch_until"]) == ("resolved", "processor_error", None)
    assert (rb["status"], rb["code"], rb["watch_until"]) == ("watched", "timing", date(2026, 6, 1))
    assert history.select("status", "actor", "code").rows()[-1] == ("watched", "bob", "timing")
    assert pending_resolutions(store_dir) == []


def test_no_request_is_lost_while_a_flow_holds_the_store_and_dies(store_dir):
    """A process holding the store (as the recon flow does) is killed; the requests queued
    meanwhile are applied by the next holder, each exactly once, even one whose file was
    not yet filed away when the holder died."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(600)",
            str(store_dir / "variances.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        settings = WorkbenchSettings.from_config(store_dir / "wb", store_dir, store_dir / "ledger")
        user = {"name": "ann", "role": "resolver", "tenant": "platform"}
        from clearline.pipelines.workbench.state import WorkbenchState

        state = WorkbenchState(settings.state_dir)
        request = actions.resolution(settings, "bank_error", "bank booked it twice", None, TODAY)
        assert actions.move(settings, state, user, ids(2), request) == "queued"
    finally:
        holder.kill()
        holder.wait()
    queued = sorted((store_dir / "resolutions").glob("*.json"))
    assert len(queued) == 2
    kept = queued[0].read_bytes()
    with VarianceStore(store_dir / "variances.duckdb") as store:
        assert apply_resolutions(store_dir, store, today=TODAY) == 2
        # a holder that died after applying a request but before filing it away: the file is back
        queued[0].write_bytes(kept)
        assert apply_resolutions(store_dir, store, today=TODAY) == 1
        for vid in ids(2):
            rows = store.history(vid).filter(pl.col("status") == "resolved")
            assert rows.select("actor", "code").rows() == [("ann", "bank_error")]
        assert store.get(ids()[2])["status"] == "open"


def test_the_timing_rule_reopens_a_watched_variance_only_after_its_date(store_dir):
    a, b, _ = ids()
    with VarianceStore(store_dir / "variances.duckdb") as store:
        store.move(a, "in transit", watch_until=date(2026, 5, 12), code="timing", actor="ann")
        store.move(b, "in transit", watch_until=date(2026, 5, 9), code="timing", actor="ann")
        assert store.reopen_expired(TODAY) == [b]
        assert store.get(a)["status"] == "watched"
        row = store.get(b)
        assert (row["status"], row["watch_until"]) == ("open", None)
        last = store.history(b).rows(named=True)[-1]
        assert (last["status"], last["actor"], last["code"]) == ("open", "clearline", "timing_expired")
        # the matcher no longer finding a watched variance means it cleared: resolved, not reopened later
        assert store.withdraw([a], "the line arrived") == [a]
        assert store.reopen_expired(date(2027, 1, 1)) == []
        assert store.get(a)["status"] == "resolved"


@given(
    status=st.sampled_from(["open", "assigned", "watched", "resolved"]),
    until=st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2026, 12, 31))),
    today=st.dates(date(2026, 1, 1), date(2026, 12, 31)),
)
def test_expired_is_exactly_watched_and_past_its_date(status, until, today):
    assert expired({"status": status, "watch_until": until}, today) == (
        status == "watched" and until is not None and until < today
    )


def test_a_resolution_needs_a_known_code_a_note_and_for_timing_a_future_date():
    ok = actions.resolution(SETTINGS, "timing", " in transit ", date(2026, 5, 11), TODAY)
    assert ok == {"note": "in transit", "assignee": None, "code": "timing", "watch_until": date(2026, 5, 11)}
    for code, note, until, words in (
        ("timing", "x", None, "date by which"),
        ("timing", "x", TODAY, "must be after today"),
        ("bank_error", "x", date(2026, 6, 1), "only a timing"),
        ("made_up", "x", None, "choose one of"),
        ("bank_error", "  ", None, "note is required"),
    ):
        with pytest.raises(actions.Refused, match=words):
            actions.resolution(SETTINGS, code, note, until, TODAY)


def test_moves_refused_by_the_store_are_kept_with_their_reason(store_dir):
    queue_resolution(store_dir, "var_nope", "x", None, code="bank_error", actor="ann")
    with VarianceStore(store_dir / "variances.duckdb") as store:
        apply_resolutions(store_dir, store, today=TODAY)
    reasons = list((store_dir / "resolutions" / "refused").glob("*.reason.txt"))
    assert len(reasons) == 1 and "var_nope" in reasons[0].read_text()


def test_an_old_store_gains_the_new_columns_and_keeps_its_rows(tmp_path):
    import duckdb

    path = tmp_path / "variances.duckdb"
    with VarianceStore(path) as store:
        store.record(variances("stl_1"))
    with duckdb.connect(str(path)) as con:  # as a store made before the workbench looked
        con.execute("ALTER TABLE variances DROP COLUMN code")
        con.execute("ALTER TABLE history DROP COLUMN actor")
    with VarianceStore(path) as store:
        vid = ids(1)[0]
        row = store.move(vid, "done", code="our_error", actor="ann", at=datetime(2099, 1, 1, tzinfo=timezone.utc))
        assert (row["code"], store.history(vid)["actor"].to_list()) == ("our_error", [None, "ann"])


def test_publishing_writes_the_store_and_its_history_as_readers_see_them(store_dir):
    from clearline.recon import (
        PUBLISHED_VARIANCE_HISTORY,
        PUBLISHED_VARIANCE_SCHEMA,
        PUBLISHED_VARIANCES,
        publish_variances,
    )

    a = ids(1)[0]
    queue_resolution(store_dir, a, "looking", "ann", actor="ann")
    with VarianceStore(store_dir / "variances.duckdb") as store:
        apply_resolutions(store_dir, store, today=TODAY)
        publish_variances(store_dir, store)
        want_rows, want_history = store.frame(), store.history(a)
    snapshot = pl.read_parquet(store_dir / PUBLISHED_VARIANCES)
    assert snapshot.equals(want_rows) and dict(snapshot.schema) == PUBLISHED_VARIANCE_SCHEMA
    history = pl.read_parquet(store_dir / PUBLISHED_VARIANCE_HISTORY).filter(pl.col("variance_id") == a)
    assert history.select("status", "actor", "note").rows() == want_history.select("status", "actor", "note").rows()
    assert history["actor"].to_list() == [None, "ann"]
