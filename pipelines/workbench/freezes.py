"""Emergency freezes: an approver holds a processor, a merchant or a bank account.

The workbench keeps every freeze (who, when, why; who lifted it, when, why) in its own
store, audits both moves, and publishes the active ones as an immutable snapshot,
`<workbench state>/published/freezes.json` (written under a temporary name and renamed),
which the components that act on them read — the payout side holds new payouts to a
frozen target, the risk flow names the freeze as a policy reason — without opening the
workbench's store (`read_active`).

Who may freeze what (`check`): approvers only; a reseller's approver only its own
merchants; processors and bank accounts, which serve every tenant, only the platform's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from clearline.pipelines.workbench import auth

KINDS = ("processor", "merchant", "bank_account")
PUBLISHED = Path("published") / "freezes.json"


def check(user: dict, kind: str, target: str, owner: str | None) -> str | None:
    """Why this user may not freeze (or lift) this target, or None when they may.
    `owner` is the reseller owning a merchant (None when unknown)."""
    if kind not in KINDS:
        return f"kind {kind!r}: choose one of {', '.join(KINDS)}"
    if not target or not target.strip():
        return "freeze what? give the processor, merchant or bank account"
    if not auth.may(user["role"], "approver"):
        return f"{user['name']} is a {user['role']}: only an approver may freeze or lift a freeze"
    if user["tenant"] != auth.PLATFORM:
        if kind != "merchant":
            return f"a {kind.replace('_', ' ')} serves every tenant: only the platform's approvers freeze it"
        if owner != user["tenant"]:
            return f"merchant {target} is not one of {user['tenant']}'s merchants"
    return None


def publish(state_dir: Path, active: list[dict]) -> Path:
    path = state_dir / PUBLISHED
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"freezes": active}, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_active(state_dir: Path) -> list[dict]:
    """The active freezes as last published: kind, target, tenant, reason, frozen_by, frozen_at."""
    path = state_dir / PUBLISHED
    return json.loads(path.read_text())["freezes"] if path.is_file() else []


def is_frozen(active: list[dict], kind: str, target: str) -> dict | None:
    """The freeze holding this target, if any."""
    return next((f for f in active if f["kind"] == kind and f["target"] == target), None)
