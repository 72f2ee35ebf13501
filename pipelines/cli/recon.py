"""`clearline recon`: reconcile the ledger against processor reports and bank statements.

    clearline recon [--from D1] [--to D2] [--archive DIR] [--state-dir DIR]
                                         batch run over stored inputs -> variance store
    clearline recon --world DIR [...]    the same over a generated world's files
    clearline recon score --truth FILE --world DIR   precision and recall per category
    clearline recon run [--once] [--inbox DIR] [--state-dir DIR]
                                         the streaming matcher (clearline.pipelines.flows.recon)
    clearline recon resolve VARIANCE_ID --note TEXT [--assign WHO]
    clearline recon list [--status open|assigned|watched|resolved] [--category C]

While `recon run` is running it owns the variance store: `resolve` then queues the
request for the flow to apply (within its advance interval), and `list` reads the
snapshot the flow publishes under <state_dir>/published/.

The batch run reads the stored inputs: the ledger's expectations from its event archive
and the processor and bank lines intake validated into its Parquet store (under the
recon state folder). With --world it reads a generated world's events and its files
through intake's parsers instead. It decides deadlines at the inputs' watermark, exactly
as the stream does at the same point, and keeps the variances whose `since` day falls in
the range.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from clearline.pipelines.cli.options import (
    RECON_STATE,
    cluster_options,
    console,
    emit,
    frame_table,
    friendly,
    json_option,
    kv_table,
    ledger_state_dir,
    progress_bar,
    recon_state_dir,
    recon_state_option,
    state_dir_option,
    user_errors,
)

user_errors(
    "clearline.pipelines.cli.recon:ReconInputError",
    "clearline.recon.matching.rules:MatchingConfigError",
    "clearline.recon.autofix:AutofixConfigError",
    "clearline.recon.variances.store:VarianceNotFound",
    "clearline.recon.variances.store:BadTransition",
    "clearline.recon.intake.model:ParseError",
    "clearline.pipelines.flows.recon:ReconFlowConfigError",
    "clearline.pipelines.flows.runner:FlowStateError",
    "clearline.recon.intake.ingest:IntakeConfigError",
)


class ReconInputError(ValueError):
    """An input to a batch run is missing or unusable; the message names it and why."""


def tolerances():
    from clearline import config
    from clearline.recon import MatchingConfigError, Tolerances

    matching = config.load("recon").get("matching")
    if not isinstance(matching, dict):
        raise MatchingConfigError("configs/recon.yaml has no matching: section")
    return Tolerances.from_config(matching)


def report_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ReconInputError(f"no folder of reports and statements at {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def parse_all(files: list[Path], quiet: bool):
    """Settlement line, bank line and bank statement frames of every file, through intake's parsers. A file
    with lines intake could not normalise stops the run, naming the file and the lines:
    reconciling without it would report its lines as missing."""
    import polars as pl

    from clearline.recon import BANK_SCHEMA, SETTLEMENT_SCHEMA, STATEMENT_SCHEMA, ParseError, parse_file

    settle, bank = [pl.DataFrame(schema=SETTLEMENT_SCHEMA)], [pl.DataFrame(schema=BANK_SCHEMA)]
    statements = [pl.DataFrame(schema=STATEMENT_SCHEMA)]
    with progress_bar(quiet) as bar:
        task = bar.add_task("reading reports and statements", total=len(files))
        for path in files:
            try:
                parsed = parse_file(path)
            except ParseError as exc:
                raise ReconInputError(f"{path}: {exc}") from None
            if parsed.problems.height:
                first = parsed.problems.row(0, named=True)
                raise ReconInputError(
                    f"{path}: {parsed.problems.height} line(s) intake could not read, first at line "
                    f"{first['line_no']}: {first['problem']}"
                )
            (settle if parsed.kind == "processor" else bank).append(parsed.lines)
            statements.append(parsed.statements)
            bar.advance(task)
    return pl.concat(settle), pl.concat(bank), pl.concat(statements)


def _default_archive() -> Path:
    return ledger_state_dir(None) / "archive"


def load_inputs(world: Path | None, archive: Path | None, state_dir: Path | None, quiet: bool = True):
    """(reconcile.Inputs, latest event time): a generated world's events and files, or the
    stored inputs — the ledger's event archive and intake's store of validated lines in
    `state_dir` (None: the recon state folder of configs/recon.yaml)."""
    import polars as pl

    from clearline import config, events
    from clearline.recon import Inputs, adjusted, bank_books, expectations

    if world is not None:
        events_file = world / "events" / "events.parquet"
        if not events_file.is_file():
            raise ReconInputError(f"{world} is not a generated world: {events_file} is missing")
        scan = pl.scan_parquet(events_file)
        expected = expectations.from_events(scan)
        entries = adjusted.from_events(scan)
        settle, bank, statements = parse_all(report_files(world / "settlements") + report_files(world / "bank"), quiet)
    else:
        from clearline.ledger import archive as event_archive
        from clearline.recon import read_lines, read_statements

        archive = archive or _default_archive()
        if not archive.is_dir():
            raise ReconInputError(
                f"no ledger event archive at {archive}: run `clearline ledger run`, or give --archive DIR"
            )
        state_dir = recon_state_dir(state_dir)
        if not (state_dir / "lines").is_dir():
            raise ReconInputError(f"no validated lines under {state_dir / 'lines'}: run `clearline ingest` first")
        scan = event_archive.scan(archive)
        expected = expectations.from_archive(scan)
        entries = adjusted.from_archive(scan)
        settle, bank = read_lines(state_dir, "processor"), read_lines(state_dir, "bank")
        statements = read_statements(state_dir)
    traffic = scan.filter(~pl.col("event_type").is_in(events.PERSON_EVENT_TYPES))  # as the stream's watermark
    latest = traffic.select(pl.col("occurred_at").max()).collect().item()
    books = bank_books(config.load("platform"))
    return Inputs(expected[0], expected[1], settle, bank, statements, books, entries), latest


def run_batch(
    world: Path | None,
    archive: Path | None,
    state_dir: Path | None,
    start: date | None,
    end: date | None,
    quiet: bool = True,
):
    from clearline.recon import input_watermark, reconcile, within

    inputs, latest = load_inputs(world, archive, state_dir, quiet)
    as_of = input_watermark(inputs, latest)
    if as_of is None:
        raise ReconInputError("the inputs hold no events and no lines: nothing to reconcile")
    with console.status("matching"):
        result = reconcile(inputs, tolerances(), as_of)
    return result, within(result.variances, start, end)


def _summary(variances) -> dict:
    import polars as pl

    from clearline.currency import minor_to_decimal

    counts = dict(variances.group_by("category").len().sort("category").iter_rows())
    money = variances.group_by("currency").agg(pl.col("amount_minor").sum()).sort("currency")
    return {
        "variances": variances.height,
        "by_category": counts,
        "amount_by_currency": {c: minor_to_decimal(m, c) for c, m in money.iter_rows()},
    }


_world = click.option(
    "--world",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A generated world's folder: its events, settlement reports and bank statements.",
)
# `recon run`, `resolve` and `list` work in the folder given to them, else in the one given
# to the group (`clearline recon --state-dir DIR list`), else in the configured one.
_inherited_state = state_dir_option("Recon state folder", f"the one given to `clearline recon`, else {RECON_STATE}")


def _state_dir(ctx: click.Context, state_dir: Path | None) -> Path:
    return recon_state_dir(state_dir or ctx.parent.params["state_dir"])


@click.group(invoke_without_command=True)
@click.option(
    "--from",
    "start",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="First day (YYYY-MM-DD) of variances to report.",
)
@click.option(
    "--to", "end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (YYYY-MM-DD) of variances to report."
)
@_world
@click.option(
    "--archive",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The ledger's event archive [default: archive/ under state_dir in configs/ledger.yaml].",
)
@recon_state_option
@json_option
@click.pass_context
@friendly
def recon(ctx, start, end, world, archive, state_dir, as_json):
    """Reconcile the ledger against processor reports and bank statements: a batch run
    over stored inputs, recorded in the variance store (statuses are kept)."""
    if ctx.invoked_subcommand is not None:
        return
    import duckdb

    from clearline import config
    from clearline.pipelines.connectors.variance_sink import apply_autofix, close_adjusted
    from clearline.recon import AutofixRules, VarianceStore, quarantined_files, within

    start, end = (d.date() if d else None for d in (start, end))
    if start and end and start > end:
        raise click.BadParameter(f"--from {start} is after --to {end}")
    fixes = AutofixRules.from_config(config.load("recon"))  # a wrong rule is named before any work
    state_dir = recon_state_dir(state_dir)
    result, variances = run_batch(world, archive, state_dir, start, end, quiet=as_json)
    try:
        store = VarianceStore(state_dir / "variances.duckdb")
    except duckdb.IOException as exc:
        raise ReconInputError(
            f"cannot record in {state_dir / 'variances.duckdb'}: {exc}. A running `clearline recon run` "
            "owns it; stop it, or give another --state-dir"
        ) from None
    with store:
        stored = store.record(variances)
        stored["closed_by_adjustments"] = len(close_adjusted(store, within(result.closed, start, end)))
        stored["autofixed"] = len(apply_autofix(store, fixes))
    report = {
        "as_of": result.as_of.isoformat(),
        "from": start and start.isoformat(),
        "to": end and end.isoformat(),
        **_summary(variances),
        "pending": result.pending.height,
        "quarantined_files": quarantined_files(state_dir).height,  # refused by intake: not reconciled at all
        **stored,
    }
    if as_json:
        emit(True, {**report, "items": variances.to_dicts()}, None)
        return
    emit(False, report, kv_table(f"reconciliation as of {result.as_of}", report))
    if variances.height:
        import polars as pl

        shown = variances.head(50).select(
            "variance_id",
            "category",
            "reference",
            "amount_minor",
            "currency",
            "age_days",
            difference=pl.concat_str("field", pl.lit(": "), "expected", pl.lit(" vs "), "actual"),
        )
        emit(False, {}, frame_table(f"variances (first {shown.height} of {variances.height})", shown))


@recon.command()
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The world's truth/discrepancies.csv.",
)
@click.option(
    "--world",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The generated world reconciled [default: the folder the truth file is in].",
)
@state_dir_option(
    "Score the variances a run (the stream's or a batch's) stored in this recon state folder",
    "reconcile the world again and score that",
)
@json_option
@friendly
def score(truth, world, state_dir, as_json):
    """Precision and recall per variance category against a generated world's truth."""
    import polars as pl
    from rich.table import Table

    from clearline.pipelines.world.discrepancies import TRUTH_SCHEMA
    from clearline.recon import misses
    from clearline.recon import score_variances as score_of

    world = world or truth.resolve().parent.parent  # WORLD/truth/discrepancies.csv
    try:
        truth_rows = pl.read_csv(truth, schema=TRUTH_SCHEMA)
    except pl.exceptions.PolarsError as exc:
        raise ReconInputError(f"{truth} is not a truth file ({', '.join(TRUTH_SCHEMA)}): {exc}") from None
    if state_dir is not None:
        from clearline.recon import read_variances

        variances = read_variances(state_dir)
        if variances is None:
            raise ReconInputError(
                f"no variance store in {state_dir}: run `clearline recon run` or `clearline recon` first"
            )
        as_of, pending = None, None  # the run that stored them decided their deadlines
    else:
        result, variances = run_batch(world, None, None, None, None, quiet=as_json)
        as_of, pending = result.as_of, result.pending.height
    scores = score_of(truth_rows, variances)
    missed, extra = misses(truth_rows, variances)
    report = {
        "as_of": as_of.isoformat() if as_of else None,
        "scored": str(state_dir) if state_dir else "a batch run over the world",
        "variances": variances.height,
        "injected": truth_rows.height,
        "pending": pending,
        "missed": missed.height,
        "unexpected": extra.height,
        "perfect": all(s.precision == 1.0 and s.recall == 1.0 for s in scores),
        "categories": {
            s.category: {
                "injected": s.injected,
                "found": s.found,
                "correct": s.correct,
                "precision": s.precision,
                "recall": s.recall,
            }
            for s in scores
        },
    }
    table = Table(
        title=f"recon score ({report['scored']}): "
        + ("every injected break found and classified" if report["perfect"] else "NOT PERFECT"),
        title_justify="left",
    )
    for col in ("category", "injected", "found", "correct", "precision", "recall"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for s in scores:
        table.add_row(
            s.category, str(s.injected), str(s.found), str(s.correct), f"{s.precision:.3f}", f"{s.recall:.3f}"
        )
    emit(as_json, report, table)


@recon.command("run")
@click.option("--once", is_flag=True, help="Stop when both topics are read to their end (and the inbox is empty).")
@click.option(
    "--inbox",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Inbox folder to watch for reports and statements [default: flow.inbox in configs/recon.yaml].",
)
@_inherited_state
@click.option("--events-topic", default=None, help="Events topic [default: flow.events_topic].")
@click.option("--settlements-topic", default=None, help="Validated lines topic [default: intake.topic].")
@click.option("--variances-topic", default=None, help="Variances topic [default: flow.variances_topic].")
@cluster_options
@json_option
@click.pass_context
@friendly
def run_stream(
    ctx, once, inbox, state_dir, events_topic, settlements_topic, variances_topic, process_id, addresses, as_json
):
    """The streaming matcher: ledger events and intake's lines in, variances out to
    payments.variances and the variance store, as event time passes each deadline."""
    import json

    from clearline.pipelines.flows.recon import ReconFlowSettings, run

    settings = ReconFlowSettings.from_config(
        state_dir or ctx.parent.params["state_dir"],
        inbox,
        once,
        events=events_topic,
        settlements=settlements_topic,
        variances=variances_topic,
    )
    outcome = run(settings, tolerances(), process_id=process_id, addresses=list(addresses) or None)
    status_file = settings.state_dir / "published" / "status.json"
    status = json.loads(status_file.read_text()) if status_file.is_file() else {}
    files = outcome["inbox_files"]
    report = {
        **status,
        "inbox_files": len(files),
        "inbox_quarantined": sum(f["status"] == "quarantined" for f in files),
        "stopped_by_signal": outcome["stopped_by_signal"],
    }
    emit(as_json, report, kv_table("reconciliation flow", report))


def _store_path(ctx, state_dir: Path | None) -> Path:
    return _state_dir(ctx, state_dir) / "variances.duckdb"


def _open_store(ctx, state_dir: Path | None, work):
    """`work(store)` on the variance store of `--state-dir` (this command's, else the group's);
    None when a running flow holds it."""
    import duckdb

    from clearline.recon import VarianceStore

    path = _store_path(ctx, state_dir)
    if not path.is_file():
        raise ReconInputError(f"no variance store at {path}: run `clearline recon` or `clearline recon run` first")
    try:
        store = VarianceStore(path)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        return None
    with store:
        return work(store)


@recon.command()
@click.argument("variance_id")
@click.option("--note", required=True, help="What was found or done (required).")
@click.option("--assign", "assignee", default=None, help="Assign to this person instead of resolving.")
@_inherited_state
@json_option
@click.pass_context
@friendly
def resolve(ctx, variance_id, note, assignee, state_dir, as_json):
    """Resolve a variance with a note, or assign it to someone (--assign)."""
    row = _open_store(ctx, state_dir, lambda store: store.move(variance_id, note, assignee))
    if row is None:  # the running flow owns the store: it applies queued requests
        from clearline.recon import check_request
        from clearline.recon import queue_resolution as queue

        check_request(note, assignee)
        queued = queue(_store_path(ctx, state_dir).parent, variance_id, note, assignee)
        report = {
            "variance_id": variance_id,
            "queued": str(queued),
            "note": "the running `recon run` owns the store and applies this within its advance interval",
        }
        emit(as_json, report, kv_table(f"variance {variance_id}: queued", report))
        return
    shown = {k: row[k] for k in ("variance_id", "category", "reference", "status", "assignee", "note")}
    emit(
        as_json,
        {**row, "since": str(row["since"]), "first_seen": str(row["first_seen"]), "last_seen": str(row["last_seen"])},
        kv_table(f"variance {variance_id}", shown),
    )


@recon.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", "assigned", "watched", "resolved"]),  # recon.variances.store.STATUSES
    default=None,
    help="Only variances with this status.",
)
@click.option("--category", default=None, help="Only variances of this category.")
@_inherited_state
@json_option
@click.pass_context
@friendly
def list_(ctx, status, category, state_dir, as_json):
    """The stored variances with their status, oldest break first, and every file intake
    quarantined with its reason (nothing in those is reconciled until a good copy comes)."""
    import polars as pl

    from clearline.pipelines.cli.report import show_quarantined
    from clearline.recon import quarantined_files, read_variances

    folder = _store_path(ctx, state_dir).parent
    rows = read_variances(folder, status)  # the flow's snapshot while it runs
    if rows is None:
        raise ReconInputError(
            f"no variance store at {_store_path(ctx, state_dir)}: run `clearline recon` or `clearline recon run` first"
        )
    if category:
        rows = rows.filter(pl.col("category") == category)
    refused = quarantined_files(folder)
    if as_json:
        emit(
            True,
            {
                "variances": rows.height,
                "items": rows.to_dicts(),
                "quarantined_files": refused.height,
                "quarantined": refused.to_dicts(),
            },
            None,
        )
        return
    shown = rows.select(
        "variance_id",
        "category",
        "reference",
        "amount_minor",
        "currency",
        "since",
        "status",
        "assignee",
        difference=pl.concat_str("field", pl.lit(": "), "expected", pl.lit(" vs "), "actual"),
    )
    emit(False, {}, frame_table(f"{rows.height} variance(s)" + (f", {status}" if status else ""), shown))
    show_quarantined(refused)
