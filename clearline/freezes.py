"""The emergency freezes snapshot: which processors, merchants and bank accounts are held.

The finance workbench owns the freezes (who froze what, when, why, and who lifted it) and
publishes the active ones, each time they change, as one immutable file,
`<workbench state>/published/freezes.json` — written under a temporary name and renamed,
so a reader sees the old set or the new one, never half of one. The components that act
on a freeze read that file and never the workbench's store: the decision API and the risk
flow (a frozen merchant's orders get a policy reason), and the platform's payout run
(a payout to a frozen merchant, or from a frozen bank account, is held: `holding_payout`;
lifting the freeze releases what it held: `release_of`).

The format lives here, in the ground, so the writer (`publish`) and every reader share
one definition: `{"freezes": [{kind, target, tenant, reason, frozen_by, frozen_at}, …]}`.
A missing file means nothing is frozen. `Reader` is what a hot path holds: it re-reads
the file only when a stat says it was replaced, so a request costs a stat, not a parse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from clearline import config, events

log = logging.getLogger("clearline.freezes")

KINDS = ("processor", "merchant", "bank_account")
PUBLISHED = Path("published") / "freezes.json"  # under the workbench's state folder
FIELDS = ("kind", "target", "tenant", "reason", "frozen_by", "frozen_at")


class FreezeSnapshotError(config.ConfigError, ValueError):
    """The freezes file is not what the workbench publishes; the message names the file and why."""


@dataclass(frozen=True, slots=True)
class Freezes:
    """The active freezes as one immutable value, looked up by (kind, target)."""

    by_target: Mapping[tuple[str, str], Mapping[str, Any]]

    @classmethod
    def of(cls, active: list[dict]) -> Freezes:
        return cls({(f["kind"], f["target"]): f for f in active})

    def holding(self, kind: str, target: str) -> Mapping[str, Any] | None:
        """The freeze holding this target, if any."""
        return self.by_target.get((kind, target))

    def holding_payout(self, merchant_id: str, account: str | None, at: datetime) -> Mapping[str, Any] | None:
        """The freeze that holds a payout sent at `at` to this merchant from the platform's
        bank `account`: one on the merchant, else one on the account, placed at or before
        `at`. A freeze holds new payouts; those sent before it stay sent."""
        for kind, target in (("merchant", merchant_id), ("bank_account", account)):
            f = self.by_target.get((kind, target)) if target else None
            if f is not None and datetime.fromisoformat(str(f["frozen_at"])) <= at:
                return f
        return None

    def __len__(self) -> int:
        return len(self.by_target)


NONE = Freezes({})


def snapshot_path(state_dir: Path) -> Path:
    return Path(state_dir) / PUBLISHED


def publish(state_dir: Path, active: list[dict]) -> Path:
    """Write the active freezes (each with FIELDS) as the snapshot, atomically; its path."""
    path = snapshot_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"freezes": [{k: f[k] for k in FIELDS} for f in active]}, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_file(path: Path) -> list[dict]:
    """The freezes in a snapshot file; [] when there is none. A file that is not a snapshot
    is a FreezeSnapshotError naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise FreezeSnapshotError(f"freezes snapshot {path}: {exc}") from None
    active = data.get("freezes") if isinstance(data, dict) else None
    if not isinstance(active, list) or not all(
        isinstance(f, dict) and f.get("kind") in KINDS and isinstance(f.get("target"), str) for f in active
    ):
        raise FreezeSnapshotError(
            f'freezes snapshot {path}: expected {{"freezes": [{{"kind": one of {", ".join(KINDS)}, '
            '"target": text, …}, …]}'
        )
    return active


def read_active(state_dir: Path) -> list[dict]:
    """The active freezes the workbench in `state_dir` last published: kind, target, tenant,
    reason, frozen_by, frozen_at."""
    return read_file(snapshot_path(state_dir))


def is_frozen(active: list[dict], kind: str, target: str) -> dict | None:
    """The freeze holding this target, if any."""
    return Freezes.of(active).holding(kind, target)  # type: ignore[return-value]


def path_from_config(policy_cfg: Mapping[str, Any]) -> Path:
    """Where the decision side reads the snapshot: configs/policy.yaml `freezes.snapshot`,
    or, when that is null, the workbench's (configs/workbench.yaml `state_dir`, relative to
    CLEARLINE_HOME like every state folder)."""
    given = (policy_cfg.get("freezes") or {}).get("snapshot")
    if given:
        return config.state_path(given)
    return snapshot_path(config.state_path(config.typed(config.load("workbench"), "state_dir", str)))


class Reader:
    """The snapshot at `path` as of now, for a hot path: `current()` stats the file and
    parses it only when it was replaced (inode, size or mtime changed), else returns the
    freezes it parsed last. The workbench replaces the file on every change, so a lift or a
    new freeze is seen at the next call, without a restart.

    A file that turns unreadable while running keeps the last good set (logged once per
    version of the file): a checkout must still get a decision, and a freeze already known
    is not forgotten because of a bad write. At start (`Reader(path)`) it is an error."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._seen: tuple[int, int, int] | None = None
        self._freezes = NONE
        self.current(strict=True)

    def current(self, strict: bool = False) -> Freezes:
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            seen = None
        if seen == self._seen:
            return self._freezes
        try:
            self._freezes = Freezes.of(read_file(self.path)) if seen else NONE
        except FreezeSnapshotError as exc:
            if strict:
                raise
            log.error("%s; keeping the %d freezes read before", exc, len(self._freezes))
        self._seen = seen
        return self._freezes


def reader_from_config() -> Reader:
    """The Reader of the snapshot configs/policy.yaml names (`path_from_config`)."""
    return Reader(path_from_config(config.load("policy")))


def release_of(held: events.Event, released_by: str, at: datetime) -> events.Event:
    """The `payout.released` event that sends a held payout (`held`, a `payout.held`) on
    the UTC day of `at` (aware). Its id is derived from the held event's alone, so
    releasing the same payout twice (a second lift, a retry after a timeout) is one
    event, which the ledger counts once."""
    p = held.payload
    if not isinstance(p, events.PayoutHeld):
        raise ValueError(f"{held.event_id} is a {held.event_type}, not a held payout")
    event_id = "rel_" + hashlib.sha256(held.event_id.encode()).hexdigest()[:32]
    payload = events.PayoutReleased(p.payout_id, p.amount, at.astimezone(timezone.utc).date(), released_by)
    return events.Event(event_id, "payout.released", at, held.merchant_id, held.reseller_id, payload)
