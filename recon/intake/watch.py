"""The inbox: a folder the running pipeline watches for new settlement files.

Every poll takes the files that have not changed for `settle_seconds` (one still being
copied in is left for the next poll) and hands them to `Intake.ingest`, which moves each
out of the inbox: into `processed/` or the quarantine. A file the broker did not
acknowledge stays and is tried again next poll. `stop` (set on SIGTERM or Ctrl-C) ends the
loop between polls; `once` processes what is there and returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from clearline.recon.intake.ingest import Intake, Outcome

PROCESSED = "processed"


def ready_files(inbox: Path, settle_seconds: float, now: float | None = None) -> list[Path]:
    """Files directly in the inbox, not hidden or partial, unchanged for settle_seconds."""
    now = time.time() if now is None else now
    return sorted(
        p
        for p in inbox.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and not p.name.endswith((".tmp", ".part"))
        and now - p.stat().st_mtime >= settle_seconds
    )


def watch(
    intake: Intake,
    inbox: Path,
    stop: threading.Event,
    *,
    once: bool = False,
    on_outcomes: Callable[[list[Outcome]], None] = lambda outcomes: None,
) -> list[Outcome]:
    """Ingest the inbox until `stop` is set (or once); every outcome, in order."""
    inbox.mkdir(parents=True, exist_ok=True)
    processed = inbox / PROCESSED
    seen: list[Outcome] = []
    while not stop.is_set():
        files = ready_files(inbox, 0 if once else intake.settings.settle_seconds)
        if files:
            outcomes = intake.ingest(files, processed_dir=processed)
            seen.extend(outcomes)
            on_outcomes(outcomes)
        if once or stop.wait(intake.settings.poll_seconds):
            break
    return seen
