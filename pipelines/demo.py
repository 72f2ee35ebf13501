"""The main job, end to end, as a person would run it by hand: every step is the same
`clearline … --json` command the README documents, run in order, its JSON kept.

Wiring only: what each step does lives in its command. A step that fails stops the demo
with its own error message; the summary says what ran, what it found and where the
reports are, so the demo doubles as a smoke test of the whole pipeline on a fresh machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping


class DemoStepFailed(RuntimeError):
    """A step's command failed; the message names the step and carries its error."""


@dataclass(frozen=True)
class Step:
    name: str
    doing: str  # shown while it runs
    argv: Callable[[Path, dict], list[str]]  # (out folder, earlier steps' JSON by name)
    summary: Callable[[dict], dict]  # the figures this step adds to the demo's summary
    json: bool = True  # the command prints JSON with --json


def _sum_dict(d: dict | None) -> int:
    return sum((d or {}).values())


def _holder(done: dict, alias: str) -> str:
    """NAME@ALIAS of the model `clearline train` gave that alias (or the one that had it)."""
    listed = done["models list"]
    return next(f"{v['name']}@{alias}" for v in listed["versions"] if alias in v.get("aliases", []))


def training_cutoff(world: dict) -> str:
    """Train on the first two thirds of the world; the last third is the backtest's."""
    start, end = (date.fromisoformat(world[k]) for k in ("start", "end"))
    return (start + (end - start) * 2 / 3).isoformat() + "T00:00:00+00:00"


def steps(days: int, merchants: int, seed: int) -> list[Step]:
    world = lambda out: out / "world"  # noqa: E731
    return [
        Step(
            "generate",
            f"generating a {days}-day world of {merchants} merchants",
            lambda out, done: [
                "generate",
                "--days",
                str(days),
                "--merchants",
                str(merchants),
                "--seed",
                str(seed),
                "--out",
                str(world(out)),
            ],
            lambda r: {
                "events": r["events"],
                "orders": r["orders"],
                "buyers": r["buyers"],
                "injected_discrepancies": _sum_dict(r["discrepancies"]),
            },
        ),
        Step("kafka", "starting Kafka", lambda out, done: ["kafka", "up"], lambda r: {"kafka": r.get("bootstrap")}),
        Step(
            "produce",
            "publishing every event to payments.events",
            lambda out, done: ["produce", str(world(out))],
            lambda r: {"delivered": r["delivered"], "failed": r["failed"]},
        ),
        Step(
            "ledger",
            "ledger flow: posting every event until caught up",
            lambda out, done: ["ledger", "run", "--once", "--state-dir", str(out / "ledger"), "--metrics-port", "0"],
            lambda r: {},
            json=False,
        ),
        Step(
            "ledger check",
            "checking the ledger's invariants",
            lambda out, done: ["ledger", "check", "--state-dir", str(out / "ledger")],
            lambda r: {
                "ledger_consumed": r["consumed"],
                "ledger_posted": r["posted"],
                "ledger_duplicates": r["duplicate"],
                "ledger_dead_lettered": r["dead_lettered"],
                "ledger_postings": r["postings"],
                "invariants_hold": r["ok"],
            },
        ),
        Step(
            "ledger verify",
            "verifying the ledger's hash chain",
            lambda out, done: ["ledger", "verify", "--state-dir", str(out / "ledger")],
            lambda r: {"chain_verified": r["ok"], "chain_heads": r["heads"]},
        ),
        Step(
            "ingest",
            "validating settlement reports and bank statements, publishing their lines",
            lambda out, done: [
                "ingest",
                str(world(out) / "settlements"),
                str(world(out) / "bank"),
                "--state-dir",
                str(out / "recon"),
            ],
            lambda r: {"files_accepted": r["accepted"], "files_quarantined": r["quarantined"]},
        ),
        Step(
            "recon run",
            "reconciliation flow: matching ledger, processors and banks until caught up",
            lambda out, done: [
                "recon",
                "run",
                "--once",
                "--state-dir",
                str(out / "recon"),
                "--inbox",
                str(out / "inbox"),
            ],
            lambda r: {
                "recon_expectations": r.get("expectations"),
                "recon_lines": r.get("lines"),
                "recon_watermark": r.get("watermark"),
            },
        ),
        Step(
            "recon score",
            "scoring the stream's variances against the world's truth",
            lambda out, done: [
                "recon",
                "score",
                "--truth",
                str(world(out) / "truth" / "discrepancies.csv"),
                "--state-dir",
                str(out / "recon"),
            ],
            lambda r: {
                "variances": r["variances"],
                "recon_injected": r["injected"],
                "recon_missed": r["missed"],
                "recon_unexpected": r["unexpected"],
                "recon_precision_recall_1": r["perfect"],
                "variances_by_category": {c: v["found"] for c, v in r["categories"].items()},
            },
        ),
        Step(
            "report",
            "writing the variance report",
            lambda out, done: ["report", "variances", "--state-dir", str(out / "recon"), "--out", str(out / "reports")],
            lambda r: {"variance_report": r["html"], "open_variances_xlsx": r["xlsx"]},
        ),
        Step(
            "train",
            "training and registering the underwriting models on the first two thirds",
            lambda out, done: ["train", "--world", str(world(out)), "--cutoff", training_cutoff(done["generate"])],
            lambda r: {
                "models": {
                    f"{m['name']} v{m['version']}": f"AUC {m['auc']:.3f} vs oracle {m['oracle_auc']:.3f} "
                    f"({m['auc_ratio']:.0%})"
                    for m in r["models"]
                }
            },
        ),
        Step(
            "models list",
            "reading the registry",
            lambda out, done: ["models", "list"],
            lambda r: {
                "champion": next(
                    (f"{v['name']} v{v['version']}" for v in r["versions"] if "champion" in v.get("aliases", [])), None
                )
            },
        ),
        Step(
            "risk run",
            "risk flow: features to Feast, one decision per order on terms",
            lambda out, done: [
                "risk",
                "run",
                "--once",
                "--state-dir",
                str(out / "risk"),
                "--feast-dir",
                str(out / "feast"),
            ],
            lambda r: {
                "risk_requests": r["requests"],
                "risk_decisions": r["decisions"],
                "decisions_by_outcome": r["by_outcome"],
                "decisions_by_model": r["by_model"],
                "features_unavailable": r["features_unavailable"],
                "feature_rows_pushed": r["feature_rows_pushed"],
                "risk_state": r["state_dir"],
            },
        ),
        Step(
            "backtest",
            "backtesting champion against challenger on the last third",
            lambda out, done: [
                "backtest",
                "--model",
                _holder(done, "champion"),
                "--challenger",
                _holder(done, "challenger"),
                "--from",
                training_cutoff(done["generate"]),
                "--to",
                done["generate"]["end"] + "T00:00:00+00:00",
                "--world",
                str(world(out)),
                "--out",
                str(out / "reports" / "backtest"),
            ],
            lambda r: {
                "backtest_orders": r["orders"]["matured"],
                "backtest_auc": {
                    role: f"{m['name']} {m['auc']:.3f} (oracle {m['oracle_auc']:.3f})"
                    for role, m in r["models"].items()
                },
                "backtest_leakage_checks_passed": r["leakage_checks"]["passed"],
                "backtest_leakage_checks_fired": [c["name"] for c in r["leakage_checks"]["checks"] if not c["passed"]],
                "backtest_recommendation": r["recommendation"]["text"],
                "backtest_report": r["report"],
            },
        ),
    ]


def broken_promises(summary: Mapping[str, Any]) -> list[str]:
    """The demo's promises its summary does not show kept, one sentence each; empty when
    every one holds. A promise holds only when its entry is there and says so exactly
    (`True`, or 0 failed deliveries): a step that never ran keeps none of its promises.

    The promises: no step failed, every event was delivered, the ledger's invariants hold
    and its hash chain verifies, the stream's variances score precision and recall 1.0
    against the world's truth, and the backtest's leakage checks passed."""
    broken = [f"step {summary['failed_step']!r} failed"] if summary.get("failed_step") else []

    def promise(key: str, kept: Callable[[Any], bool], what: str, detail: Callable[[], str] | None = None) -> None:
        if key not in summary:
            broken.append(f"{what}: never checked (no {key} in the summary)")
        elif not kept(summary[key]):
            broken.append(f"{what}: {detail() if detail else f'{key} is {summary[key]!r}'}")

    promise("failed", lambda v: v == 0 and not isinstance(v, bool), "every event delivered", None)
    promise("invariants_hold", lambda v: v is True, "ledger invariants hold")
    promise("chain_verified", lambda v: v is True, "ledger hash chain verifies")
    promise(
        "recon_precision_recall_1",
        lambda v: v is True,
        "recon precision and recall 1.0 on the world's truth",
        lambda: f"missed {summary.get('recon_missed', '?')}, unexpected {summary.get('recon_unexpected', '?')}",
    )
    promise(
        "backtest_leakage_checks_passed",
        lambda v: v is True,
        "backtest leakage checks passed",
        lambda: "fired: " + (", ".join(summary.get("backtest_leakage_checks_fired") or []) or "unnamed"),
    )
    return broken


def run(out_dir: Path, days: int, merchants: int, seed: int, on_step: Callable[[Step], object]) -> dict:
    """Run every step into `out_dir`; return the summary. `on_step` is told each step as
    it starts (for a progress display) and may return a context manager around it.

    The world's events go to topics of its own (`demo.<world>.payments.events`, …): the
    ledger, matching and models must see this world only, and running the same demo again
    re-publishes the same events, which the ledger counts as duplicates."""
    prefix = os.environ.get("CLEARLINE_TOPIC_PREFIX") or f"demo.s{seed}-{days}d-{merchants}m."
    env = {
        **os.environ,
        "CLEARLINE_TOPIC_PREFIX": prefix,
        "MLFLOW_TRACKING_URI": os.environ.get(
            "MLFLOW_TRACKING_URI", f"sqlite:///{(out_dir / 'mlflow' / 'mlflow.db').resolve()}"
        ),
    }
    (out_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    summary: dict = {"out": str(out_dir), "topics": f"{prefix}payments.*"}
    timings: dict[str, float] = {}
    done_by_step: dict[str, dict] = {}
    for step in steps(days, merchants, seed):
        started = time.monotonic()
        with on_step(step):
            argv = [
                sys.executable,
                "-m",
                "clearline.pipelines.cli",
                *step.argv(out_dir, done_by_step),
                *(["--json"] if step.json else []),
            ]
            done = subprocess.run(argv, capture_output=True, text=True, env=env)
        timings[step.name] = round(time.monotonic() - started, 1)
        if done.returncode != 0 and not (step.json and done.stdout.strip().startswith("{")):
            said = " ".join(done.stderr.split()).removeprefix("error: ")[-1500:] or "no message"
            raise DemoStepFailed(f"step {step.name!r} failed (exit {done.returncode}): {said}")
        done_by_step[step.name] = json.loads(done.stdout) if step.json else {}
        summary.update(step.summary(done_by_step[step.name]))
        if done.returncode != 0:
            summary["failed_step"] = step.name
            break
    summary["seconds"] = timings
    summary["total_seconds"] = round(sum(timings.values()), 1)
    if "failed_step" not in summary:
        summary.update(workbench_login(out_dir))
    return summary


def workbench_login(out_dir: Path) -> dict[str, str]:
    """A demo user (platform approver) in the demo's own workbench state, with a fresh
    random password each run, and the command that serves the workbench on the demo's
    world: what the demo prints last, so a person can open it."""
    import secrets

    from clearline.pipelines.workbench.state import WorkbenchState

    state = WorkbenchState(out_dir / "workbench")
    password = secrets.token_urlsafe(12)
    if state.user("demo") is None:
        state.add_user("demo", "approver", "platform", password)
    else:
        state.set_password("demo", password)
    state.record("demo", "user_add", None, name="demo", role="approver", tenant="platform")
    command = (
        f"clearline workbench --state-dir {out_dir / 'workbench'} --recon-state-dir {out_dir / 'recon'}"
        f" --ledger-state-dir {out_dir / 'ledger'}"
    )
    return {"workbench": command, "workbench_login": f"demo / {password} (approver, platform)"}
