"""A bad file is kept whole, beside a report a person can act on.

`<quarantine>/<name>` is the file byte for byte; `<name>.report.json` and
`<name>.report.txt` say why: the parse error and its line, or every broken rule of the
suite with the rows (line numbers) that broke it and what was found there. A second,
different file of the same name gets its hash in its name rather than replacing the first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from clearline.recon.intake.model import ParseError
from clearline.recon.intake.suites import Verdict

ROWS_IN_TEXT = 20


def parse_report(name: str, sha256: str, error: ParseError) -> dict[str, Any]:
    return {
        "file": name,
        "sha256": sha256,
        "format": None,
        "outcome": "quarantined",
        "reason": f"cannot be read: {error}",
        "parse_error": {"line": error.line_no, "message": error.reason},
        "suite": None,
        "rules_checked": 0,
        "failures": [],
    }


def validation_report(name: str, sha256: str, fmt: str, lines: int, verdict: Verdict) -> dict[str, Any]:
    return {
        "file": name,
        "sha256": sha256,
        "format": fmt,
        "outcome": "quarantined",
        "lines": lines,
        "reason": reason(verdict),
        "parse_error": None,
        "suite": verdict.suite,
        "rules_checked": verdict.rules,
        "failures": [
            {
                "rule": f.rule,
                "expectation": f.expectation,
                "rows_count": f.count,
                "rows": f.rows,
                "observed": f.observed,
            }
            for f in verdict.failures
        ],
    }


def reason(verdict: Verdict) -> str:
    """One line: the first broken rule and where, and how many more."""
    first = verdict.failures[0]
    where = ", ".join(_where(row) for row in first.rows[:3])
    more = f"; and {len(verdict.failures) - 1} more rule(s) broken" if len(verdict.failures) > 1 else ""
    return f"{first.rule} ({where or f'observed {first.observed}'}{' …' if first.count > 3 else ''}){more}"


def _where(row: dict[str, Any]) -> str:
    values = ", ".join(f"{k}={v!r}" for k, v in row.items() if k not in ("line_no", "control", "control_gap"))
    control = f" {row['control']}" if row.get("control") else ""
    return f"line {row.get('line_no')}{control}: {values}" if values else f"line {row.get('line_no')}{control}"


def render_text(report: dict[str, Any]) -> str:
    out = [
        f"QUARANTINED  {report['file']}",
        f"sha256       {report['sha256']}",
        f"when         {report.get('quarantined_at', '')}",
        "",
    ]
    if report["parse_error"]:
        line = report["parse_error"]["line"]
        out += [
            "The file cannot be read, so none of it was used.",
            f"  {'line ' + str(line) + ': ' if line else ''}{report['parse_error']['message']}",
        ]
        return "\n".join(out) + "\n"
    out += [
        f"format       {report['format']} ({report['lines']} lines read)",
        f"suite        {report['suite']}: {len(report['failures'])} of {report['rules_checked']} rules broken",
        "",
        "Nothing from this file reached matching. Broken rules:",
    ]
    for failure in report["failures"]:
        out += ["", f"* {failure['rule']}", f"  ({failure['expectation']}, {failure['rows_count']} row(s))"]
        out += [f"    {_where(row)}" for row in failure["rows"][:ROWS_IN_TEXT]]
        if failure["rows_count"] > ROWS_IN_TEXT:
            out.append(f"    … {failure['rows_count'] - ROWS_IN_TEXT} more in the .report.json")
        if failure["observed"] is not None:
            out.append(f"    observed: {failure['observed']}")
    return "\n".join(out) + "\n"


def place(source: Path, sha256: str, folder: Path, *, move: bool) -> Path:
    """Put the file whole into `folder` (moved out of an inbox, or copied) under its own
    name, or with its hash in the name when another file already has that name there."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    if target.exists() and _sha(target) != sha256:
        target = folder / f"{source.stem}.{sha256[:12]}{source.suffix}"
    temporary = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)
    if move:
        source.unlink()
    return target


def quarantine(source: Path, sha256: str, folder: Path, report: dict[str, Any], *, move: bool) -> Path:
    """Keep the file whole in `folder` with its .report.json and .report.txt; returns the
    kept file's path."""
    target = place(source, sha256, folder, move=move)
    report = {
        **report,
        "quarantined_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kept_as": str(target),
    }
    target.with_name(target.name + ".report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    target.with_name(target.name + ".report.txt").write_text(render_text(report))
    return target


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
