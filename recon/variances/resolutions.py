"""Resolutions queued for the running reconciliation flow, which owns the variance store.

While the flow runs, its DuckDB store admits no other process, so `clearline recon
resolve` cannot write it; instead it leaves one small JSON file per request in
`<state_dir>/resolutions/` (written under a temporary name and renamed, so the flow never
reads half of one). The flow applies them in the order they were queued, at its next
tick (at most `advance_interval_s` later), and moves each file into `applied/` or, when
the store refuses it (no such variance, no note), into `refused/` with the reason beside
it: nothing a person asked for disappears without a trace.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from clearline.recon.variances.store import BadTransition, VarianceNotFound, VarianceStore

QUEUE = "resolutions"


def queue(state_dir: Path, variance_id: str, note: str, assignee: str | None) -> Path:
    folder = state_dir / QUEUE
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps({"variance_id": variance_id, "note": note, "assignee": assignee}))
    os.replace(tmp, folder / name)
    return folder / name


def apply(state_dir: Path, store: VarianceStore) -> int:
    """Apply every queued request; how many there were."""
    folder = state_dir / QUEUE
    if not folder.is_dir():
        return 0
    requests = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    for path in requests:
        ask = json.loads(path.read_text())
        try:
            store.move(ask["variance_id"], ask["note"], ask.get("assignee"))
            outcome = "applied"
        except (VarianceNotFound, BadTransition) as exc:
            outcome = "refused"
            (folder / outcome).mkdir(exist_ok=True)
            (folder / outcome / f"{path.stem}.reason.txt").write_text(f"{exc}\n")
        (folder / outcome).mkdir(exist_ok=True)
        os.replace(path, folder / outcome / path.name)
    return len(requests)
