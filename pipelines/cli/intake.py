"""`clearline ingest`: settlement reports and bank statements into reconciliation.

    clearline ingest PATH... [--json]      files or folders: validate, store, publish
    clearline ingest --watch DIR [--once]  the inbox: poll DIR until SIGTERM / Ctrl-C

Each file is detected by content, parsed, normalised and checked by its format's Great
Expectations suite; good lines go to the Parquet store under the recon state folder and
to `payments.settlements`, a bad file to the quarantine with a report naming rows and
rules. A file whose content intake already holds (the same processor line ids, the same
bank statements, saying the same), whatever its bytes or name, is a no-op said once as
"received again"; a file that partly overlaps brings in only its new lines. Exit status 1 when any file was
quarantined or could not be published (not for a watcher stopped by SIGTERM or Ctrl-C:
it reports its files as they come).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections import Counter
from pathlib import Path

import click
from rich.table import Table

from clearline.pipelines.cli.options import (
    console,
    emit,
    friendly,
    json_option,
    kv_table,
    out,
    progress_bar,
    recon_state_option,
    user_errors,
)

user_errors("clearline.pipelines.cli.intake:IngestInputError", "clearline.recon.intake.ingest:IntakeConfigError")


class IngestInputError(ValueError):
    """The command was given nothing it can ingest."""


def _files(paths: tuple[Path, ...]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            found.append(path)
        else:
            raise IngestInputError(f"no such file or folder: {path}")
    if not found:
        raise IngestInputError(f"no files under {', '.join(map(str, paths))}")
    return found


def _intake(state_dir: Path | None, publish: bool):
    from clearline import config
    from clearline.recon import Intake, IntakeSettings

    settings = IntakeSettings.from_config(config.load("recon"), state_dir)
    producer = None
    if publish:
        from clearline.pipelines.connectors.produce import producer as make_producer

        producer = make_producer(settings.delivery_timeout_seconds)
    return Intake(settings, producer)


_STATUSES = ("accepted", "received_again", "quarantined", "failed")


def _listed(outcomes, statuses: tuple[str, ...]) -> list[dict]:
    return [
        {"file": o.path, "status": o.status, "reason": o.reason, "kept_as": o.kept_as}
        for o in outcomes
        if o.status in statuses
    ]


def summary(outcomes) -> dict:
    statuses = Counter(o.status for o in outcomes)
    lines: Counter[str] = Counter()
    for o in outcomes:
        if o.status == "accepted":
            lines[o.format] += o.lines
    return {
        "files": len(outcomes),
        **{s: statuses.get(s, 0) for s in _STATUSES},
        "lines_by_format": dict(sorted(lines.items())),
        "lines_already_held": sum(o.already_held for o in outcomes),
        "problems": _listed(outcomes, ("quarantined", "failed")),
        "received_again_files": _listed(outcomes, ("received_again",)),
    }


def _show(report: dict, as_json: bool, outcomes) -> None:
    if as_json:
        emit(True, {**report, "outcomes": [o.as_dict() for o in outcomes]}, None)
        return
    counts = {k.replace("_", " "): report[k] for k in ("files", *_STATUSES)}
    emit(
        False,
        {},
        kv_table(
            "intake",
            {
                **counts,
                "lines by format": report["lines_by_format"],
                "lines already held": report["lines_already_held"],
            },
        ),
    )
    for p in report["received_again_files"]:  # one line each, whole: the reason names the file first taken in
        out.print(f"received again  {Path(p['file']).name}  ({p['reason']})", highlight=False, soft_wrap=True)
    if report["problems"]:
        table = Table(title="not accepted", title_justify="left", show_lines=True)
        for column in ("file", "status", "reason", "kept as"):
            table.add_column(column, overflow="fold")
        for p in report["problems"]:
            table.add_row(Path(p["file"]).name, p["status"], p["reason"] or "", p["kept_as"] or "")
        out.print(table)


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--watch",
    "inbox",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Watch this inbox folder: ingest files as they arrive, move them to processed/ or the quarantine.",
)
@click.option("--once", is_flag=True, help="With --watch: process what is in the inbox now, then exit.")
@recon_state_option
@click.option("--no-publish", is_flag=True, help="Do not publish to Kafka (lines still go to the Parquet store).")
@json_option
@friendly
def ingest(paths, inbox, once, state_dir, no_publish, as_json):
    """Ingest processor settlement reports and bank statements (BAI2, camt.053, MT940)."""
    if inbox is None and not paths:
        raise IngestInputError("give files or folders to ingest, or --watch DIR")
    if inbox is not None and paths:
        raise IngestInputError("give either files to ingest or --watch DIR, not both")
    if once and inbox is None:
        raise IngestInputError("--once goes with --watch DIR")
    intake = _intake(state_dir, not no_publish)
    outcomes = (
        _watch(intake, inbox, once, as_json) if inbox is not None else _ingest_files(intake, _files(paths), as_json)
    )
    _show(summary(outcomes), as_json, outcomes)
    watching = inbox is not None and not once  # a watcher stopped on purpose has done its job
    if not watching and any(o.status in ("quarantined", "failed") for o in outcomes):
        sys.exit(1)


def _ingest_files(intake, files: list[Path], quiet: bool):
    with progress_bar(quiet) as bar:
        task = bar.add_task("reading, validating, publishing", total=len(files))
        return intake.ingest(files, on_done=lambda outcome: bar.advance(task))


def _watch(intake, inbox: Path, once: bool, quiet: bool):
    """The inbox loop; SIGTERM and Ctrl-C end it after the files in hand are done."""
    from clearline.recon import watch

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def said(outcomes) -> None:
        if not quiet:
            for o in outcomes:
                console.print(
                    f"{o.status.replace('_', ' '):<14} {Path(o.path).name}" + (f"  ({o.reason})" if o.reason else ""),
                    highlight=False,
                )

    if not quiet and not once:
        console.print(f"watching {inbox} (Ctrl-C or SIGTERM to stop)")
    try:
        return watch(intake, inbox, stop, once=once, on_outcomes=said)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
