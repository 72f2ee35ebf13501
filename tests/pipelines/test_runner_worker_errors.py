"""A worker's error in a cluster is said, not lost: Bytewax 0.21 raises only "Send thread
panic" in every process of a cluster whose worker failed (bytewax#318), and until
2026-12-07 that was all a risk cluster printed when a journal open failed. `execute` now
prints the worker's own error above it. Two real processes, a toy flow, no broker."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from clearline.pipelines.flows.runner import recovery_dir
from tests.pipelines.ledger_harness import free_ports

FLOW = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import bytewax.operators as op
    from bytewax.connectors.stdio import StdOutSink
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSource

    from clearline.pipelines.flows.runner import Recovery, execute

    process, folder, addresses = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]

    def checked(x):
        if x >= 50 and process == 1:
            raise ValueError(f"item {x} refused in process 1")
        return x

    flow = Dataflow("toy")
    items = op.redistribute("spread", op.input("items", flow, TestingSource(range(200))))
    op.output("out", op.map("check", items, checked), StdOutSink())
    execute(flow, folder, Recovery(1, 5.0, 0.0), process, addresses)
    """
)


def test_a_cluster_worker_s_error_is_printed_above_the_send_thread_panic(tmp_path):
    folder = recovery_dir(tmp_path / "state", 1, first=True)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FLOW, str(i), str(folder), *addresses],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode != 0 for p in procs), errs  # the cluster failed, in both processes
    assert re.search(r"ValueError: item \d+ refused in process 1", errs[1]), errs[1]  # said where it happened
    assert errs[1].count("a worker's error, lost under") == 1, errs[1]  # once, its whole chain
    assert "Send thread panic" in errs[1]  # ... above what Bytewax raises
