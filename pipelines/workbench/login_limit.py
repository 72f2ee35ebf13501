"""Failed logins: after too many for one user name, or from one client address, within a
window, further attempts are refused for a cooling-off period — a right password too, so
guessing cannot go on in the background (configs/workbench.yaml `login_limit`).

The form counts a failure against the name and the client address; the JSON API, whose
token names no one, against the client address only. A refused attempt is told when it may
try again (the form's message; the API's 429 with Retry-After). Every block and every
refused attempt is a row of the audit log. The counts live in the workbench's SQLite store
(`WorkbenchState.login_failed`), so they hold across restarts and across workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from clearline.pipelines.workbench.settings import LoginLimit
from clearline.pipelines.workbench.state import WorkbenchState


class TooMany(Exception):
    """This attempt is refused: too many failures; `message` says for whom and until when."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.message, self.retry_after_s = message, retry_after_s


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _who(key: str) -> str:
    kind, _, value = key.partition(":")
    return f"for {value}" if kind == "name" else f"from {value}"


@dataclass
class Guard:
    """The rule over the store, with the application's clock (epoch seconds)."""

    state: WorkbenchState
    limit: LoginLimit
    clock: Callable[[], float]

    def keys(self, name: str | None, client: str | None) -> dict[str, int]:
        """The counters an attempt is held against, with their limits."""
        keys = {f"name:{name}": self.limit.per_name} if name else {}
        if client:
            keys[f"client:{client}"] = self.limit.per_client
        return keys

    def check(self, actor: str, name: str | None, client: str | None) -> None:
        """Refuse (TooMany, audited) an attempt while its name or address cools off."""
        now = self.clock()
        blocked = self.state.login_blocked(list(self.keys(name, client)), now)
        if blocked is None:
            return
        key, until = blocked
        message = f"Too many failed logins {_who(key)}: try again after {_when(until)}."
        self.state.record(actor, "login_refused", None, client=client, blocked=key, until=_when(until))
        raise TooMany(message, max(1, math.ceil(until - now)))

    def failed(self, actor: str, name: str | None, client: str | None) -> None:
        """Count a failed attempt; audit each block it starts."""
        blocks = self.state.login_failed(
            self.keys(name, client), self.clock(), self.limit.window_s, self.limit.cooloff_s
        )
        for key, until in blocks:
            self.state.record(actor, "login_blocked", None, client=client, blocked=key, until=_when(until))

    def succeeded(self, name: str) -> None:
        self.state.login_succeeded(f"name:{name}")
