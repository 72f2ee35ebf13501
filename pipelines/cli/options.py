"""What every `clearline` command shares: the consoles, the friendly-error wrapper,
tables for people beside --json for scripts, the options several commands take (--json,
each store's --state-dir, a cluster's -i/-a) and the progress bar.

Command modules (`pipelines/cli/*.py`) register the exceptions that mean "the user asked
for something that cannot be done" with `user_errors("module:Class", ...)`, so each area
keeps its error types to itself and the wrapper still turns them into one `error:` line.
Names, not classes: a raised exception's module is always imported already, so the
check costs nothing and `clearline --help` never imports Bytewax, Feast or MLflow.
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

from clearline.config import ConfigError

console = Console(stderr=True)
out = Console()

_USER_ERRORS: set[str] = {f"{ConfigError.__module__}:{ConfigError.__qualname__}"}


def user_errors(*names: str) -> None:
    """Declare exception types ("module:Class") whose message is meant for a person."""
    _USER_ERRORS.update(names)


def _is_user_error(exc: Exception) -> bool:
    for name in _USER_ERRORS:
        module, _, cls = name.partition(":")
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, cls)):
            return True
    return False


def friendly(fn):
    """Turn the project's known errors into `error: …` and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _is_user_error(exc):
                raise
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)  # one line, however long
            sys.exit(2)

    return wrapper


def emit(as_json: bool, data: dict, table: Table | None) -> None:
    """One JSON document on stdout for scripts, or a table for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif table is not None:
        out.print(table)


def kv_table(title: str, rows: dict) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k, v in rows.items():
        table.add_row(k.replace("_", " "), cell(v))
    return table


def cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


MONEY_COLUMNS = {"debit", "credit", "balance", "amount_minor", "running_balance"}


def frame_table(title: str, frame) -> Table:
    """A table for people: money columns as decimals of their row's currency."""
    from clearline.currency import minor_to_decimal

    table = Table(title=title, title_justify="left")
    for col in frame.columns:
        table.add_column(col.removesuffix("_minor"), justify="right" if frame[col].dtype.is_numeric() else "left")
    money = "currency" in frame.columns
    for row in frame.iter_rows(named=True):
        table.add_row(
            *(
                minor_to_decimal(int(v), row["currency"]) if money and k in MONEY_COLUMNS and v is not None else cell(v)
                for k, v in row.items()
            )
        )
    return table


# Options several commands take, declared once so a name, a default or a help text cannot
# drift between commands. click.option(...) builds a new Option each time it decorates.

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document on stdout.")


def cluster_options(fn):
    """-i/--process-id and -a/--addresses: this process's place in a Bytewax cluster."""
    fn = click.option(
        "-a",
        "--addresses",
        multiple=True,
        help="host:port of every process in the cluster, in order (repeat; with -i).",
    )(fn)
    return click.option(
        "-i", "--process-id", type=int, default=None, help="This process's index in the cluster (with -a)."
    )(fn)


# Each store's folder when --state-dir is not given (None on the command line, resolved by
# the functions below through the store's settings).
_RELATIVE = "relative to CLEARLINE_HOME or the working directory"
LEDGER_STATE = f"state_dir in configs/ledger.yaml, {_RELATIVE}"
RECON_STATE = f"intake.state_dir in configs/recon.yaml, {_RELATIVE}"
RISK_STATE = f"state_dir in configs/risk.yaml, {_RELATIVE}"


def state_dir_option(what: str, default: str):
    """--state-dir (dest state_dir, default None): `what` the folder is, and what the
    command uses when it is not given."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"{what} [default: {default}].",
    )


ledger_state_option = state_dir_option("Ledger state folder", LEDGER_STATE)
recon_state_option = state_dir_option(
    "Recon state folder: intake's validated lines and the variance store", RECON_STATE
)
risk_state_option = state_dir_option("Risk state folder", RISK_STATE)


def ledger_state_dir(state_dir: Path | None) -> Path:
    """The ledger state folder: the one given, else state_dir in configs/ledger.yaml."""
    from clearline.ledger import LedgerSettings

    return LedgerSettings.from_config(state_dir).state_dir


def recon_state_dir(state_dir: Path | None) -> Path:
    """The recon state folder (intake, the matcher, the variance store and its report):
    the one given, else intake.state_dir in configs/recon.yaml."""
    from clearline import config
    from clearline.recon import IntakeSettings

    return IntakeSettings.from_config(config.load("recon"), state_dir).state_dir


def risk_state_dir(state_dir: Path | None) -> Path:
    """The risk state folder: the one given, else state_dir in configs/risk.yaml."""
    from clearline import config

    return Path(state_dir) if state_dir else config.state_path(config.load("risk")["state_dir"])


def progress_bar(quiet: bool) -> Progress:
    """The progress bar of every long step, on stderr and gone when done; shows nothing
    when `quiet` (--json, whose stdout is the JSON document alone)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )
