"""The workbench's own store: users, API tokens, adjusting-entry proposals, freezes, failed
logins and the audit log, in SQLite under its state folder (the workbench process is its
only writer), and the session-signing secret beside it (generated once with `secrets`,
readable by its owner only).

The audit table takes inserts only: triggers refuse UPDATE and DELETE, and the hash chain
(`audit`) shows any change made around them.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from clearline.pipelines.workbench import audit, auth
from clearline.sqlite_wal import to_wal

_DDL = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, tenant TEXT NOT NULL, password_hash TEXT, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES users(name), created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS proposals (
    proposal_id INTEGER PRIMARY KEY, variance_id TEXT NOT NULL, tenant TEXT, body TEXT NOT NULL,
    proposed_by TEXT NOT NULL, proposed_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'proposed',
    decided_by TEXT, decided_at TEXT, event_id TEXT, reason TEXT
);
CREATE TABLE IF NOT EXISTS freezes (
    freeze_id INTEGER PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL, tenant TEXT, reason TEXT NOT NULL,
    frozen_by TEXT NOT NULL, frozen_at TEXT NOT NULL, lifted_by TEXT, lifted_at TEXT, lift_note TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_freeze ON freezes (kind, target) WHERE lifted_at IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, variance_id TEXT,
    detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS login_failures_by_key ON login_failures (key, at);
CREATE TABLE IF NOT EXISTS login_blocks (key TEXT PRIMARY KEY, since REAL NOT NULL, until REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class UserError(ValueError):
    """A user request the store refuses (unknown role or tenant, a name taken); says why."""


def now_iso(at: datetime | None = None) -> str:
    return (at or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="microseconds")


class WorkbenchState:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.dir = state_dir
        self.path = state_dir / "workbench.sqlite"
        self._lock = threading.Lock()
        with self._con() as con:
            con.executescript(_DDL)

    @contextmanager
    def _con(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        to_wal(con, 30)  # requests and the CLI open it at once (clearline.sqlite_wal)
        con.execute("PRAGMA foreign_keys=ON")
        try:
            yield con
        finally:
            con.close()

    def secret(self) -> str:
        """The session-signing secret: made once, kept in the state folder (mode 0600)."""
        path = self.dir / "session.secret"
        if not path.is_file():
            fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            os.replace(path.with_suffix(".tmp"), path)
        return path.read_text().strip()

    # ---------------------------------------------------------------- users

    def add_user(self, name: str, role: str, tenant: str, password: str | None) -> None:
        if role not in auth.ROLES:
            raise UserError(f"role {role!r}: choose one of {', '.join(auth.ROLES)}")
        if not name.strip() or ":" in name:
            raise UserError(f"user name {name!r}: must be non-empty and hold no ':'")
        pw = auth.hash_password(password) if password else None
        with self._con() as con:
            try:
                con.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)", [name, role, tenant, pw, now_iso()])
            except sqlite3.IntegrityError:
                raise UserError(f"user {name!r} exists already") from None

    def set_password(self, name: str, password: str) -> None:
        with self._con() as con:
            if not con.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", [auth.hash_password(password), name]
            ).rowcount:
                raise UserError(f"no user {name!r}")

    def add_token(self, name: str) -> str:
        token = auth.new_token()
        with self._con() as con:
            con.execute("INSERT INTO tokens VALUES (?, ?, ?)", [auth.token_digest(token), name, now_iso()])
        return token

    def user(self, name: str) -> dict | None:
        with self._con() as con:
            row = con.execute("SELECT * FROM users WHERE name = ?", [name]).fetchone()
        return dict(row) if row else None

    def login(self, name: str, password: str) -> dict | None:
        user = self.user(name)
        return user if user and auth.password_matches(user["password_hash"], password) else None

    def user_by_token(self, token: str) -> dict | None:
        with self._con() as con:
            row = con.execute(
                "SELECT u.* FROM tokens t JOIN users u ON u.name = t.name WHERE t.token_sha256 = ?",
                [auth.token_digest(token)],
            ).fetchone()
        return dict(row) if row else None

    # ---------------------------------------------------------------- failed logins

    def login_blocked(self, keys: list[str], now: float) -> tuple[str, float] | None:
        """The first of `keys` (a user name's, a client address's) refused at `now`, and
        until when (epoch seconds); None when none is."""
        with self._con() as con:
            for key in keys:
                row = con.execute("SELECT until FROM login_blocks WHERE key = ? AND until > ?", [key, now]).fetchone()
                if row:
                    return key, float(row["until"])
        return None

    def login_failed(
        self, limits: dict[str, int], now: float, window_s: float, cooloff_s: float
    ) -> list[tuple[str, float]]:
        """Count one failed attempt at `now` against each key; a key whose failures within
        the window reach its limit is refused until `now + cooloff_s` and starts afresh
        after it. The keys this attempt blocked, with until when. One transaction, so
        workers counting at once neither lose a failure nor block twice."""
        blocked = []
        with self._lock, self._con() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                # failures past the window count no more, whoever they were (names that are
                # tried once and never again do not pile up)
                con.execute("DELETE FROM login_failures WHERE at <= ?", [now - window_s])
                for key, limit in limits.items():
                    con.execute("INSERT INTO login_failures VALUES (?, ?)", [key, now])
                    (count,) = con.execute("SELECT count(*) FROM login_failures WHERE key = ?", [key]).fetchone()
                    if count >= limit:
                        con.execute("INSERT OR REPLACE INTO login_blocks VALUES (?, ?, ?)", [key, now, now + cooloff_s])
                        con.execute("DELETE FROM login_failures WHERE key = ?", [key])
                        blocked.append((key, now + cooloff_s))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return blocked

    def login_succeeded(self, key: str) -> None:
        """A right password: the name's failures so far no longer count."""
        with self._con() as con:
            con.execute("DELETE FROM login_failures WHERE key = ?", [key])

    # ---------------------------------------------------------------- audit

    def record(
        self, actor: str, action: str, variance_id: str | None = None, at: datetime | None = None, **detail
    ) -> dict:
        """Append one action to the audit log (chained to the row before); the row."""
        with self._lock, self._con() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                last = con.execute("SELECT seq, hash FROM audit_head").fetchone()
                seq, prev = (last["seq"] + 1, last["hash"]) if last else (1, audit.GENESIS)
                row = {"seq": seq, "at": now_iso(at), "actor": actor, "action": action, "variance_id": variance_id}
                row["detail"] = json.loads(json.dumps(detail, default=str))
                row["prev_hash"], row["hash"] = prev, audit.link(prev, row)
                con.execute(
                    "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        seq,
                        row["at"],
                        actor,
                        action,
                        variance_id,
                        json.dumps(row["detail"], sort_keys=True),
                        prev,
                        row["hash"],
                    ],
                )
                con.execute("INSERT OR REPLACE INTO audit_head VALUES (1, ?, ?)", [seq, row["hash"]])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return row

    def audit_rows(self, variance_id: str | None = None) -> list[dict]:
        where, args = ("WHERE variance_id = ?", [variance_id]) if variance_id else ("", [])
        with self._con() as con:
            rows = con.execute(f"SELECT * FROM audit {where} ORDER BY seq", args).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    def audit_head(self) -> str | None:
        with self._con() as con:
            row = con.execute("SELECT hash FROM audit_head").fetchone()
        return row["hash"] if row else None

    def verify_audit(self) -> audit.BadAuditLink | None:
        return audit.verify(self.audit_rows(), self.audit_head())

    # ---------------------------------------------------------------- freezes

    def add_freeze(self, kind: str, target: str, tenant: str | None, reason: str, by: str) -> int:
        with self._con() as con:
            try:
                cur = con.execute(
                    "INSERT INTO freezes (kind, target, tenant, reason, frozen_by, frozen_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [kind, target, tenant, reason, by, now_iso()],
                )
            except sqlite3.IntegrityError:
                raise UserError(f"{kind} {target} is frozen already") from None
            return int(cur.lastrowid)

    def lift_freeze(self, freeze_id: int, by: str, note: str) -> dict:
        with self._con() as con:
            done = con.execute(
                "UPDATE freezes SET lifted_by = ?, lifted_at = ?, lift_note = ?"
                " WHERE freeze_id = ? AND lifted_at IS NULL",
                [by, now_iso(), note, freeze_id],
            ).rowcount
            if not done:
                raise UserError(f"no active freeze {freeze_id}")
            return dict(con.execute("SELECT * FROM freezes WHERE freeze_id = ?", [freeze_id]).fetchone())

    def freezes(self, active_only: bool = False) -> list[dict]:
        where = " WHERE lifted_at IS NULL" if active_only else ""
        with self._con() as con:
            return [dict(r) for r in con.execute(f"SELECT * FROM freezes{where} ORDER BY freeze_id").fetchall()]

    def freeze(self, freeze_id: int) -> dict | None:
        with self._con() as con:
            row = con.execute("SELECT * FROM freezes WHERE freeze_id = ?", [freeze_id]).fetchone()
        return dict(row) if row else None

    # ---------------------------------------------------------------- proposals

    def add_proposal(self, variance_id: str, tenant: str | None, body: dict, proposed_by: str) -> int:
        with self._con() as con:
            cur = con.execute(
                "INSERT INTO proposals (variance_id, tenant, body, proposed_by, proposed_at) VALUES (?, ?, ?, ?, ?)",
                [variance_id, tenant, json.dumps(body, sort_keys=True), proposed_by, now_iso()],
            )
            return int(cur.lastrowid)

    def proposal(self, proposal_id: int) -> dict | None:
        with self._con() as con:
            row = con.execute("SELECT * FROM proposals WHERE proposal_id = ?", [proposal_id]).fetchone()
        return {**dict(row), "body": json.loads(row["body"])} if row else None

    def proposals(self, variance_id: str) -> list[dict]:
        with self._con() as con:
            rows = con.execute("SELECT * FROM proposals WHERE variance_id = ? ORDER BY proposal_id", [variance_id])
            return [{**dict(r), "body": json.loads(r["body"])} for r in rows.fetchall()]

    def decide(self, proposal_id: int, status: str, by: str, event_id: str | None = None, reason: str | None = None):
        with self._con() as con:
            con.execute(
                "UPDATE proposals SET status = ?, decided_by = ?, decided_at = ?, event_id = ?, reason = ?"
                " WHERE proposal_id = ? AND status = 'proposed'",
                [status, by, now_iso(), event_id, reason, proposal_id],
            )
