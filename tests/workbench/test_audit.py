"""The audit log: every action appended to a hash chain; an edited, deleted or truncated
row is found and named (by `verify` and by `clearline workbench audit --verify`); the log
exports as JSON; the table refuses updates and deletes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearline.pipelines.workbench import audit
from clearline.pipelines.workbench.state import WorkbenchState


def filled(tmp_path, n: int = 5) -> WorkbenchState:
    state = WorkbenchState(tmp_path / "wb")
    for i in range(n):
        state.record(f"user{i % 2}", "resolve", f"var_{i:020x}", note=f"note {i}", code="bank_error")
    return state


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clearline.pipelines.cli", "workbench", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def tamper(state: WorkbenchState, sql: str) -> None:
    """What someone with the file could do: drop the guards and change the rows."""
    con = sqlite3.connect(state.path)
    con.executescript(f"DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; {sql}")
    con.close()


def test_an_untouched_log_verifies_and_exports(tmp_path):
    state = filled(tmp_path)
    assert state.verify_audit() is None
    done = cli("audit", "--json", "--state-dir", str(state.dir))
    exported = json.loads(done.stdout)
    assert [r["seq"] for r in exported["rows"]] == [1, 2, 3, 4, 5]
    assert exported["rows"][2]["detail"] == {"note": "note 2", "code": "bank_error"}
    assert exported["head"] == exported["rows"][-1]["hash"]
    ok = cli("audit", "--verify", "--json", "--state-dir", str(state.dir))
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True


@pytest.mark.parametrize(
    "sql, seq, words",
    [
        ('UPDATE audit SET detail = \'{"note": "nothing to see"}\' WHERE seq = 3', 3, "edited"),
        ("UPDATE audit SET actor = 'mallory' WHERE seq = 2", 2, "edited"),
        ("DELETE FROM audit WHERE seq = 4", 5, "missing"),
        ("DELETE FROM audit WHERE seq = 5", 5, "removed from the end"),
    ],
)
def test_a_tampered_row_is_named(tmp_path, sql, seq, words):
    state = filled(tmp_path)
    tamper(state, sql)
    bad = state.verify_audit()
    assert bad is not None and bad.seq == seq and words in bad.why
    done = cli("audit", "--verify", "--state-dir", str(state.dir))
    assert done.returncode == 1 and f"audit row {seq}" in done.stderr


def test_the_table_refuses_updates_and_deletes(tmp_path):
    state = filled(tmp_path, 2)
    con = sqlite3.connect(state.path)
    for sql in ("UPDATE audit SET actor = 'x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(sql)
    con.close()


@given(detail=st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=8), st.integers(), st.none())))
def test_any_change_to_a_row_changes_its_link(detail):
    row = {"seq": 1, "at": "2026-01-01T00:00:00+00:00", "actor": "ann", "action": "assign", "variance_id": None}
    h = audit.link(audit.GENESIS, {**row, "detail": detail})
    assert h == audit.link(audit.GENESIS, {**row, "detail": dict(reversed(list(detail.items())))})
    assert h != audit.link(audit.GENESIS, {**row, "detail": {**detail, "extra": 1}})
    assert h != audit.link(audit.GENESIS, {**row, "actor": "bob", "detail": detail})
