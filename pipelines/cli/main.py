"""`clearline`: the one command line for people and scripts.

Every command has --help; every command that reports figures has --json, which prints
one JSON document on stdout and nothing else there. Known failures (a bad option, a
missing world, a broker that will not start) end with a one-line `error:` and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.cli_support import console, emit, frame_table, friendly, kv_table, user_errors

user_errors("pipelines.demo:DemoStepFailed", "pipelines.broker:BrokerError", "pipelines.produce:WorldNotFound",
            "pipelines.world.generate:WorldOptionError", "pipelines.ledger_access:LedgerNotFound",
            "pipelines.flows.ledger_metrics:MetricsPortBusy", "pipelines.flows.flow_state:FlowStateError")


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
    emit(as_json, manifest, kv_table(f"world written to {out_dir}", summary))


# ------------------------------------------------------------------------------- kafka

@main.group()
def kafka() -> None:
    """Run the local Apache Kafka broker (KRaft, from Maven Central)."""


def _status_table(status: dict) -> Table:
    table = kv_table("kafka", {k: v for k, v in status.items() if k != "topics"})
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
    emit(as_json, status, _status_table(status))


@kafka.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def down(as_json):
    """Stop the broker this machine started. Harmless if it is not running."""
    from pipelines import broker
    status = broker.down()
    emit(as_json, status, kv_table("kafka", status))


@kafka.command()
@click.option("--json", "as_json", is_flag=True, help="Print the broker status as JSON.")
@friendly
def status(as_json):
    """Whether the broker answers, and its topics."""
    from pipelines import broker
    current = broker.status()
    emit(as_json, current, _status_table(current))


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
    emit(as_json, report, kv_table("produced", report))
    if report["failed"]:
        sys.exit(1)


# -------------------------------------------------------------------------------- demo

@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True, help="Folder for the demo's world and reports.")
@click.option("--days", type=int, default=540, show_default=True,
              help="Length of the world: enough for buyers' repayment histories and matured outcomes to train on.")
@click.option("--merchants", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@friendly
def demo(out_dir, days, merchants, seed, as_json):
    """The main job end to end: generate a world, start Kafka, publish it, run the ledger,
    check and verify it, ingest the settlement reports and bank statements, run the
    reconciliation flow and score its variances against the world's truth, write the
    variance report, train and register the models, run the risk flow, backtest champion
    against challenger; then summarise what it did and where the reports are."""
    from pipelines import demo as job

    def shown(step: job.Step):
        return console.status(f"{step.doing}…") if not as_json else contextlib.nullcontext()

    summary = job.run(out_dir, days, merchants, seed, shown)
    emit(as_json, summary, kv_table("clearline demo", summary))
    healthy = (not summary.get("failed_step") and summary.get("failed") == 0 and summary.get("invariants_hold")
               and summary.get("chain_verified"))
    if not healthy:
        sys.exit(1)


# ------------------------------------------------------------------------------ ledger

_state_dir = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                          help="Ledger state folder [default: state_dir in configs/ledger.yaml].")


def _ledger_dir(state_dir: Path | None) -> Path:
    from pipelines.flows.ledger import LedgerSettings
    return LedgerSettings.from_config(state_dir).state_dir


@main.group()
def ledger() -> None:
    """The double-entry ledger: run the flow, read balances, check and verify."""


@ledger.command("run")
@click.option("--once", is_flag=True, help="Stop when caught up with the end of every partition.")
@click.option("--topic", default=None, help="Topic to consume [default: configs/ledger.yaml].")
@click.option("--deadletter-topic", default=None, help="Where refused messages go [default: configs/ledger.yaml].")
@click.option("--metrics-port", type=int, default=None, help="Prometheus /metrics port, 0 for none [default: configs/ledger.yaml]; process i of a cluster adds i.")
@_state_dir
@click.option("-i", "--process-id", type=int, default=None, help="This process's index in a cluster.")
@click.option("-a", "--addresses", multiple=True, help="host:port of every process in the cluster, in order.")
@friendly
def ledger_run(once, topic, deadletter_topic, metrics_port, state_dir, process_id, addresses):
    """Consume payments.events into the ledger (Bytewax, recovery on). SIGTERM stops it
    cleanly; running it again resumes where it left off."""
    from pipelines.flows.ledger import LedgerSettings, run
    settings = LedgerSettings.from_config(state_dir, topic=topic, deadletter_topic=deadletter_topic, once=once)
    if metrics_port is not None:
        settings = dataclasses.replace(settings, metrics_port=metrics_port)
    if run(settings, process_id=process_id, addresses=list(addresses) or None):
        console.print("ledger flow stopped by signal after committing its last batch; run it again to resume")


def _as_of(value: str | None):
    from datetime import datetime, timezone
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or timestamp") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


@ledger.command()
@click.option("--as-of", default=None, help="Balances at this time (ISO 8601, UTC) [default: now].")
@click.option("--account", default=None, help="Only accounts whose key starts with this.")
@click.option("--tenant", default=None, help="Only this tenant's accounts.")
@_state_dir
@click.option("--json", "as_json", is_flag=True)
@friendly
def balances(as_of, account, tenant, state_dir, as_json):
    """Balances per account and currency (debit positive), from the latest snapshot."""
    from pipelines.ledger_access import snapshot
    frame = snapshot(_ledger_dir(state_dir)).balances(_as_of(as_of), account, tenant)
    emit(as_json, {"balances": frame.to_dicts()}, frame_table("balances", frame))


@ledger.command()
@click.argument("account")
@click.option("--from", "from_", default=None, help="From this time (ISO 8601).")
@click.option("--to", default=None, help="Up to this time (ISO 8601).")
@_state_dir
@click.option("--json", "as_json", is_flag=True)
@friendly
def statement(account, from_, to, state_dir, as_json):
    """Every posting to ACCOUNT with its running balance."""
    from pipelines.ledger_access import snapshot
    frame = snapshot(_ledger_dir(state_dir)).statement(account, _as_of(from_), _as_of(to))
    shown = frame.select("occurred_at", "event_id", "event_type", "debit", "credit", "balance", "currency")
    emit(as_json, {"account": account, "postings": frame.to_dicts()}, frame_table(f"statement of {account}", shown))


@ledger.command()
@_state_dir
@click.option("--json", "as_json", is_flag=True)
@friendly
def check(state_dir, as_json):
    """Invariants: debits = credits per currency, account floors, and offset accounting
    (consumed = posted + duplicate + dead-lettered). Exits 1 on any violation."""
    from pipelines.ledger_access import snapshot
    from recon.ledger import accounts, invariants
    snap = snapshot(_ledger_dir(state_dir))
    violations = invariants.check(snap, floor_of=accounts.floor_of, normal_side=accounts.normal_side)
    totals = snap.stats()["totals"]
    report = {"ok": not violations, "violations": [str(v) for v in violations], **totals}
    emit(as_json, report, kv_table("ledger check: " + ("all invariants hold" if not violations else f"{len(violations)} violations"), report))
    if violations:
        sys.exit(1)


@ledger.command()
@_state_dir
@click.option("--json", "as_json", is_flag=True)
@friendly
def verify(state_dir, as_json):
    """Recompute the hash chain of every posting; name the first bad link. Exits 1 if any."""
    from pipelines.ledger_access import snapshot, stores_if_free
    from recon.ledger import chain
    root = _ledger_dir(state_dir)
    with stores_if_free(root) as stores:
        sources = stores if stores is not None else [snapshot(root)]
        results = [chain.verify(s) for s in sources]
    bad = [str(r.first_bad) for r in results if not r.ok]
    report = {"ok": not bad, "source": "store" if stores is not None else "snapshot (the flow holds the store)",
              "postings": sum(r.postings for r in results), "chains": sum(r.partitions for r in results),
              "heads": [r.head for r in results], "first_bad_links": bad}
    emit(as_json, report, kv_table("ledger verify: " + ("chain intact" if not bad else "CHAIN BROKEN"), report))
    if bad:
        sys.exit(1)


@ledger.command()
@_state_dir
@click.option("--topic", default=None, help="Topic to replay [default: configs/ledger.yaml].")
@click.option("--json", "as_json", is_flag=True)
@friendly
def rebuild(state_dir, topic, as_json):
    """Replay the topic from offset 0 into a fresh store beside the current one and
    compare chain heads; they must be identical for the same consumed offsets."""
    import shutil
    import subprocess
    from pipelines.ledger_access import snapshot
    root = _ledger_dir(state_dir)
    before = snapshot(root).stats()
    fresh = root.with_name(root.name + ".rebuild")
    shutil.rmtree(fresh, ignore_errors=True)
    cmd = [sys.executable, "-m", "pipelines.cli", "ledger", "run", "--once", "--state-dir", str(fresh), "--metrics-port", "0"]
    subprocess.run(cmd + (["--topic", topic] if topic else []), check=True)
    after = snapshot(fresh).stats()
    same_input = before["totals"]["consumed"] == after["totals"]["consumed"]
    report = {"rebuilt_into": str(fresh), "head": before["head"], "rebuilt_head": after["head"],
              "identical": before["head"] == after["head"], "consumed": before["totals"]["consumed"],
              "rebuilt_consumed": after["totals"]["consumed"],
              "note": "" if same_input else "the topic has grown since the ledger last committed; heads cover different offsets"}
    emit(as_json, report, kv_table("ledger rebuild", report))
    if same_input and not report["identical"]:
        sys.exit(1)


from pipelines import cli_features; main.add_command(cli_features.features)  # noqa: E402,E702
from pipelines import cli_recon; main.add_command(cli_recon.recon)  # noqa: E402,E702
from pipelines import cli_models; main.add_command(cli_models.train); main.add_command(cli_models.models)  # noqa: E402,E702
from pipelines import cli_report; main.add_command(cli_report.report)  # noqa: E402,E702
from pipelines import cli_intake; main.add_command(cli_intake.ingest)  # noqa: E402,E702
from pipelines import cli_serve; main.add_command(cli_serve.serve)  # noqa: E402,E702
from pipelines import cli_risk; main.add_command(cli_risk.risk)  # noqa: E402,E702
from pipelines import cli_backtest; main.add_command(cli_backtest.backtest)  # noqa: E402,E702

if __name__ == "__main__":
    main()
