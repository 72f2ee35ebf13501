"""`clearline workbench`: the finance workbench (docs/workbench.md).

    clearline workbench [--port N] [--state-dir DIR] [--recon-state-dir DIR] [--ledger-state-dir DIR]
                                               serve it on 127.0.0.1 (configs/workbench.yaml)
    clearline workbench user add NAME --role viewer|resolver|approver --tenant rs_001|platform
                                               [--password-stdin | --token]
    clearline workbench audit [--json] [--verify]

The workbench reads the recon flow's and the ledger flow's published snapshots and keeps
its own state (users, proposals, the audit log) under its own state folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clearline.pipelines.cli.options import console, emit, friendly, json_option, kv_table, user_errors

user_errors(
    "clearline.pipelines.workbench.settings:WorkbenchConfigError",
    "clearline.pipelines.workbench.state:UserError",
    "clearline.pipelines.workbench.sources:NoVariances",
)

_folders = [
    click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="The workbench's own state folder [default: state_dir in configs/workbench.yaml].",
    ),
    click.option(
        "--recon-state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Recon state folder it reads [default: intake.state_dir in configs/recon.yaml].",
    ),
    click.option(
        "--ledger-state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Ledger state folder it reads [default: state_dir in configs/ledger.yaml].",
    ),
]


def folders(fn):
    for option in reversed(_folders):
        fn = option(fn)
    return fn


def _settings(state_dir, recon_state_dir, ledger_state_dir):
    from clearline.pipelines.workbench.settings import WorkbenchSettings

    return WorkbenchSettings.from_config(state_dir, recon_state_dir, ledger_state_dir)


@click.group(invoke_without_command=True)
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 [default: port in configs/workbench.yaml].")
@folders
@click.pass_context
@friendly
def workbench(ctx, port, state_dir, recon_state_dir, ledger_state_dir):
    """Serve the finance workbench: the variance queue, evidence, resolutions, adjusting entries."""
    ctx.ensure_object(dict)["folders"] = (state_dir, recon_state_dir, ledger_state_dir)
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from clearline.pipelines.workbench.app import create_app

    settings = _settings(state_dir, recon_state_dir, ledger_state_dir)
    port = port if port is not None else settings.port
    console.print(
        f"workbench on http://{settings.host}:{port}/ (recon {settings.recon_state}, ledger {settings.ledger_state})"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=port, log_level="warning")


def _group_folders(ctx, state_dir):
    given = (ctx.obj or {}).get("folders", (None, None, None))
    return (state_dir or given[0], given[1], given[2])


@workbench.group()
def user():
    """The workbench's users."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "resolver", "approver"]), required=True)
@click.option("--tenant", required=True, help="A reseller id (rs_001, …) or `platform` (sees every tenant).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (first line).")
@click.option("--token", is_flag=True, help="Make an API token (printed once) instead of a password.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@json_option
@click.pass_context
@friendly
def user_add(ctx, name, role, tenant, password_stdin, token, state_dir, as_json):
    """Add a user with a role and a tenant; prompts for a password unless --password-stdin or --token."""
    from clearline.pipelines.workbench.state import UserError, WorkbenchState

    settings = _settings(*_group_folders(ctx, state_dir))
    _check_tenant(tenant)
    if token:
        password = None
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if not token and not password:
        raise UserError("an empty password is not a password")
    state = WorkbenchState(settings.state_dir)
    state.add_user(name, role, tenant, password)
    report = {"name": name, "role": role, "tenant": tenant, "state_dir": str(settings.state_dir)}
    if token:
        report["token"] = state.add_token(name)
    state.record("cli", "user_add", None, name=name, role=role, tenant=tenant, token=bool(token))
    emit(as_json, report, kv_table(f"workbench user {name}", report))


def _check_tenant(tenant: str) -> None:
    from clearline import config
    from clearline.pipelines.workbench.state import UserError

    known = set(config.load("tenants")["tenants"])
    if tenant not in known:
        raise UserError(f"tenant {tenant!r}: choose one of {', '.join(sorted(known))} (configs/tenants.yaml)")


@workbench.command()
@click.option("--verify", is_flag=True, help="Recompute the hash chain; exit 1 naming the first bad link.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@json_option
@click.pass_context
@friendly
def audit(ctx, verify, state_dir, as_json):
    """Export the audit log (every action, hash-chained), or verify its chain."""
    from clearline.pipelines.workbench.state import WorkbenchState

    settings = _settings(*_group_folders(ctx, state_dir))
    state = WorkbenchState(settings.state_dir)
    rows = state.audit_rows()
    if verify:
        bad = state.verify_audit()
        report = {
            "ok": bad is None,
            "rows": len(rows),
            "head": state.audit_head(),
            "first_bad": str(bad) if bad else None,
        }
        emit(as_json, report, kv_table("workbench audit chain", report))
        if bad is not None:
            console.print(f"[bold red]error:[/] audit chain broken: {bad}", highlight=False)
            sys.exit(1)
        return
    if as_json:
        emit(True, {"head": state.audit_head(), "rows": rows}, None)
        return
    from rich.table import Table

    table = Table(title=f"workbench audit log ({len(rows)} rows)")
    for column in ("seq", "at", "actor", "action", "variance_id", "detail"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["seq"]), r["at"], r["actor"], r["action"], r["variance_id"] or "", str(r["detail"]))
    from clearline.pipelines.cli.options import out

    out.print(table)
