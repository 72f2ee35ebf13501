"""What every production Bytewax flow here does with its state folder before it starts:
claim the folder for one cluster shape, make Bytewax's recovery partitions once, and
check that the topic exists. Shared by the ledger flow and the risk flow.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from clearline.pipelines.connectors.kafka_source import PartitionSource


class FlowStateError(RuntimeError):
    """The state folder or the topic does not fit this run; the message says how."""


def claim_shape(state_dir: Path, processes: int) -> None:
    """A state folder belongs to one cluster shape. Bytewax assigns partitions by the
    number of processes, and each shard's store only knows the partitions it owned, so
    running the same folder with another count would split a partition's history across
    shards. Refuse instead."""
    path = state_dir / "cluster.json"
    state_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        recorded = json.loads(path.read_text())["processes"]
        if recorded != processes:
            raise FlowStateError(
                f"{state_dir} was built by {recorded} process(es); this run has {processes}. "
                f"Run it with {recorded}, or rebuild into a new --state-dir with {processes}"
            )
        return
    tmp = path.with_name(f"cluster.json.{os.getpid()}")
    tmp.write_text(json.dumps({"processes": processes}))
    os.replace(tmp, path)


def recovery_dir(state_dir: Path, partitions: int, first: bool) -> Path:
    """Bytewax's recovery partitions, made once, atomically, by the first process; the
    others wait for them (two processes creating them at once lock each other out)."""
    from bytewax.recovery import init_db_dir

    recovery = state_dir / "recovery"
    if first and not recovery.exists():
        tmp = state_dir / f"recovery.tmp-{os.getpid()}"
        tmp.mkdir(parents=True)
        init_db_dir(tmp, partitions)
        os.rename(tmp, recovery)
    deadline = time.monotonic() + 60
    while not recovery.exists():
        if time.monotonic() > deadline:
            raise FlowStateError(f"{recovery} did not appear within 60 s: is process 0 of the cluster running?")
        time.sleep(0.2)
    return recovery


def require_topic(bootstrap: str, topic: str) -> None:
    try:
        PartitionSource(bootstrap, topic, once=True).list_parts()
    except RuntimeError as exc:
        raise FlowStateError(str(exc)) from None
