"""`clearline init DIR`: a copy of the default configuration to start a deployment from,
as `feast init` and `dbt init` start a project."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from clearline import config
from clearline.pipelines.cli.options import console, emit, friendly, json_option, kv_table, user_errors

user_errors("clearline.pipelines.cli.configs:InitTargetNotEmpty")


class InitTargetNotEmpty(Exception):
    """The folder already holds configuration files; `init` never overwrites them."""


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@json_option
@friendly
def init(directory: Path, as_json: bool) -> None:
    """Write a copy of the default configuration into DIRECTORY. Point CLEARLINE_CONFIG_DIR
    (or --config-dir) at it and edit what your deployment needs."""
    files = sorted(p for p in config.default_dir().iterdir() if p.is_file() and p.suffix != ".py")
    clashes = [p.name for p in files if (directory / p.name).exists()]
    if clashes:
        raise InitTargetNotEmpty(
            f"{directory} already has {', '.join(clashes)}; init writes only into a folder without configuration files"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for p in files:
        shutil.copyfile(p, directory / p.name)
    report = {
        "directory": str(directory.absolute()),
        "files": [p.name for p in files],
        "use": f"export CLEARLINE_CONFIG_DIR={directory.absolute()}",
    }
    emit(as_json, report, kv_table("clearline init", report))
    if not as_json:
        console.print(
            f"configuration written; use it with [bold]export CLEARLINE_CONFIG_DIR={directory.absolute()}[/]"
            " or [bold]clearline --config-dir " + str(directory) + "[/]"
        )
