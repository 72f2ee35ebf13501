"""The Feast feature store through the adapter, for real: a repo applied in a tmp folder,
rows pushed online and offline, read back online and point-in-time; SQLite by default,
Redis (a real redis-server) by configuration; and the `clearline features` commands."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import warnings

import bytewax.operators as op
import polars as pl
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main, run_main
from click.testing import CliRunner

from clearline import config, events
from clearline.features import batch, store
from clearline.features.feast_sink import MOST_OWED, FeastSink, push_steps
from clearline.features.streaming import feature_steps, run_bounded
from tests.pipelines.ledger_harness import free_ports

warnings.filterwarnings("ignore", category=DeprecationWarning, module="ibis")


@pytest.fixture(scope="module")
def world_rows(small_world):
    world, _ = small_world
    return batch.order_features(batch.read_events(world))


def settings(tmp_path, **kw) -> store.FeastSettings:
    return store.settings_from_config(config.load("features"), tmp_path, tmp_path / "feast", **kw)


def latest(history: pl.DataFrame, entity: str) -> pl.DataFrame:
    """Per entity its last row, for entities whose last instant has a single row."""
    key = f"{entity}_id"
    last = history.group_by(key).agg(pl.col("event_timestamp").max())
    rows = history.join(last, on=[key, "event_timestamp"])
    return rows.filter(pl.len().over(key) == 1)


def check_online(fs, history: pl.DataFrame, entity: str) -> int:
    expected = latest(history, entity)
    for row in expected.iter_rows(named=True):
        got = store.online_features(fs, entity, row[f"{entity}_id"])
        want = {k: v for k, v in row.items() if k not in ("event_timestamp", "created")}
        assert got == want
    return expected.height


def test_pushed_rows_read_back_online_and_point_in_time(tmp_path, world_rows):
    s = settings(tmp_path)
    report = store.apply(s)
    assert report["online_store"] == "sqlite" and (s.data_dir / "feature_store.yaml").exists()
    fs = store.open_store(s)
    for entity in ("buyer", "merchant"):
        history = batch.feature_history(world_rows, entity)
        assert store.push(fs, history, entity) == world_rows.height
        assert check_online(fs, history, entity) > 5
        offline = pl.read_parquet(s.data_dir / "offline" / f"{entity}_history.parquet")
        assert offline.height == history.height
    assert store.online_features(fs, "buyer", "nobody")["currency"] is None

    history = batch.feature_history(world_rows, "buyer")
    sample = history.filter(pl.len().over("buyer_id", "event_timestamp") == 1).sample(25, seed=3)
    joined = store.point_in_time(fs, "buyer", sample.select("buyer_id", "event_timestamp"))
    joined = joined.with_columns(pl.col("event_timestamp").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
    expected = sample.drop("created").sort("buyer_id", "event_timestamp")
    got = joined.select(expected.columns).sort("buyer_id", "event_timestamp")
    assert got.cast(expected.schema).equals(expected)


def test_nulls_survive_the_round_trip(tmp_path, world_rows):
    s = settings(tmp_path)
    store.apply(s)
    fs = store.open_store(s)
    history = batch.feature_history(world_rows, "merchant")
    no_spread = history.filter(pl.col("merchant_ticket_zscore").is_null()).unique("merchant_id", keep="first")
    assert no_spread.height > 0  # early requests, before a merchant has two tickets
    store.push(fs, no_spread, "merchant", offline=False)
    for row in no_spread.iter_rows(named=True):
        got = store.online_features(fs, "merchant", row["merchant_id"])
        assert got["merchant_ticket_zscore"] is None
        assert got == {k: v for k, v in row.items() if k not in ("event_timestamp", "created")}


def test_the_direct_online_write_stores_exactly_what_a_push_stores(tmp_path, world_rows):
    """`store.write_online` skips the push's pandas round trip; the online tables must
    hold the same keys, value bytes and timestamps, nulls included."""
    tables = []
    for name, write in (
        ("pushed", lambda fs, f, e: store.push(fs, f, e, offline=False)),
        ("written", store.write_online),
    ):
        s = store.settings_from_config(config.load("features"), tmp_path, tmp_path / name)
        store.apply(s)
        fs = store.open_store(s)
        for entity in ("buyer", "merchant"):
            assert write(fs, store.latest_rows(batch.feature_history(world_rows, entity), entity), entity) > 5
        with sqlite3.connect(s.data_dir / "online.db") as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            tables.append({n: sorted(db.execute(f'SELECT * FROM "{n}"').fetchall()) for n in names})
    pushed, written = tables
    assert pushed == written and sum(len(rows) for rows in written.values()) > 100
    fs = store.open_store(store.settings_from_config(config.load("features"), tmp_path, tmp_path / "written"))
    assert check_online(fs, batch.feature_history(world_rows, "merchant"), "merchant") > 0


@pytest.fixture(scope="module")
def streamed(small_world):
    """The first 4,000 events of the world and the streaming runtime's rows for them."""
    world, _ = small_world
    arrived = [events.decode(raw) for raw in (world / "events" / "events.jsonl").read_bytes().splitlines()[:4000]]
    return arrived, run_bounded(arrived)[1]


def redis_settings(tmp_path, url: str) -> store.FeastSettings:
    cfg = config.load("features")
    cfg = dict(cfg, feast=dict(cfg["feast"], online_store="redis", redis={"connection_string": url}))
    return store.settings_from_config(cfg, tmp_path, tmp_path / "feast")


def sink_flow(arrived, settings) -> Dataflow:
    flow = Dataflow("features_to_feast")
    batches = [arrived[i : i + 1000] for i in range(0, len(arrived), 1000)]  # as Kafka polls arrive
    _, rows, _ = feature_steps(op.input("events", flow, TestingSource(batches)))
    push_steps(rows, settings)
    return flow


def test_the_streaming_runtime_pushes_through_the_feast_sink(tmp_path, streamed):
    arrived, rows = streamed
    s = settings(tmp_path)
    store.apply(s)
    run_main(sink_flow(arrived, s))
    fs = store.open_store(s)
    for entity in ("buyer", "merchant"):
        expected = store.rows_frame(rows, entity)
        assert check_online(fs, expected, entity) > 3
        offline = pl.read_parquet(s.data_dir / "offline" / f"{entity}_history.parquet")
        assert offline.sort(f"{entity}_id", "event_timestamp").equals(expected.sort(f"{entity}_id", "event_timestamp"))


def test_a_snapshot_keeps_what_the_writer_has_not_pushed_and_the_resumed_sink_pushes_it(tmp_path, streamed):
    """A sink's snapshot does not wait for its writer (an offline push rewrites the whole
    history file, and the flow stood still behind it at every epoch): it holds the frames
    handed over and not yet pushed, and a sink resumed from it pushes them. Here the
    writer process is frozen before it takes anything, then killed, as a crash would."""
    _, rows = streamed
    s = settings(tmp_path)
    store.apply(s)
    sink = FeastSink(s, online=False)
    frame = store.rows_frame(rows, "buyer")
    first = sink.build_part("feast_history", "history", None)
    child = first.writer._process.pid
    os.kill(child, signal.SIGSTOP)
    try:
        first.write_batch([[("buyer", frame)]])
        kept: list = []
        snapshot = threading.Thread(target=lambda: kept.append(first.snapshot()), daemon=True)
        snapshot.start()
        snapshot.join(10)
        assert not snapshot.is_alive(), "the snapshot waited for the writer"
    finally:
        os.kill(child, signal.SIGKILL)
    [unpushed] = kept
    assert [(entity, f.equals(frame)) for entity, f in unpushed] == [("buyer", True)]
    sink.build_part("feast_history", "history", unpushed).close()
    offline = pl.read_parquet(s.data_dir / "offline" / "buyer_history.parquet")
    assert offline.height == frame.height > 3  # pushed once, by the resumed sink
    assert offline.sort("buyer_id", "event_timestamp").equals(frame.sort("buyer_id", "event_timestamp"))


def test_a_sink_waits_for_a_writer_more_than_most_owed_pushes_behind(tmp_path, streamed):
    """The snapshot does not wait, so the sink bounds what its writer owes instead: with
    the writer frozen, the push that puts it more than MOST_OWED behind waits until the
    writer, thawed, has caught up to MOST_OWED."""
    _, rows = streamed
    s = settings(tmp_path)
    store.apply(s)
    frame = store.rows_frame(rows, "buyer")
    sink = FeastSink(s, online=False).build_part("feast_history", "history", None)
    child = sink.writer._process.pid
    os.kill(child, signal.SIGSTOP)
    pushing = threading.Thread(target=lambda: [sink.write_batch([[("buyer", frame)]]) for _ in range(MOST_OWED + 1)])
    try:
        pushing.start()
        pushing.join(3)
        assert pushing.is_alive() and len(sink.snapshot()) == MOST_OWED + 1  # waiting, not refusing
    finally:
        os.kill(child, signal.SIGCONT)
    pushing.join(60)
    assert not pushing.is_alive() and len(sink.snapshot()) <= MOST_OWED
    sink.close()
    assert pl.read_parquet(s.data_dir / "offline" / "buyer_history.parquet").height == (MOST_OWED + 1) * frame.height


def test_a_push_with_the_wrong_columns_is_refused(tmp_path, world_rows):
    s = settings(tmp_path)
    store.apply(s)
    with pytest.raises(store.FeatureStoreError, match="expected columns"):
        store.push(store.open_store(s), batch.feature_history(world_rows, "buyer").drop("currency"), "buyer")


def test_an_unknown_online_store_is_named(tmp_path):
    cfg = dict(config.load("features"), feast={"online_store": "memcached"})
    with pytest.raises(store.FeatureStoreError, match="memcached"):
        store.settings_from_config(cfg, tmp_path)


@pytest.fixture
def redis_url(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_online_store_keeps_the_newest_row(tmp_path, world_rows, redis_url):
    s = redis_settings(tmp_path, redis_url)
    assert store.apply(s)["online_store"] == "redis"
    fs = store.open_store(s)
    history = batch.feature_history(world_rows, "buyer")
    store.push(fs, history, "buyer", offline=False)
    assert check_online(fs, history, "buyer") > 5
    # a second writer pushing an older row afterwards does not overwrite the newer one
    newest = latest(history, "buyer").row(0, named=True)
    older = history.filter((pl.col("buyer_id") == newest["buyer_id"])).sort("event_timestamp").head(1)
    assert (
        older["buyer_orders_30d"][0] != newest["buyer_orders_30d"]
        or older["buyer_exposure_minor"][0] != newest["buyer_exposure_minor"]
    )
    store.push(fs, older, "buyer", offline=False)
    assert (
        store.online_features(fs, "buyer", newest["buyer_id"])["buyer_exposure_minor"] == newest["buyer_exposure_minor"]
    )


@pytest.mark.parametrize("online_store", ["sqlite", "redis"])
def test_two_workers_push_through_one_writer_per_store(tmp_path, streamed, online_store, request):
    """Each Feast sink has one partition: with two workers one process still writes each
    store (SQLite takes one writer, the offline history one appender), and no row is lost."""
    arrived, rows = streamed
    s = (
        settings(tmp_path)
        if online_store == "sqlite"
        else redis_settings(tmp_path, request.getfixturevalue("redis_url"))
    )
    store.apply(s)
    cluster_main(sink_flow(arrived, s), [], 0, worker_count_per_proc=2)
    fs = store.open_store(s)
    for entity in ("buyer", "merchant"):
        expected = store.rows_frame(rows, entity)
        assert check_online(fs, expected, entity) > 3
        offline = pl.read_parquet(s.data_dir / "offline" / f"{entity}_history.parquet")
        assert offline.height == expected.height  # one writer: no append lost


def test_the_features_commands(tmp_path, small_world, world_rows):
    from clearline.pipelines.cli import main

    world, _ = small_world
    runner = CliRunner()
    where = ["--feast-dir", str(tmp_path / "feast")]
    got = runner.invoke(main, ["features", "get", "--buyer", "b_0000001", *where])
    assert got.exit_code == 2 and "run `clearline features apply` first" in " ".join(got.output.split())
    assert runner.invoke(main, ["features", "apply", *where, "--json"]).exit_code == 0
    pushed = runner.invoke(main, ["features", "push", "--events", str(world), *where, "--json"])
    assert pushed.exit_code == 0, pushed.output
    report = json.loads(pushed.stdout)
    assert report["requests"] == report["buyer_rows_offline"] == world_rows.height
    assert report["buyers_online"] == world_rows["buyer_id"].n_unique()
    buyer = latest(batch.feature_history(world_rows, "buyer"), "buyer").row(0, named=True)
    got = runner.invoke(
        main, ["features", "get", "--buyer", buyer["buyer_id"], "--merchant", buyer["buyer_id"], *where, "--json"]
    )
    doc = json.loads(got.stdout)
    assert doc["buyer"]["buyer_exposure_minor"] == buyer["buyer_exposure_minor"]
    assert doc["merchant"]["currency"] is None  # a buyer id is no merchant
    table = runner.invoke(main, ["features", "get", "--buyer", buyer["buyer_id"], *where])
    assert table.exit_code == 0 and "buyer days past due" in table.output
    bad = runner.invoke(main, ["features", "push", "--events", str(tmp_path), *where])
    assert bad.exit_code == 2 and "neither a world folder" in " ".join(bad.output.split())
