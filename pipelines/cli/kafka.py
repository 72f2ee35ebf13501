"""`clearline kafka up | down | status`: the local Apache Kafka broker."""

from __future__ import annotations

import click
from rich.table import Table

from clearline.pipelines.cli.options import console, emit, friendly, json_option, kv_table, user_errors

user_errors("clearline.pipelines.broker:BrokerError")


@click.group()
def kafka() -> None:
    """Run the local Apache Kafka broker (KRaft, from Maven Central)."""


def _status_table(status: dict) -> Table:
    table = kv_table("kafka", {k: v for k, v in status.items() if k != "topics"})
    for name, parts in sorted((status.get("topics") or {}).items()):
        table.add_row(f"topic {name}", f"{parts} partitions")
    return table


@kafka.command()
@json_option
@friendly
def up(as_json):
    """Install (once), start the broker and create the topics. Harmless if already up."""
    from clearline.pipelines import broker

    with console.status("starting Kafka (installs from Maven Central on first use)…"):
        status = broker.up()
    emit(as_json, status, _status_table(status))


@kafka.command()
@json_option
@friendly
def down(as_json):
    """Stop the broker this machine started. Harmless if it is not running."""
    from clearline.pipelines import broker

    status = broker.down()
    emit(as_json, status, kv_table("kafka", status))


@kafka.command()
@json_option
@friendly
def status(as_json):
    """Whether the broker answers, and its topics."""
    from clearline.pipelines import broker

    current = broker.status()
    emit(as_json, current, _status_table(current))
