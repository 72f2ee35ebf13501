"""The audit log's hash chain: every action a person takes in the workbench, tamper-evident.

Like the ledger's postings (clearline.ledger.chain), each row is linked to the one before:

    genesis   = SHA-256("clearline-workbench-audit-v1")
    hash      = SHA-256(prev_hash bytes || canonical(row))      (`chain.link`, shared)
    canonical = UTF-8 of the compact JSON array, ASCII escapes, keys sorted:
                [seq, at, actor, action, variance_id, detail]

`seq` counts from 1 without gaps, so a deleted row breaks the chain at the next one, and a
row edited in place no longer hashes to its stored hash. `verify` recomputes the chain from
the stored rows and names the first bad link; the store also keeps the head (the newest
hash) beside the rows, which catches a truncated tail.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from clearline.ledger import chain

GENESIS = hashlib.sha256(b"clearline-workbench-audit-v1").hexdigest()
FIELDS = ("seq", "at", "actor", "action", "variance_id", "detail")


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash covers (`detail` a JSON object, the rest strings or null)."""
    return json.dumps([row[f] for f in FIELDS], sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def link(prev_hash: str, row: Mapping[str, Any]) -> str:
    return chain.link(prev_hash, canonical(row))


@dataclass(frozen=True)
class BadAuditLink:
    seq: int
    why: str

    def __str__(self) -> str:
        return f"audit row {self.seq}: {self.why}"


def verify(rows: Iterable[Mapping[str, Any]], head: str | None = None) -> BadAuditLink | None:
    """The first bad link of the chain (rows in seq order, each with `prev_hash` and
    `hash`), or None when every row links; `head`, when given, must be the last hash."""
    prev, expected_seq = GENESIS, 1
    for row in rows:
        if row["seq"] != expected_seq:
            return BadAuditLink(row["seq"], f"expected row {expected_seq} here: a row is missing")
        if row["prev_hash"] != prev:
            return BadAuditLink(row["seq"], "its prev_hash is not the previous row's hash")
        if link(prev, row) != row["hash"]:
            return BadAuditLink(row["seq"], "its content does not hash to its stored hash (edited)")
        prev, expected_seq = row["hash"], expected_seq + 1
    if head is not None and head != prev:
        return BadAuditLink(expected_seq, "the log ends before its recorded head (rows removed from the end)")
    return None
