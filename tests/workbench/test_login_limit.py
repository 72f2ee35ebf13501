"""Failed logins (pipelines/workbench/login_limit.py): after too many for one name, or from
one client address, within the window, further attempts are refused for the cooling-off
period — the right password or token too — by the form (429, the message on the page) and
by the API (429, Retry-After); the window and the cool-off pass on the injected clock, not
by sleeping; the counts are in the workbench's SQLite store, so a second server on the same
state folder (a restart, another worker) refuses as well; every step is in the audit log."""

from __future__ import annotations

import dataclasses
import sqlite3
from contextlib import closing

import pytest

from clearline.pipelines.workbench.settings import LoginLimit
from clearline.pipelines.workbench.state import WorkbenchState
from tests.workbench.web import PASSWORD, Browser, Clock, add_users, csrf_of, serving

LIMIT = LoginLimit(per_name=3, per_client=5, window_s=600, cooloff_s=900)


@pytest.fixture
def settings(deployment_copy):
    settings = dataclasses.replace(deployment_copy, login_limit=LIMIT)
    add_users(settings, ("pat", "resolver", "platform"), ("amy", "approver", "platform"))
    return settings


def attempt(b: Browser, name: str, password: str):
    token = csrf_of(b.get("/login").text)
    return b.post("/login", data={"name": name, "password": password, "csrf_token": token, "next": "/queue"})


def actions(settings) -> list[tuple[str, str]]:
    return [(r["actor"], r["action"]) for r in WorkbenchState(settings.state_dir).audit_rows()]


def test_the_nth_failure_for_a_name_refuses_even_the_right_password_until_the_cool_off(settings):
    clock = Clock()
    with serving(settings, clock) as base:
        b = Browser(base)
        for _ in range(LIMIT.per_name):
            assert attempt(b, "pat", "wrong").status_code == 401
        refused = attempt(b, "pat", PASSWORD)
        assert refused.status_code == 429 and "Too many failed logins for pat: try again after" in refused.text
        assert 'id="flash"' in refused.text and "Wrong name or password" not in refused.text
        assert attempt(b, "amy", PASSWORD).status_code == 303  # another name from the same address is not held
        clock.now += LIMIT.cooloff_s - 1
        assert attempt(b, "pat", PASSWORD).status_code == 429
        clock.now += 2
        assert attempt(b, "pat", PASSWORD).status_code == 303
    assert actions(settings) == [
        *[("pat", "login_failed")] * LIMIT.per_name,
        ("pat", "login_blocked"),
        ("pat", "login_refused"),
        ("amy", "login"),
        ("pat", "login_refused"),
        ("pat", "login"),
    ]
    state = WorkbenchState(settings.state_dir)
    blocked = next(r for r in state.audit_rows() if r["action"] == "login_blocked")
    assert blocked["detail"]["blocked"] == "name:pat" and blocked["detail"]["client"] == "127.0.0.1"
    assert state.verify_audit() is None


def test_failures_older_than_the_window_do_not_count_and_a_right_password_clears_them(settings):
    clock = Clock()
    with serving(settings, clock) as base:
        b = Browser(base)
        for _ in range(LIMIT.per_name - 1):
            assert attempt(b, "pat", "wrong").status_code == 401
        clock.now += LIMIT.window_s + 1
        assert attempt(b, "pat", "wrong").status_code == 401  # one failure within the window now
        assert attempt(b, "pat", PASSWORD).status_code == 303
        for _ in range(LIMIT.per_name - 1):  # the count starts afresh after a right password
            assert attempt(b, "pat", "wrong").status_code == 401
        assert attempt(b, "pat", PASSWORD).status_code == 303
    assert ("pat", "login_blocked") not in actions(settings)


def test_one_address_failing_for_many_names_is_held_and_a_second_server_holds_it_too(settings):
    clock = Clock()
    with serving(settings, clock) as first:
        b = Browser(first)
        for n in range(LIMIT.per_client):
            assert attempt(b, f"guess{n}", "wrong").status_code == 401
    with serving(settings, clock) as second:  # a restart, or another worker on the same state folder
        b = Browser(second)
        refused = attempt(b, "amy", PASSWORD)
        assert refused.status_code == 429 and "Too many failed logins from 127.0.0.1" in refused.text
        clock.now += LIMIT.cooloff_s + 1
        assert attempt(b, "amy", PASSWORD).status_code == 303
    assert ("guess4", "login_blocked") in actions(settings)


def test_bad_api_tokens_from_an_address_are_refused_with_429_and_retry_after(settings):
    clock = Clock()
    good = {"Authorization": f"Bearer {WorkbenchState(settings.state_dir).add_token('pat')}"}
    bad = {"Authorization": "Bearer cwb_not-a-token"}
    with serving(settings, clock) as base:
        api = Browser(base).http
        assert api.get(f"{base}/api/variances", headers=good).status_code == 200
        for _ in range(LIMIT.per_client):
            assert api.get(f"{base}/api/variances", headers=bad).status_code == 401
        refused = api.get(f"{base}/api/variances", headers=good)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == LIMIT.cooloff_s
        assert refused.json()["error"].startswith("Too many failed logins from 127.0.0.1")
        clock.now += LIMIT.cooloff_s + 1
        assert api.get(f"{base}/api/variances", headers=good).status_code == 200
    assert actions(settings) == [
        *[("api", "token_failed")] * LIMIT.per_client,
        ("api", "login_blocked"),
        ("api", "login_refused"),
    ]


def test_failures_past_the_window_are_forgotten_for_every_name(tmp_path):
    """Names tried once and never again do not pile up in the store."""
    state = WorkbenchState(tmp_path)
    for n in range(10):
        assert state.login_failed({f"name:u{n}": 5}, 1000.0, LIMIT.window_s, LIMIT.cooloff_s) == []
    state.login_failed({"name:late": 5}, 1000.0 + LIMIT.window_s, LIMIT.window_s, LIMIT.cooloff_s)
    with closing(sqlite3.connect(state.path)) as con:
        assert con.execute("SELECT key FROM login_failures").fetchall() == [("name:late",)]
