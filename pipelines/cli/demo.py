"""`clearline demo`: the main job end to end, with an honest exit status."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from clearline.pipelines.cli.options import console, emit, friendly, json_option, kv_table, user_errors

user_errors("clearline.pipelines.demo:DemoStepFailed")


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Folder for the demo's world and reports.",
)
@click.option(
    "--days",
    type=int,
    default=540,
    show_default=True,
    help="Length of the world: enough for buyers' repayment histories and matured outcomes to train on.",
)
@click.option("--merchants", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@json_option
@friendly
def demo(out_dir, days, merchants, seed, as_json):
    """The main job end to end: generate a world, start Kafka, publish it, run the ledger,
    check and verify it, ingest the settlement reports and bank statements, run the
    reconciliation flow and score its variances against the world's truth, write the
    variance report, train and register the models, run the risk flow, backtest champion
    against challenger; then summarise what it did and where the reports are. Exits 1, with
    an `error:` line after the summary, when a promise in it is broken."""
    from clearline.pipelines import demo as job

    def shown(step: job.Step):
        return console.status(f"{step.doing}…") if not as_json else contextlib.nullcontext()

    summary = job.run(out_dir, days, merchants, seed, shown)
    emit(as_json, summary, kv_table("clearline demo", summary))
    broken = job.broken_promises(summary)
    if broken:
        console.print(f"[bold red]error:[/] demo promises broken: {'; '.join(broken)}", highlight=False, soft_wrap=True)
        sys.exit(1)
