"""`clearline`: the one command line for people and scripts.

Every command has --help; every command that reports figures has --json, which prints
one JSON document on stdout and nothing else there. Known failures (a bad option, a
missing world, a broker that will not start) end with a one-line `error:` and a non-zero
exit, never a traceback.

One module per command group, each registering its own commands below; what they share
(the consoles, the error wrapper, options such as --json and --state-dir) is declared
once in `options`. Command modules import their area lazily, inside the command, so
`clearline --help` never imports Bytewax, Feast or MLflow.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import signal
from pathlib import Path

import click

from clearline.pipelines.cli import (
    backtest,
    configs,
    contract,
    demo,
    features,
    intake,
    kafka,
    ledger,
    models,
    recon,
    report,
    risk,
    serve,
    workbench,
    world,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    envvar="CLEARLINE_CONFIG_DIR",
    show_envvar=True,
    help="Folder of configuration files [default: the defaults shipped with Clearline]; "
    "`clearline init DIR` writes a copy to start from.",
)
def main(config_dir: Path | None) -> None:
    """Clearline: streaming risk and reconciliation for B2B payments."""
    # numpy asks the kernel for huge pages for its large arrays. When memory is fragmented
    # (after another large job) the kernel spends its time on them: the point-in-time join of
    # 10 M rows took 6.1 s instead of 2.9, 4.5 s of it in the kernel against 1.3-1.6 s
    # (bench/backtest_pit.py, quiet machine, 2026-12-07; under load 3.6-6.2 s against
    # 1.7-2.5). Without the advice it takes 3.0-3.1 s every time. Set here, before any command
    # imports numpy, and inherited by the processes commands start; a value given wins.
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    # `kill -USR1 <pid>` prints every thread's Python stack to stderr and the command goes
    # on: how a flow that has gone quiet is asked where it waits (the broker-restart test
    # asks it so when a flow it waits for makes no progress). A stderr that is no file (a
    # command run in process, by click's test runner or a notebook) has nowhere to print it.
    with contextlib.suppress(io.UnsupportedOperation, ValueError):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    if config_dir is not None:
        # Through the environment, so the flows' worker processes and the commands a
        # command starts (`ledger rebuild`, the demo's steps) read the same folder.
        os.environ["CLEARLINE_CONFIG_DIR"] = str(config_dir.absolute())


for command in (
    configs.init,
    contract.contract,
    world.generate,
    world.produce,
    kafka.kafka,
    ledger.ledger,
    intake.ingest,
    recon.recon,
    report.report,
    features.features,
    models.train,
    models.models,
    risk.risk,
    serve.serve,
    backtest.backtest,
    demo.demo,
    workbench.workbench,
):
    main.add_command(command)
