"""What the model commands (`clearline train`, `models decide`, `backtest`) share: where
their events come from, the registry they talk to, and how they read a time.

One module so the commands cannot drift apart: a world or the ledger's archive picked by
the same two options with the same errors, the same MLflow store, the same reading of
ISO 8601 times. Wiring only, like the commands themselves.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from clearline import config
from clearline.pipelines.cli.options import LEDGER_STATE, ledger_state_dir, state_dir_option, user_errors

user_errors("clearline.pipelines.cli.model_sources:NoTrainingInput")


class NoTrainingInput(Exception):
    """Neither a world nor the ledger's event archive to read events from."""


def open_registry():
    """The MLflow registry configured in configs/models.yaml (or MLFLOW_TRACKING_URI)."""
    import logging

    from clearline.models import Registry, RegistrySettings

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO chatter is not for people at a terminal
    return Registry(RegistrySettings.from_config(config.load("models"), config.home()))


def source_options(fn):
    """--world and --state-dir: the two places a command's events can come from."""
    fn = state_dir_option("Without --world: the ledger state folder whose event archive to read", LEDGER_STATE)(fn)
    return click.option(
        "--world",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="A generated world [default: the ledger flow's event archive].",
    )(fn)


def events_source(world: Path | None, state_dir: Path | None) -> Path:
    """The world folder, or else the ledger flow's event archive, checked to hold events."""
    if world is not None and state_dir is not None:
        raise click.BadParameter("--world and --state-dir name two different sources; give one")
    if world is not None:
        if not (world / "events" / "events.parquet").is_file():
            raise NoTrainingInput(
                f"{world}: not a generated world (no events/events.parquet); "
                "make one with `clearline generate --out DIR`"
            )
        return world
    archive = ledger_state_dir(state_dir) / "archive"
    if not any(archive.glob("event_date=*/*.parquet")):
        raise NoTrainingInput(
            f"no event archive at {archive}: run the ledger flow first "
            "(`clearline ledger run --once`) or train on a world with --world DIR"
        )
    return archive


def world_truth(world: Path | None):
    """The world's true order outcomes (a Polars frame), or None: an archive has no truth."""
    import polars as pl

    truth_file = None if world is None else world / "truth" / "orders.parquet"
    return pl.read_parquet(truth_file) if truth_file is not None and truth_file.is_file() else None


def instant(value: str, option: str) -> datetime:
    """An ISO 8601 timestamp or date given to `option`, UTC when it names no zone."""
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 timestamp or date", param_hint=option) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
