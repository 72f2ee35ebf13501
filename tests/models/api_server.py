"""`clearline serve` in a subprocess on loopback, and a tiny HTTP client for it: the real
server the API tests talk to (tests/models/test_api.py, test_api_hostile.py)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

from tests import REPO_ROOT

KEYS = {t: f"dev-api-key-{t}" for t in ("rs_001", "rs_002", "rs_003")}  # behind configs/tenants.yaml's hashes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`clearline serve` in a subprocess, and a tiny HTTP client for it."""

    def __init__(self, env: dict[str, str], args: list[str]):
        self.port = free_port()
        self.output: tuple[str, str] | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clearline.pipelines.cli", "serve", "--port", str(self.port), *args],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 240  # a loaded machine (the suite, other sessions) starts it slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.proc.stderr.read().decode()}")
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("serve did not answer /health within 240 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body=None, key: str | None = None, raw: bool = False):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"} | ({"X-API-Key": key} if key else {})
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if raw:
            return resp.status, data.decode(), dict(resp.getheaders())
        return resp.status, json.loads(data), dict(resp.getheaders())

    def stop(self) -> tuple[str, str]:
        """Stop the server (once; again is a no-op); its stdout and stderr (the server's log)."""
        if self.output is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                out, err = self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
            self.output = out.decode(), err.decode()
        return self.output
