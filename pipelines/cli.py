"""`clearline`: the one command line for people and scripts.

Every command has --help; every command that reports figures has --json, which prints
one JSON document on stdout and nothing else there. Known failures (a bad option, a
missing world, a broker that will not start) end with a one-line `error:` and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.config import ConfigError

console = Console(stderr=True)
out = Console()


def _known_errors() -> tuple[type[Exception], ...]:
    from pipelines.broker import BrokerError
    from pipelines.produce import WorldNotFound
    from pipelines.world.generate import WorldOptionError
    return (ConfigError, BrokerError, WorldNotFound, WorldOptionError)


def friendly(fn):
    """Turn the project's known errors into `error: …` and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _known_errors() as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(2)
    return wrapper


def _emit(as_json: bool, data: dict, table: Table | None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif table is not None:
        out.print(table)


def _kv_table(title: str, rows: dict) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k, v in rows.items():
        table.add_row(k.replace("_", " "), _cell(v))
    return table


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Clearline: streaming risk and reconciliation for B2B payments."""


# ---------------------------------------------------------------------------- generate

def _generate(days: int, merchants: int, seed: int, out_dir: Path, rate: float | None, quiet: bool) -> dict:
    from pipelines.world.generate import WorldOptions, generate
    steps = ["entities", "orders and payment lifecycles", "settlement, payouts and bank lines",
             "processor and bank reports, with discrepancies", "events in arrival order", "writing files"]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("generating world", total=len(steps))
        done = {"n": 0}

        def step(name: str) -> None:
            bar.update(task, completed=done["n"], description=f"generating world: {name}")
            done["n"] += 1
        manifest = generate(WorldOptions(days, merchants, seed, rate), out_dir, progress=step)
        bar.update(task, completed=len(steps))
    return manifest


@main.command()
@click.option("--days", type=int, default=90, show_default=True, help="Length of the world in days.")
@click.option("--merchants", type=int, default=40, show_default=True, help="Number of merchants.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed; same seed, same files.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write the world to.")
@click.option("--discrepancy-rate", type=float, default=None, help="Share of records given an injected discrepancy [default: configs/world.yaml].")
@click.option("--clean", is_flag=True, help="No injected discrepancies (same as --discrepancy-rate 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@friendly
def generate(days, merchants, seed, out_dir, discrepancy_rate, clean, as_json):
    """Write a deterministic synthetic payments world: events, settlement reports, bank
    statements and the ground truth."""
    if clean and discrepancy_rate:
        raise click.BadParameter("--clean and a non-zero --discrepancy-rate contradict each other")
    manifest = _generate(days, merchants, seed, out_dir, 0.0 if clean else discrepancy_rate, quiet=as_json)
    summary = {k: manifest[k] for k in ("days", "merchants", "buyers", "orders", "events", "settlement_lines", "payouts", "bank_lines")}
    summary["discrepancies"] = sum(manifest["discrepancies"].values())
    summary["files"] = len(manifest["files"])
    _emit(as_json, manifest, _kv_table(f"world written to {out_dir}", summary))


# ------------------------------------------------------------------------------- kafka

@main.group()
def kafka() -> None:
    """Run the local Apache Kafka broker (KRaft, from Maven Central)."""


def _status_table(status: dict) -> Table:
    table = _kv_table("kafka", {k: v for k, v in status.items() if k != "topics"})
    for name, parts in sorted((status.get("topics") or {}).items()):
        table.add_row(f"topic {name}", f"{parts} partitions")
    return table


@kafka.command()
@click.option("--json", "as_json", is_flag=True, help="Print the broker status as JSON.")
@friendly
def up(as_json):
    """Install (once), start the broker and create the topics. Harmless if already up."""
    from pipelines import broker
    with console.status("starting Kafka (installs from Maven Central on first use)…"):
        status = broker.up()
    _emit(as_json, status, _status_table(status))


@kafka.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def down(as_json):
    """Stop the broker this machine started. Harmless if it is not running."""
    from pipelines import broker
    status = broker.down()
    _emit(as_json, status, _kv_table("kafka", status))


@kafka.command()
@click.option("--json", "as_json", is_flag=True, help="Print the broker status as JSON.")
@friendly
def status(as_json):
    """Whether the broker answers, and its topics."""
    from pipelines import broker
    current = broker.status()
    _emit(as_json, current, _status_table(current))


# ----------------------------------------------------------------------------- produce

def _produce(world: Path, rate: float | None, quiet: bool) -> dict:
    from pipelines.produce import count_events, produce_world
    total = count_events(world)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("producing to payments.events", total=total)
        report = produce_world(world, rate, on_progress=lambda n: bar.update(task, completed=n))
    return report.as_dict()


@main.command()
@click.argument("world", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rate", type=click.FloatRange(min=1), default=None, help="Cap on messages per second [default: as fast as the broker takes them].")
@click.option("--json", "as_json", is_flag=True, help="Print the delivery counts as JSON.")
@friendly
def produce(world, rate, as_json):
    """Publish a generated world's events to payments.events, signed and keyed by merchant."""
    report = _produce(world, rate, quiet=as_json)
    _emit(as_json, report, _kv_table("produced", report))
    if report["failed"]:
        sys.exit(1)


# -------------------------------------------------------------------------------- demo

@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True, help="Folder for the demo's world and reports.")
@click.option("--days", type=int, default=120, show_default=True)
@click.option("--merchants", type=int, default=40, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@friendly
def demo(out_dir, days, merchants, seed, as_json):
    """The main job end to end: generate a world, start Kafka, produce it, summarise."""
    from pipelines import broker
    manifest = _generate(days, merchants, seed, out_dir / "world", None, quiet=as_json)
    with console.status("starting Kafka…"):
        kafka_status = broker.up()
    produced = _produce(out_dir / "world", None, quiet=as_json)
    summary = {
        "world": str(out_dir / "world"), "days": days, "merchants": merchants, "buyers": manifest["buyers"],
        "orders": manifest["orders"], "events": manifest["events"],
        "settlement_files": sum(1 for f in manifest["files"] if f.startswith("settlements/")),
        "bank_statements": sum(1 for f in manifest["files"] if f.startswith("bank/")),
        "injected_discrepancies": sum(manifest["discrepancies"].values()),
        "kafka": kafka_status.get("bootstrap"), "delivered": produced["delivered"], "failed": produced["failed"],
        "produce_events_per_second": produced["events_per_second"],
    }
    _emit(as_json, summary, _kv_table("clearline demo", summary))
    if produced["failed"]:
        sys.exit(1)
