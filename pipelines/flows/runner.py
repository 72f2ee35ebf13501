"""How every production Bytewax flow here runs, once for the three of them: claim the state
folder for one cluster shape, make Bytewax's recovery partitions once, check the topics,
let SIGTERM and SIGINT drain the sources, then run the dataflow with recovery on.

A flow calls `prepare`, does what is its own (the risk flow opens Feast and loads its
models, the recon flow ingests its inbox), then `execute`.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import bytewax.errors
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

from clearline import config
from clearline.pipelines.connectors.kafka_source import STOP, PartitionSource

# The flows make millions of short-lived records that reference counting frees (they
# hold no cycles); at the default thresholds (700 allocations) the cyclic collector
# walks every live object of the batch in hand over and over: ~40 % of admission.
GC_THRESHOLDS = (100_000, 50, 1000)


@dataclass(frozen=True)
class Recovery:
    """A flow's recovery settings (the `recovery:` section of its config file)."""

    partitions: int
    snapshot_interval_s: float
    backup_interval_s: float

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Recovery:
        return cls(
            config.typed(section, "partitions", int),
            config.typed(section, "snapshot_interval_s", float),
            config.typed(section, "backup_interval_s", float),
        )


def prepare(
    state_dir: Path,
    recovery: Recovery,
    bootstrap: str,
    topics: Iterable[str],
    process_id: int | None,
    addresses: list[str] | None,
    gc_thresholds: tuple[int, int, int] = GC_THRESHOLDS,
) -> Path:
    """Everything before the dataflow starts; returns the recovery folder. `gc_thresholds`
    are the cyclic collector's for the run (a flow whose live batch is bigger passes its own)."""
    gc.set_threshold(*gc_thresholds)
    claim_shape(state_dir, len(addresses) if addresses else 1)
    folder = recovery_dir(state_dir, recovery.partitions, first=not process_id)
    for topic in topics:
        require_topic(bootstrap, topic)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: STOP.set())
    return folder


def execute(
    flow: Dataflow, folder: Path, recovery: Recovery, process_id: int | None, addresses: list[str] | None
) -> bool:
    """Run `flow` in this process (one worker; a cluster when `addresses` are given) until
    its sources end: caught up (`once`) or drained after a signal. True if a signal
    stopped it."""
    bytewax.errors.BytewaxRuntimeError = WorkerError  # see WorkerError
    try:
        cli_main(
            flow,
            workers_per_process=1,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=recovery.snapshot_interval_s),
            recovery_config=RecoveryConfig(folder, timedelta(seconds=recovery.backup_interval_s)),
        )
    except BaseException as exc:  # a Rust panic is a BaseException
        if not isinstance(exc, WorkerError):
            causes = {id(err.__cause__) for err in WorkerError.made}
            for err in WorkerError.made:
                if id(err) not in causes:  # each chain once, from its outermost wrapper
                    said = "".join(traceback.format_exception(err))
                    sys.stderr.write(f"{said}(above: a worker's error, lost under)\n")
        raise
    return STOP.is_set()


class WorkerError(bytewax.errors.BytewaxRuntimeError):
    """Bytewax's wrapper of an error from a worker's Python code, kept as it is made.

    Run as a cluster, Bytewax 0.21 loses a worker's error: the worker's panic poisons a
    Timely queue, the TCP send thread panics too, and that panic ("Send thread panic") is
    what `cli_main` raises, in this process and its peers, the error never printed
    (bytewax#318). Bytewax's Rust side finds the wrapper class by its name in
    `bytewax.errors` when it first needs it, so this class, put there before the run,
    sees every one made, and `execute` prints them when the run raises something else."""

    made: ClassVar[list[WorkerError]] = []

    def __init__(self, *args: object):
        super().__init__(*args)
        WorkerError.made.append(self)


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
