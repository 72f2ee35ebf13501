"""Putting a SQLite file that several processes share into WAL mode.

A new file's first switch to WAL needs its exclusive lock. When two processes' switches
cross (a cluster's workers building their sinks at the same instant, two API workers
starting), SQLite answers "database is locked" at once instead of waiting, since waiting
could deadlock: the one refused has let go of its locks and must try again. Until
2026-12-07 nothing did, and a risk cluster died on a fresh state folder with the error
hidden under Bytewax's "Send thread panic" (tests/models/test_risk_journal.py).
"""

from __future__ import annotations

import sqlite3
import time


def to_wal(con: sqlite3.Connection, wait_s: float) -> None:
    """`PRAGMA journal_mode=WAL` on `con`, tried again for up to `wait_s` while refused."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
