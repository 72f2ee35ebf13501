"""What `clearline demo` prints last: the workbench command over the demo's folders and a
demo user's login that works (a fresh password each run; the previous one stops working)."""

from __future__ import annotations

from clearline.pipelines.demo import workbench_login
from clearline.pipelines.workbench.state import WorkbenchState


def test_the_printed_login_logs_in_and_a_second_run_replaces_the_password(tmp_path):
    first = workbench_login(tmp_path)
    assert first["workbench"].split() == [
        "clearline",
        "workbench",
        "--state-dir",
        str(tmp_path / "workbench"),
        "--recon-state-dir",
        str(tmp_path / "recon"),
        "--ledger-state-dir",
        str(tmp_path / "ledger"),
    ]
    name, password = first["workbench_login"].split()[0], first["workbench_login"].split()[2]
    state = WorkbenchState(tmp_path / "workbench")
    assert state.login(name, password)["role"] == "approver"
    again = workbench_login(tmp_path)["workbench_login"].split()[2]
    assert again != password and state.login(name, again) and state.login(name, password) is None
    assert state.verify_audit() is None
