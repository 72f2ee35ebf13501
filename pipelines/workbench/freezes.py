"""Emergency freezes: an approver holds a processor, a merchant or a bank account.

The workbench keeps every freeze (who, when, why; who lifted it, when, why) in its own
store, audits both moves, and publishes the active ones as an immutable snapshot,
`<workbench state>/published/freezes.json` (written under a temporary name and renamed),
which the components that act on them read without opening the workbench's store: the
decision API and the risk flow name a merchant's freeze as a policy reason, and the
platform's payout run holds the payouts a freeze covers (`payout.held`; lifting releases
them, `actions.lift`). The snapshot's format, its writer (`publish`) and its
readers live in the ground, `clearline.freezes`, so both sides share one definition.

Who may freeze what (`check`): approvers only; a reseller's approver only its own
merchants; processors and bank accounts, which serve every tenant, only the platform's.
"""

from __future__ import annotations

from clearline.freezes import KINDS, is_frozen, publish, read_active
from clearline.pipelines.workbench import auth

__all__ = ["KINDS", "check", "is_frozen", "publish", "read_active"]


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
