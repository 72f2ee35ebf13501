"""`clearline ledger run | balances | statement | check | verify | rebuild`."""

from __future__ import annotations

import dataclasses
import sys

import click

from clearline.pipelines.cli.options import (
    cluster_options,
    console,
    emit,
    frame_table,
    friendly,
    json_option,
    kv_table,
    ledger_state_dir,
    ledger_state_option,
    user_errors,
)

user_errors(
    "clearline.ledger.access:LedgerNotFound",
    "clearline.ledger.metrics:MetricsPortBusy",
    "clearline.pipelines.flows.runner:FlowStateError",
)


@click.group()
def ledger() -> None:
    """The double-entry ledger: run the flow, read balances, check and verify."""


@ledger.command("run")
@click.option("--once", is_flag=True, help="Stop when caught up with the end of every partition.")
@click.option("--topic", default=None, help="Topic to consume [default: configs/ledger.yaml].")
@click.option("--deadletter-topic", default=None, help="Where refused messages go [default: configs/ledger.yaml].")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Prometheus /metrics port, 0 for none [default: configs/ledger.yaml]; process i of a cluster adds i.",
)
@ledger_state_option
@cluster_options
@friendly
def ledger_run(once, topic, deadletter_topic, metrics_port, state_dir, process_id, addresses):
    """Consume payments.events into the ledger (Bytewax, recovery on). SIGTERM stops it
    cleanly; running it again resumes where it left off."""
    from clearline.ledger import LedgerSettings
    from clearline.pipelines.flows.ledger import run

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
@ledger_state_option
@json_option
@friendly
def balances(as_of, account, tenant, state_dir, as_json):
    """Balances per account and currency (debit positive), from the latest snapshot."""
    from clearline.ledger.access import snapshot

    frame = snapshot(ledger_state_dir(state_dir)).balances(_as_of(as_of), account, tenant)
    emit(as_json, {"balances": frame.to_dicts()}, frame_table("balances", frame))


@ledger.command()
@click.argument("account")
@click.option("--from", "from_", default=None, help="From this time (ISO 8601).")
@click.option("--to", default=None, help="Up to this time (ISO 8601).")
@ledger_state_option
@json_option
@friendly
def statement(account, from_, to, state_dir, as_json):
    """Every posting to ACCOUNT with its running balance."""
    from clearline.ledger.access import snapshot

    frame = snapshot(ledger_state_dir(state_dir)).statement(account, _as_of(from_), _as_of(to))
    shown = frame.select("occurred_at", "event_id", "event_type", "debit", "credit", "balance", "currency")
    emit(as_json, {"account": account, "postings": frame.to_dicts()}, frame_table(f"statement of {account}", shown))


@ledger.command()
@ledger_state_option
@json_option
@friendly
def check(state_dir, as_json):
    """Invariants: debits = credits per currency, account floors, and offset accounting
    (consumed = posted + duplicate + dead-lettered). Exits 1 on any violation."""
    from clearline.ledger import accounts, invariants
    from clearline.ledger.access import snapshot

    snap = snapshot(ledger_state_dir(state_dir))
    violations = invariants.check(snap, floor_of=accounts.floor_of, normal_side=accounts.normal_side)
    totals = snap.stats()["totals"]
    report = {"ok": not violations, "violations": [str(v) for v in violations], **totals}
    emit(
        as_json,
        report,
        kv_table(
            "ledger check: " + ("all invariants hold" if not violations else f"{len(violations)} violations"), report
        ),
    )
    if violations:
        sys.exit(1)


@ledger.command()
@ledger_state_option
@json_option
@friendly
def verify(state_dir, as_json):
    """Recompute the hash chain of every posting; name the first bad link. Exits 1 if any."""
    from clearline.ledger import chain
    from clearline.ledger.access import snapshot, stores_if_free

    root = ledger_state_dir(state_dir)
    with stores_if_free(root) as stores:
        sources = stores if stores is not None else [snapshot(root)]
        results = [chain.verify(s) for s in sources]
    bad = [str(r.first_bad) for r in results if not r.ok]
    report = {
        "ok": not bad,
        "source": "store" if stores is not None else "snapshot (the flow holds the store)",
        "postings": sum(r.postings for r in results),
        "chains": sum(r.partitions for r in results),
        "heads": [r.head for r in results],
        "first_bad_links": bad,
    }
    emit(as_json, report, kv_table("ledger verify: " + ("chain intact" if not bad else "CHAIN BROKEN"), report))
    if bad:
        sys.exit(1)


@ledger.command()
@ledger_state_option
@click.option("--topic", default=None, help="Topic to replay [default: configs/ledger.yaml].")
@json_option
@friendly
def rebuild(state_dir, topic, as_json):
    """Replay the topic from offset 0 into a fresh store beside the current one and
    compare chain heads; they must be identical for the same consumed offsets."""
    import shutil
    import subprocess

    from clearline.ledger.access import snapshot

    root = ledger_state_dir(state_dir)
    before = snapshot(root).stats()
    fresh = root.with_name(root.name + ".rebuild")
    shutil.rmtree(fresh, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "clearline.pipelines.cli",
        "ledger",
        "run",
        "--once",
        f"--state-dir={fresh}",
        "--metrics-port",
        "0",
    ]
    subprocess.run(cmd + (["--topic", topic] if topic else []), check=True)
    after = snapshot(fresh).stats()
    same_input = before["totals"]["consumed"] == after["totals"]["consumed"]
    report = {
        "rebuilt_into": str(fresh),
        "head": before["head"],
        "rebuilt_head": after["head"],
        "identical": before["head"] == after["head"],
        "consumed": before["totals"]["consumed"],
        "rebuilt_consumed": after["totals"]["consumed"],
        "note": ""
        if same_input
        else "the topic has grown since the ledger last committed; heads cover different offsets",
    }
    emit(as_json, report, kv_table("ledger rebuild", report))
    if same_input and not report["identical"]:
        sys.exit(1)
