"""Who may see the chain: users in PostgreSQL (argon2id hashes, the kiosk's parameters), with roles.

* ``viewer``: every store, read only.
* ``regional``: a regional manager; only the stores given with ``--store`` (or every store of a
  ``--region``), everywhere on the page, the API and the CSV export.
* ``admin``: every store, and the intake counters (refused and malformed messages).

Logins, the login limit (per account and address), the password rules and CSRF tokens are the
kiosk's (:mod:`kiosk.auth`): its ``Authenticator`` reads users through :meth:`Users.user` and
re-hashes through :meth:`Users.set_hash`, as it does the kiosk's history. Sessions are server-side
as the kiosk's (:mod:`kiosk.history_users`): the cookie holds a random token, the ``sessions`` table
its SHA-256, the user, the session's CSRF token and when it ends. Replacing or disabling a user ends
their sessions at once.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import psycopg
from psycopg.rows import dict_row

from edge.errors import ConfigError
from kiosk.auth import check_user_name, hash_password
from kiosk.history_users import token_id

ROLES = ("viewer", "regional", "admin")


class Users:
    """The ``users`` and ``sessions`` tables, on a fresh connection each time (survives a database restart)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, connect_timeout=5, row_factory=dict_row) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else [{"n": cur.rowcount}]

    def user(self, name: str) -> dict[str, Any] | None:
        """A user's row (name, role, hash, stores, disabled), or ``None``."""
        rows = self._run("SELECT name, role, hash, stores, disabled FROM users WHERE name = %s", [name])
        return rows[0] if rows else None

    def set_hash(self, name: str, pw_hash: str) -> None:
        """Replace a hash by one of the same password with newer parameters (sessions stay)."""
        self._run("UPDATE users SET hash = %s WHERE name = %s", [pw_hash, name])

    def add_session(self, token: str, user: str, csrf: str, now: float, expires: float, address: str) -> None:
        """Keep a new session (``token`` is hashed); sessions that have ended are dropped."""
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            conn.execute("DELETE FROM sessions WHERE expires <= %s", [now])
            conn.execute("INSERT INTO sessions (id, user_name, csrf, created, expires, address) "
                         "VALUES (%s, %s, %s, %s, %s, %s)", [token_id(token), user, csrf, now, expires, address])

    def session(self, token: str, now: float) -> dict[str, Any] | None:
        """The live session of ``token`` with its user's role and stores as they are now, or ``None``."""
        rows = self._run("SELECT s.user_name AS user, s.csrf, u.role, u.stores FROM sessions s JOIN users u "
                         "ON u.name = s.user_name WHERE s.id = %s AND s.expires > %s AND NOT u.disabled",
                         [token_id(token), now])
        return rows[0] if rows else None

    def end_session(self, token: str) -> None:
        """End one session (logout)."""
        self._run("DELETE FROM sessions WHERE id = %s", [token_id(token)])


def add_user(conn, name: str, role: str, password: str, stores: Sequence[str] = (), *,
             known: Sequence[str] = ()) -> bool:
    """Create or replace a user (enabled; a replaced user's sessions end); returns True if one was replaced.

    Raises:
        ConfigError: a bad name, an unknown role, a password the kiosk would refuse, a regional manager
            without stores, or a store that is not the chain's.
    """
    check_user_name(name)
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {list(ROLES)}")
    pw_hash = hash_password(password)
    stores = sorted(set(stores))
    if role == "regional" and not stores:
        raise ConfigError("a regional manager needs their stores (--store ID or --region NAME)")
    if role != "regional" and stores:
        raise ConfigError(f"only a regional manager is limited to stores; a {role} sees every store")
    unknown = sorted(set(stores) - set(known))
    if unknown:
        raise ConfigError(f"stores {unknown} are not in the config's stores")
    with conn.transaction():
        existed = conn.execute("SELECT 1 FROM users WHERE name = %s", [name]).fetchone() is not None
        conn.execute("INSERT INTO users (name, role, hash, stores, created) VALUES (%s, %s, %s, %s, %s) "
                     "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, hash = EXCLUDED.hash, "
                     "stores = EXCLUDED.stores, disabled = false", [name, role, pw_hash, stores, time.time()])
        conn.execute("DELETE FROM sessions WHERE user_name = %s", [name])
    return existed


def set_disabled(conn, name: str, disabled: bool) -> int:
    """Disable (ending the user's sessions) or enable a user; returns how many sessions ended.

    Raises:
        ConfigError: no such user.
    """
    with conn.transaction():
        if conn.execute("UPDATE users SET disabled = %s WHERE name = %s", [disabled, name]).rowcount == 0:
            raise ConfigError(f"no user {name!r}")
        if not disabled:
            return 0
        return conn.execute("DELETE FROM sessions WHERE user_name = %s", [name]).rowcount


def scope(user: Any) -> list[str] | None:
    """The stores ``user`` (a session's user) may see (None: all)."""
    return list(user.stores or []) if user.role == "regional" else None
