"""`clearline generate` and `clearline produce`: a synthetic world written, and its
events published to payments.events."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clearline.pipelines.cli.options import emit, friendly, json_option, kv_table, progress_bar, user_errors

user_errors(
    "clearline.pipelines.connectors.produce:WorldNotFound", "clearline.pipelines.world.generate:WorldOptionError"
)


def _generate(
    days: int, merchants: int, seed: int, out_dir: Path, rate: float | None, quiet: bool, freezes: Path | None = None
) -> dict:
    from clearline.freezes import NONE, Freezes, read_file
    from clearline.pipelines.world.generate import WorldOptions, generate

    held_by = Freezes.of(read_file(freezes)) if freezes else NONE

    steps = [
        "entities",
        "orders and payment lifecycles",
        "settlement, payouts and bank lines",
        "processor and bank reports, with discrepancies",
        "events in arrival order",
        "writing files",
    ]
    with progress_bar(quiet) as bar:
        task = bar.add_task("generating world", total=len(steps))
        done = {"n": 0}

        def step(name: str) -> None:
            bar.update(task, completed=done["n"], description=f"generating world: {name}")
            done["n"] += 1

        manifest = generate(WorldOptions(days, merchants, seed, rate, freezes=held_by), out_dir, progress=step)
        bar.update(task, completed=len(steps))
    return manifest


@click.command()
@click.option("--days", type=int, default=90, show_default=True, help="Length of the world in days.")
@click.option("--merchants", type=int, default=40, show_default=True, help="Number of merchants.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed; same seed, same files.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write the world to.",
)
@click.option(
    "--discrepancy-rate",
    type=float,
    default=None,
    help="Share of records given an injected discrepancy [default: configs/world.yaml].",
)
@click.option("--clean", is_flag=True, help="No injected discrepancies (same as --discrepancy-rate 0).")
@click.option(
    "--freezes",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Emergency freezes the platform's payout run honours, as the workbench publishes them "
    "(published/freezes.json): payouts they hold are payout.held events and leave the bank untouched.",
)
@json_option
@friendly
def generate(days, merchants, seed, out_dir, discrepancy_rate, clean, freezes, as_json):
    """Write a deterministic synthetic payments world: events, settlement reports, bank
    statements and the ground truth."""
    if clean and discrepancy_rate:
        raise click.BadParameter("--clean and a non-zero --discrepancy-rate contradict each other")
    manifest = _generate(
        days, merchants, seed, out_dir, 0.0 if clean else discrepancy_rate, quiet=as_json, freezes=freezes
    )
    summary = {
        k: manifest[k]
        for k in ("days", "merchants", "buyers", "orders", "events", "settlement_lines", "payouts", "bank_lines")
    }
    summary["held_payouts"] = manifest["events_by_type"].get("payout.held", 0)
    summary["discrepancies"] = sum(manifest["discrepancies"].values())
    summary["files"] = len(manifest["files"])
    emit(as_json, manifest, kv_table(f"world written to {out_dir}", summary))


def _produce(world: Path, rate: float | None, quiet: bool) -> dict:
    from clearline.pipelines.connectors.produce import count_events, produce_world

    total = count_events(world)
    with progress_bar(quiet) as bar:
        task = bar.add_task("producing to payments.events", total=total)
        report = produce_world(world, rate, on_progress=lambda n: bar.update(task, completed=n))
    return report.as_dict()


@click.command()
@click.argument("world", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=None,
    help="Cap on messages per second [default: as fast as the broker takes them].",
)
@json_option
@friendly
def produce(world, rate, as_json):
    """Publish a generated world's events to payments.events, signed and keyed by merchant."""
    report = _produce(world, rate, quiet=as_json)
    emit(as_json, report, kv_table("produced", report))
    if report["failed"]:
        sys.exit(1)
