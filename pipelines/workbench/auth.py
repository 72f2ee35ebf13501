"""Who may do what: roles, password hashing and API tokens.

Passwords are hashed with argon2id (argon2-cffi's PasswordHasher, its default parameters);
nothing here implements cryptography. API tokens are 32 random bytes (`secrets`), shown
once; only their SHA-256 is stored — a token has 256 bits of entropy, so a slow hash adds
nothing, and a fast one lets a request be looked up by it.

Roles are ordered: a viewer reads; a resolver also assigns, resolves and proposes
adjusting entries; an approver also approves (not their own proposals) and freezes.
A user belongs to one tenant (a reseller id) or to the platform, which sees every tenant.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("viewer", "resolver", "approver")
PLATFORM = "platform"
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return "cwb_" + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def may(role: str, needed: str) -> bool:
    """A role holds every right of the roles before it."""
    return ROLES.index(role) >= ROLES.index(needed)


def sees(user_tenant: str, owner: str | None) -> bool:
    """A platform user sees everything; a reseller's user only what its merchants own
    (a variance of no known merchant belongs to the platform)."""
    return user_tenant == PLATFORM or (owner is not None and owner == user_tenant)
