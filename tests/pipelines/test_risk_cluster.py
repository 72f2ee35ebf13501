"""The risk flow as a two-process cluster (`clearline risk run -i 0/1 -a … -a …`, one state
folder), through the real broker, Feast and MLflow of test_risk_flow (its world, models and
single-process run): the cluster decides every order on terms exactly once, with exactly
the decisions one process made over the same topic; and when one of its processes is
SIGKILLed mid-run and the cluster is started again, it resumes and still decides every
request exactly once, on the topic and in the log, deciding only what the killed run had
not. That the resumed cluster's decisions are also exactly the single process's is NOT
proven yet: 9-13 of 365 differed in the runs of 2026-12-07 (the test says so as an xfail
with their ids) — whether the kill or the 2-message polls the test needs to land the kill
mid-run cause it is open.

Decisions are compared whole (score, reasons, reason codes, inputs, challenger, limits),
all but `decided_at`, the wall-clock time of the deciding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from clearline.models.decision_journal import read_log
from tests.pipelines.ledger_harness import free_ports, recovery_initialised, wait_until
from tests.pipelines.test_risk_flow import _journal_count, _topic_decisions, main_run, setup  # noqa: F401

pytestmark = pytest.mark.kafka


class Cluster:
    """Two `risk run` processes, -i 0 and -i 1, one state folder; process 1 starts once
    process 0 has made Bytewax's recovery partitions (a simultaneous first start races)."""

    def __init__(self, env, logs: Path, name: str, *args: str):
        self.env, self.logs, self.name, self.args = env, logs, name, args
        self.procs: list[subprocess.Popen] = []
        self.runs = 0

    def start(self) -> Cluster:
        self.runs += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2)
        addresses = [a for p in ports for a in ("-a", f"127.0.0.1:{p}")]
        self.procs = []
        for i in (0, 1):
            err = open(self.logs / f"{self.name}{self.runs}-p{i}.err", "wb")
            cmd = self.env.cmd("run", *self.args, "--state-dir", str(self.env.state), "-i", str(i), *addresses)
            out = subprocess.PIPE if "--once" in self.args else subprocess.DEVNULL
            self.procs.append(subprocess.Popen(cmd, env=self.env.env, stdout=out, stderr=err, start_new_session=True))
            err.close()
            if i == 0:
                wait_until(lambda: recovery_initialised(self.env.state), 120, "process 0 to make recovery", poll=0.05)
        return self

    def tails(self) -> str:
        return "\n".join(
            f"--- {self.name} {self.runs} p{i} ---\n"
            + (self.logs / f"{self.name}{self.runs}-p{i}.err").read_text()[-2000:]
            for i in (0, 1)
        )

    def finish(self, timeout: float = 600) -> list[dict]:
        """Wait for a --once cluster to end; each process's summary."""
        summaries = []
        for p in self.procs:
            out, _ = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"a cluster process exited {p.returncode}\n{self.tails()}"
            summaries.append(json.loads(out[out.index(b"\n{") + 1 :] if not out.startswith(b"{") else out))
        return summaries

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(30)


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
@pytest.mark.xfail(
    reason="known defect, cause open: the 2-process risk cluster sometimes dies in Bytewax's send thread "
    "('Send thread panic') in both processes (2 of 4 cluster runs on 2026-12-07: fresh-ci and a benchmark), "
    "and its decisions after a kill differ from one process's (see the module doc)",
    strict=False,
)
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
        wait_until(lambda: _journal_count(env.state) >= total // 3, 600, "a third of the decisions", poll=0.02)
        os.kill(cluster.procs[0].pid, signal.SIGKILL)
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
    differ = sorted(k for k, v in _decided(topic).items() if v != single[k])
    if differ:  # found 2026-12-07: 9-13 of 365; not yet known whether the kill or the 2-message polls cause it
        pytest.xfail(f"{len(differ)} of {total} decisions differ from one process's (e.g. {differ[:3]})")
