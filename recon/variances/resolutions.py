"""Resolutions queued for the running reconciliation flow, which owns the variance store.

While the flow runs, its DuckDB store admits no other process, so `clearline recon
resolve` and the finance workbench cannot write it; instead they leave one small JSON
file per request in `<state_dir>/resolutions/` (written under a temporary name, flushed
to disk and renamed, so the flow never reads half of one and a crash loses none). The flow
applies them in the order they were queued, at its next tick (at most
`advance_interval_s` later), and moves each file into `applied/` or, when the store
refuses it (no such variance, no note), into `refused/` with the reason beside it: nothing
a person asked for disappears without a trace. A request is applied once: its file name
goes on its history row, so a flow that dies between applying a request and filing it
away finds it applied when it starts again and only files it.

At each tick the flow also applies the timing rule (`VarianceStore.reopen_expired`):
a watched variance whose date passed without it clearing reopens.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

from clearline.recon.variances.store import BadTransition, VarianceNotFound, VarianceStore

QUEUE = "resolutions"


def queue(
    state_dir: Path,
    variance_id: str,
    note: str,
    assignee: str | None,
    *,
    code: str | None = None,
    actor: str | None = None,
    watch_until: date | None = None,
) -> Path:
    """Leave one request for whoever holds the store next; its path."""
    folder = state_dir / QUEUE
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    tmp = folder / f".{name}.tmp"
    ask = {"variance_id": variance_id, "note": note, "assignee": assignee, "code": code, "actor": actor}
    ask["watch_until"] = watch_until.isoformat() if watch_until else None
    with open(tmp, "w") as fh:
        fh.write(json.dumps(ask))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / name)
    directory = os.open(folder, os.O_RDONLY)  # the rename itself on disk too
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return folder / name


def pending(state_dir: Path) -> list[dict]:
    """The requests not yet applied, oldest first, each with its file name as `request`."""
    folder = state_dir / QUEUE
    if not folder.is_dir():
        return []
    return [
        {**json.loads(p.read_text()), "request": p.stem}
        for p in sorted(folder.glob("*.json"))
        if not p.name.startswith(".")
    ]


def apply(state_dir: Path, store: VarianceStore, today: date | None = None) -> int:
    """Apply every queued request, then reopen watched variances past their date; how many
    requests there were plus how many variances reopened (non-zero: the store changed)."""
    folder = state_dir / QUEUE
    requests = sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []
    for path in requests:
        ask = json.loads(path.read_text())
        until = ask.get("watch_until")
        try:
            store.move(
                ask["variance_id"],
                ask["note"],
                ask.get("assignee"),
                code=ask.get("code"),
                actor=ask.get("actor"),
                watch_until=date.fromisoformat(until) if until else None,
                request=path.stem,
            )
            outcome = "applied"
        except (VarianceNotFound, BadTransition) as exc:
            outcome = "refused"
            (folder / outcome).mkdir(exist_ok=True)
            (folder / outcome / f"{path.stem}.reason.txt").write_text(f"{exc}\n")
        (folder / outcome).mkdir(exist_ok=True)
        os.replace(path, folder / outcome / path.name)
    reopened = store.reopen_expired(today or datetime.now(timezone.utc).date())
    return len(requests) + len(reopened)
