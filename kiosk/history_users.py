"""Users and their server-side sessions in the kiosk's history database.

A session is a random token in the browser's cookie; the database keeps only its SHA-256, with the
user, the session's CSRF token and when it ends. Logging out, a password change, disabling the user
and an admin's "end sessions" delete the rows, so a copied cookie stops working at once.
"""
from __future__ import annotations

import hashlib
from typing import Any

USERS_MIGRATION = "ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0"


def token_id(token: str) -> str:
    """The database key of a session token (its SHA-256: a stolen database holds no live cookie)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class UsersMixin:
    """Users and sessions of :class:`~kiosk.history.History` (needs ``_exec``, ``_rows``, ``_db``)."""

    def _migrate_users(self) -> None:
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(users)").fetchall()}
        if "disabled" not in cols:
            self._db.execute(USERS_MIGRATION)

    # -- users ---------------------------------------------------------------------------------------
    def set_user(self, name: str, role: str, pw_hash: str, ts: float) -> None:
        """Create or replace a user (enabled)."""
        self._exec("INSERT OR REPLACE INTO users (name, role, hash, created, disabled) VALUES (?, ?, ?, ?, 0)",
                   [name, role, pw_hash, ts])

    def set_password(self, name: str, pw_hash: str) -> bool:
        """Replace a user's password hash; ends the user's sessions. False if no such user."""
        done = self._exec("UPDATE users SET hash = ? WHERE name = ?", [pw_hash, name]).rowcount > 0
        self.end_sessions(name)
        return done

    def set_hash(self, name: str, pw_hash: str) -> None:
        """Replace a password hash by one of the same password with newer parameters (sessions stay)."""
        self._exec("UPDATE users SET hash = ? WHERE name = ?", [pw_hash, name])

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable (ending the sessions) or enable a user. False if no such user."""
        done = self._exec("UPDATE users SET disabled = ? WHERE name = ?", [int(disabled), name]).rowcount > 0
        if disabled:
            self.end_sessions(name)
        return done

    def user(self, name: str) -> dict[str, Any] | None:
        """A user's row (name, role, hash, created, disabled), or ``None``."""
        rows = self._rows("SELECT * FROM users WHERE name = ?", [name])
        return rows[0] if rows else None

    def users(self) -> list[dict[str, Any]]:
        """Every user (no hashes) with the number of live sessions, by name."""
        return self._rows("SELECT u.name, u.role, u.created, u.disabled, "
                          "(SELECT COUNT(*) FROM sessions s WHERE s.user = u.name) AS sessions "
                          "FROM users u ORDER BY u.name")

    def user_count(self) -> int:
        """How many users exist."""
        return int(self._rows("SELECT COUNT(*) AS n FROM users")[0]["n"])

    # -- sessions ------------------------------------------------------------------------------------
    def add_session(self, token: str, user: str, csrf: str, now: float, expires: float, address: str) -> None:
        """Keep a new session (``token`` is hashed)."""
        self._exec("INSERT INTO sessions (id, user, csrf, created, seen, expires, address) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", [token_id(token), user, csrf, now, now, expires, address])

    def session(self, token: str, now: float) -> dict[str, Any] | None:
        """The live session of ``token`` with its user's role, or ``None`` (ended, expired, user disabled)."""
        rows = self._rows("SELECT s.id, s.user, s.csrf, s.expires, u.role FROM sessions s JOIN users u "
                          "ON u.name = s.user WHERE s.id = ? AND s.expires > ? AND u.disabled = 0",
                          [token_id(token), now])
        return rows[0] if rows else None

    def end_session(self, token: str) -> None:
        """End one session (logout)."""
        self._exec("DELETE FROM sessions WHERE id = ?", [token_id(token)])

    def end_sessions(self, user: str) -> int:
        """End every session of ``user``; returns how many."""
        return self._exec("DELETE FROM sessions WHERE user = ?", [user]).rowcount
