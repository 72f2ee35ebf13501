"""The reconciliation flow as a two-process cluster (`clearline recon run -i N -a … -a …`)
gives exactly the variances one process gives over the same inputs, also when one of its
processes is SIGKILLed mid-work and the cluster is started again and resumes.

Two deployments read the same world, each on its own topics and state: one process, and
a cluster whose first run (tail mode) publishes the early files' variances, takes in the
last days' files and is killed (process 1, SIGKILL; then process 0, which cannot go on
without its peer) before it reconciles them; a `--once` run of the cluster finishes.
Real broker, real subprocesses."""

from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack

import polars as pl
import pytest

from clearline.pipelines.world.generate import WorldOptions, generate
from tests.pipelines.ledger_harness import run_cluster, start_cluster, wait_until
from tests.pipelines.test_recon_flow import (
    Deployment,
    _on_topic,
    consume_all,
    drop,
    facts,
    file_day,
    world_files,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
RECON: tuple[str, ...] = ()  # Deployment.run_args names the command itself


def _status(dep: Deployment) -> dict:
    path = dep.state / "published" / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _inbox_empty(dep: Deployment) -> bool:
    return not [p for p in dep.inbox.iterdir() if p.is_file()]


@pytest.fixture(scope="module")
def runs(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("recon-cluster")
    world = root / "world"
    generate(WorldOptions(days=30, merchants=4, seed=43), world)
    files = world_files(world)
    days = sorted({file_day(p) for p in files})
    early = [p for p in files if file_day(p) < days[-3]]
    env, logs = dict(os.environ), root / "logs"
    with ExitStack() as stack:
        single = Deployment(stack, kafka_bootstrap, root / "single")
        single.produce(world, ledger=False)
        drop(files, single.inbox)
        single.run_once()

        cluster = Deployment(stack, kafka_bootstrap, root / "cluster")
        cluster.produce(world, ledger=False)
        drop(early, cluster.inbox)
        flows = start_cluster(cluster.run_args(), env, logs, cluster.state / "flow", "tail", RECON)
        try:
            wait_until(lambda: _status(cluster).get("advances", 0) >= 1, 180, "the cluster's first publication", flows)
            drop([p for p in files if p not in early], cluster.inbox)
            wait_until(lambda: _inbox_empty(cluster), 120, "intake to take in the last files", flows)
            flows[1].kill()
            alone = _exits_alone(flows[0])
            rc0 = flows[0].kill()  # its exit status (SIGKILLed if it still waited for its peer)
        finally:
            for flow in flows:
                flow.stop_quietly()
        before = _status(cluster)["consumed"]
        total = _on_topic(cluster.bootstrap, cluster.events) + _on_topic(cluster.bootstrap, cluster.lines)
        print(
            f"\n[recon cluster] process 1 killed after {before} of {total} messages were reconciled; process 0 "
            f"{'exited by itself' if alone else 'was killed too'} ({rc0})"
        )
        run_cluster([*cluster.run_args(), "--once"], env, logs, cluster.state / "flow", "once", command=RECON)
        yield {"single": single, "cluster": cluster, "before": before, "total": total}


def _exits_alone(flow, wait_s: float = 20) -> bool:
    """Whether a cluster process whose peer was killed exits by itself within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while flow.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not flow.alive()


def test_the_kill_landed_while_there_was_work_left(runs) -> None:
    assert 0 < runs["before"] < runs["total"], runs


def test_the_resumed_cluster_read_every_message_once(runs) -> None:
    assert _status(runs["cluster"])["consumed"] == runs["total"] == _status(runs["single"])["consumed"]
    assert json.loads((runs["cluster"].state / "flow" / "cluster.json").read_text()) == {"processes": 2}


def test_a_cluster_gives_exactly_the_variances_of_one_process(runs) -> None:
    """What stands at the end is the same. The cluster's tail-mode run judged the early
    files at the latest event's time, so a line in the last days' files, not yet arrived,
    was called missing and cleared once it came (withdrawn, or resolved by the autofix
    rules): those are set aside, the single run having had every file from the start."""
    single, cluster = runs["single"], runs["cluster"]
    stored = cluster.store()
    standing = stored.filter(~pl.col("variance_id").is_in(list(_withdrawn(runs))))
    assert standing.height > 0 and stored["variance_id"].n_unique() == stored.height
    assert facts(standing) == facts(single.store())
    assert facts(cluster.view()) == facts(single.view())


def _withdrawn(runs) -> set[str]:
    messages = consume_all(runs["cluster"].bootstrap, runs["cluster"].variances)
    return {m["variance_id"] for m in messages if m["message"] == "withdrawn"}


def test_the_cluster_sent_nothing_twice_across_the_kill(runs) -> None:
    """No message goes out twice, kill or not (a variance whose facts changed, say a
    balance break whose explaining variances moved, is news, not a copy); only a variance
    the single run never found is withdrawn."""
    messages = consume_all(runs["cluster"].bootstrap, runs["cluster"].variances)
    sent = [json.dumps({k: v for k, v in m.items() if k != "age_days"}, sort_keys=True) for m in messages]
    assert sent and len(sent) == len(set(sent)), "killed after its publication was stored: nothing is sent again"
    assert _withdrawn(runs) and not _withdrawn(runs) & set(runs["single"].store()["variance_id"])
