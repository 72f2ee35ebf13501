"""Helpers for driving the workbench over HTTP in tests: the real app under a real uvicorn
server on a free port of 127.0.0.1 (in a thread), a `requests` session per person, and
logging in through the real form (its CSRF token read from the page)."""

from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import requests
import uvicorn

from clearline.pipelines.workbench.app import create_app
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.workbench.state import WorkbenchState

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """Epoch seconds the app reads; a test moves it forward to expire a session."""

    def __init__(self, now: float | None = None) -> None:
        self.now = now if now is not None else time.time()

    def __call__(self) -> float:
        return self.now


def add_users(settings: WorkbenchSettings, *users: tuple[str, str, str]) -> WorkbenchState:
    state = WorkbenchState(settings.state_dir)
    for name, role, tenant in users:
        state.add_user(name, role, tenant, PASSWORD)
    return state


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One person's cookies against the server; redirects are not followed."""

    def __init__(self, base: str) -> None:
        self.base, self.http = base, requests.Session()

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.base + path, allow_redirects=False, timeout=60, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.http.post(self.base + path, allow_redirects=False, timeout=60, **kw)

    def login(self, name: str, password: str = PASSWORD) -> str:
        """Log in through the form; the CSRF token of the new session."""
        token = csrf_of(self.get("/login").text)
        r = self.post("/login", data={"name": name, "password": password, "csrf_token": token, "next": "/queue"})
        assert r.status_code == 303, r.text
        return csrf_of(self.get("/queue").text)


@contextmanager
def serving(settings: WorkbenchSettings, clock: Clock | None = None, bootstrap: str | None = None) -> Iterator[str]:
    """The workbench served on a free port; yields its base URL."""
    port = free_port()
    app = create_app(settings, clock=clock or Clock(), bootstrap=bootstrap)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the workbench did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
