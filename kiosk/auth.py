"""Who may do what on the kiosk: users with argon2 hashes, roles, login rate limiting, CSRF tokens.

* **Users** live in the history database (``gemsight-kiosk user add``); passwords are hashed with
  argon2id (``argon2-cffi``). An unknown name costs the same hash check as a known one.
* **Roles**: ``viewer`` looks; ``manager`` also acknowledges incidents, edits the planogram and runs
  counts.
* **Rate limit**: ``web.login_attempts`` failures per user name and per client address within
  ``web.login_window_s``; past it, logins are refused (even with the right password) until the
  oldest failure leaves the window.
* **Sessions** are Starlette's signed cookie (itsdangerous) with a key kept in the state directory
  (0600); each session carries a random CSRF token that every POST must return.
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.atomic import write_file_synced
from edge.errors import ConfigError
from kiosk.history import History

logger = logging.getLogger(__name__)

ROLES = ("viewer", "manager")
USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
SESSION_KEY_FILE = "session.key"

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class LoginRefused(ConfigError):
    """Wrong name or password, or too many failures (``retry_after`` seconds then)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`ConfigError`."""
    if not isinstance(name, str) or not USER_PATTERN.match(name):
        raise ConfigError(f"user name {name!r} is not valid (1-64 of letters, digits, ._@-)")
    return name


def add_user(history: History, name: str, role: str, password: str, now: float) -> None:
    """Create or replace a user (the password hashed with argon2id).

    Raises:
        ConfigError: a bad name, an unknown role, or a password shorter than ``MIN_PASSWORD``.
    """
    check_user_name(name)
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {list(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"the password must have at most {MAX_PASSWORD} characters")
    existed = history.user(name) is not None
    history.set_user(name, role, _hasher.hash(password), now)
    history.audit(now, "cli", "user", {"name": name, "role": role, "replaced": existed})


class RateLimiter:
    """Failures per key within a sliding window."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.window_s, self._clock = attempts, window_s, clock
        self._fails: dict[str, deque] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until one of ``keys`` may try again (0: now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                q = self._fails.get(key)
                while q and now - q[0] > self.window_s:
                    q.popleft()
                if q and len(q) >= self.attempts:
                    wait = max(wait, self.window_s - (now - q[0]))
        return wait

    def fail(self, keys: list[str]) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._fails.setdefault(key, deque()).append(now)
            if len(self._fails) > 10_000:   # forget idle keys so a spray of names cannot grow this
                for key in [k for k, q in self._fails.items() if not q or now - q[-1] > self.window_s]:
                    del self._fails[key]

    def clear(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)


class Authenticator:
    """Checks logins against the history's users, with the rate limit."""

    def __init__(self, history: History, attempts: int, window_s: float) -> None:
        self.history = history
        self.limiter = RateLimiter(attempts, window_s)

    def login(self, name: str, password: str, client: str) -> str:
        """The user's role if ``name``/``password`` are right.

        Raises:
            LoginRefused: too many failures (says for how long), or a wrong name or password (one
                message for both, so names cannot be probed).
        """
        keys = [f"user:{name.lower()}", f"addr:{client}"]
        wait = self.limiter.retry_after(keys)
        if wait > 0:
            logger.warning("login of %r from %s refused: rate limited for %.0f s", name, client, wait)
            raise LoginRefused(f"too many failed logins; try again in {wait:.0f} s", retry_after=wait)
        row = self.history.user(name) if USER_PATTERN.match(name or "") else None
        ok = False
        try:
            ok = _hasher.verify(row["hash"] if row else _DUMMY_HASH, password[:MAX_PASSWORD]) and row is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok:
            self.limiter.fail(keys)
            logger.warning("failed login for %r from %s", name, client)
            raise LoginRefused("wrong user name or password")
        self.limiter.clear(keys[0])
        return row["role"]


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token with the one a POST sent."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def session_secret(state_dir: Path) -> str:
    """The cookie signing key, created once (0600) in the state directory."""
    path = Path(state_dir) / SESSION_KEY_FILE
    if not path.exists():
        try:
            write_file_synced(path, secrets.token_hex(32).encode(), mode=0o600)
        except FileExistsError:
            pass
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the session key ({exc.strerror or exc})") from exc
    if len(key) < 32:
        raise ConfigError(f"{path}: the session key is too short; delete it to make a new one")
    os.chmod(path, 0o600)
    return key
