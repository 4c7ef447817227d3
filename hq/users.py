"""Who may see the chain: users in PostgreSQL (argon2id hashes), with roles.

* ``viewer``: every store, read only.
* ``regional``: a regional manager; only the stores given with ``--store`` (or every store of a
  ``--region``), everywhere on the page, the API and the CSV export.
* ``admin``: every store, and the intake counters (refused and malformed messages).

Logins, the rate limit, sessions and CSRF tokens are the kiosk's (:mod:`kiosk.auth`): its
``Authenticator`` reads users through :meth:`Users.user`, as it reads the kiosk's history.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import psycopg
from argon2 import PasswordHasher
from psycopg.rows import dict_row

from edge.errors import ConfigError
from kiosk.auth import MAX_PASSWORD, MIN_PASSWORD, check_user_name

ROLES = ("viewer", "regional", "admin")
_hasher = PasswordHasher()


class Users:
    """The ``users`` table, looked up on a fresh connection each time (survives a database restart)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def user(self, name: str) -> dict[str, Any] | None:
        with psycopg.connect(self.dsn, connect_timeout=5, row_factory=dict_row) as conn:
            return conn.execute("SELECT name, role, hash, stores FROM users WHERE name = %s", [name]).fetchone()


def add_user(conn, name: str, role: str, password: str, stores: Sequence[str] = (), *,
             known: Sequence[str] = ()) -> bool:
    """Create or replace a user; returns True if one was replaced.

    Raises:
        ConfigError: a bad name, an unknown role, a short password, a regional manager without stores,
            or a store that is not the chain's.
    """
    check_user_name(name)
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {list(ROLES)}")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ConfigError(f"the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters")
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
                     "stores = EXCLUDED.stores", [name, role, _hasher.hash(password), stores, time.time()])
    return existed


def scope(user: dict[str, Any]) -> list[str] | None:
    """The stores ``user`` may see (None: all)."""
    return list(user.get("stores") or []) if user.get("role") == "regional" else None
