"""`clearline workbench` from the command line: users added with a password from stdin or
as an API token, a bad role or tenant refused in one line, and the server started on the
port asked for, answering a person logged in with that password and a script with that
token."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import requests

from tests.workbench.web import PASSWORD, Browser, free_port


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clearline.pipelines.cli", "workbench", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_users_from_the_cli_and_the_server_on_its_port(deployment_copy):
    s = deployment_copy
    folders = ["--state-dir", str(s.state_dir), "--recon-state-dir", str(s.recon_state)]
    folders += ["--ledger-state-dir", str(s.ledger_state)]
    added = cli(*folders, "user", "add", "ann", "--role", "resolver", "--tenant", "rs_002", "--password-stdin",
                "--json", stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["tenant"] == "rs_002" and "token" not in json.loads(added.stdout)
    robot = cli(*folders, "user", "add", "robot", "--role", "viewer", "--tenant", "platform", "--token", "--json")
    token = json.loads(robot.stdout)["token"]
    for bad, words in (
        (["--role", "boss", "--tenant", "platform"], "boss"),
        (["--role", "viewer", "--tenant", "rs_9"], "rs_9"),
    ):
        refused = cli(*folders, "user", "add", "eve", *bad, "--token")
        assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr
    again = cli(*folders, "user", "add", "ann", "--role", "viewer", "--tenant", "platform", "--token")
    assert again.returncode == 2 and "exists already" in again.stderr

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "clearline.pipelines.cli", "workbench", "--port", str(port), *folders],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/login", timeout=5)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        assert Browser(base).login("ann")
        listed = requests.get(f"{base}/api/variances", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert listed.status_code == 200 and listed.json()["count"] > 0
    finally:
        server.terminate()
        server.wait(30)
    exported = json.loads(cli("audit", "--json", "--state-dir", str(s.state_dir)).stdout)
    assert [(r["action"], r["detail"].get("name")) for r in exported["rows"]][:2] == [
        ("user_add", "ann"),
        ("user_add", "robot"),
    ]
