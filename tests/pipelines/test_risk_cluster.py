"""The risk flow as a two-process cluster (`clearline risk run -i 0/1 -a … -a …`, one state
folder), through the real broker, Feast and MLflow of test_risk_flow (its world, models and
single-process run): the cluster decides every order on terms exactly once, with exactly
the decisions one process made over the same topic; and when one of its processes is
SIGKILLed mid-run and the cluster is started again, it resumes and still decides every
request exactly once, on the topic and in the log, deciding only what the killed run had
not, and exactly the decisions one process made. (9-13 of 365 differed while the merged
source's order followed the polls, and 1 while the scorecard scored a batch's rows in one
matrix product: test_merged_source and test_api_core keep both from coming back.)

Both processes used to die now and then with only Bytewax's "Send thread panic": the
journal's first switch to WAL, opened by both workers at the same instant, was refused
("database is locked", clearline.sqlite_wal), and Bytewax hides a cluster worker's error
under its send thread's panic; the runner now prints it (test_runner_worker_errors).

Decisions are compared whole (score, reasons, reason codes, inputs, challenger, limits),
all but `decided_at`, the wall-clock time of the deciding."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from clearline.models.decision_journal import read_log
from tests.pipelines.ledger_harness import Flow, start_cluster, wait_until
from tests.pipelines.test_risk_flow import _journal_count, _topic_decisions, main_run, setup  # noqa: F401

pytestmark = pytest.mark.kafka


class Cluster:
    """A two-process `risk run` cluster over the env's state folder: the harness's
    `start_cluster`, with what these tests ask of it."""

    def __init__(self, env, logs: Path, name: str, *args: str):
        self.env, self.logs, self.name, self.args = env, logs, name, [*args, "--state-dir", str(env.state)]
        self.flows: list[Flow] = []

    def start(self) -> Cluster:
        self.flows = start_cluster(self.args, self.env.env, self.logs, self.env.state, self.name, ("risk", "run"))
        return self

    def died(self) -> bool:
        return not all(flow.alive() for flow in self.flows)

    def tails(self) -> str:
        return "\n".join(flow.tail() for flow in self.flows)

    def finish(self, timeout: float = 600) -> list[dict]:
        """Wait for a --once cluster to end; each process's summary."""
        summaries = []
        for flow in self.flows:
            rc = flow.wait(timeout)
            assert rc == 0, f"a cluster process exited {rc}\n{self.tails()}"
            out = (self.logs / f"{flow.name}.{flow.runs}.out").read_bytes()
            summaries.append(json.loads(out[out.index(b"\n{") + 1 :] if not out.startswith(b"{") else out))
        return summaries

    def stop(self) -> None:
        for flow in self.flows:
            flow.stop_quietly()


def _once(env, logs: Path) -> list[dict]:
    """A --once cluster run over the env's topic to its end; each process's summary."""
    cluster = Cluster(env, logs, "once", "--once", "--json", "--topic", env.events_topic).start()
    try:
        return cluster.finish()
    finally:
        cluster.stop()


def _decided(records) -> dict[str, dict]:
    """Each decision by its request, without the wall-clock time it was made."""
    return {r["event_id"]: {k: v for k, v in r.items() if k != "decided_at"} for r in records}


def _slowed(env, **risk) -> None:
    path = Path(env.env["CLEARLINE_CONFIG_DIR"]) / "risk.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **risk}))


def _exactly_once(setup, env) -> tuple[list[dict], list[dict]]:
    """One decision per order on terms in the log and on the topic; both, as records."""
    expected = set(setup["terms"]["event_id"])
    log, topic = read_log(env.state, "decisions"), _topic_decisions(setup["bootstrap"], env.decisions_topic)
    assert log.height == len(expected) and set(log["event_id"]) == expected  # one per request in the log
    assert len(topic) == len(expected) and {r["event_id"] for r in topic} == expected  # and on the topic
    return [json.loads(r) for r in log["record"]], topic


def test_a_two_process_cluster_decides_exactly_as_one_process(setup, main_run, tmp_path):  # noqa: F811
    env = setup["env"]("cluster")
    summaries = _once(env, tmp_path / "logs")
    log, topic = _exactly_once(setup, env)
    assert _decided(topic) == _decided(log) == _decided(main_run[3])  # exactly the single process's decisions
    assert sum(s["decisions"] for s in summaries) == setup["terms"].height
    assert sum(s["consumed"] for s in summaries) == setup["produced"]  # one reader: the merged source


@pytest.mark.slow
def test_a_cluster_with_a_process_sigkilled_mid_run_resumes_deciding_each_request_once(setup, main_run, tmp_path):  # noqa: F811
    """The topic is a backlog read (--once) a couple of messages per poll, so the cluster
    is still deciding when a third of the requests are in the journal; then process 0 is
    SIGKILLed (its peer loses the cluster and is stopped too), and the cluster is started
    again with --once over the same state folder.

    Both runs read the backlog --once, as the single process did (a first version read it
    live before the kill: 9 of 365 decisions then differed from the single process's)."""
    env = setup["env"]("cluster-kill")
    _slowed(env, batch_size=2)
    total = setup["terms"].height
    cluster = Cluster(env, tmp_path / "logs", "killed", "--once", "--json", "--topic", env.events_topic).start()
    try:
        wait_until(
            lambda: _journal_count(env.state) >= total // 3 or cluster.died(),
            600,
            "a third of the decisions",
            poll=0.02,
        )
        assert not cluster.died(), f"the cluster died before the kill\n{cluster.tails()}"
        cluster.flows[0].kill()
    finally:
        time.sleep(2)  # the survivor notices the lost peer (or not: it is stopped below either way)
        cluster.stop()
    before = _journal_count(env.state)  # what the killed cluster decided, its survivor's last writes too
    print(f"\n[risk cluster kill] {before} of {total} requests decided when process 0 was killed")
    assert 0 < before < total, ("the kill should land while requests are left", before, total)
    summaries = _once(env, tmp_path / "logs")
    log, topic = _exactly_once(setup, env)
    assert _decided(topic) == _decided(log)
    assert sum(s["decisions"] for s in summaries) == total - before  # the resumed run decided only the rest
    single = _decided(main_run[3])
    got = _decided(topic)
    differ = sorted(k for k, v in got.items() if v != single[k])
    fields = {k: {f: (got[k][f], single[k][f]) for f in single[k] if got[k].get(f) != single[k][f]} for k in differ[:2]}
    assert not differ, f"{len(differ)} of {total} decisions differ from one process's: {fields}"
