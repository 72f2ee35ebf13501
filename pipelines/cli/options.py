"""What every `clearline` command shares: the consoles, the friendly-error wrapper, and
tables for people beside --json for scripts.

Command modules (`pipelines/cli_*.py`) register the exceptions that mean "the user asked
for something that cannot be done" with `user_errors("module:Class", ...)`, so each area
keeps its error types to itself and the wrapper still turns them into one `error:` line.
Names, not classes: a raised exception's module is always imported already, so the
check costs nothing and `clearline --help` never imports Bytewax, Feast or MLflow.
"""

from __future__ import annotations

import functools
import json
import sys

import click
from rich.console import Console
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
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
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
