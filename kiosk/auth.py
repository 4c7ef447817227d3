"""Who may do what on the kiosk: users with argon2 hashes, roles, login rate limiting, CSRF tokens.

* **Users** live in the history database (``gemsight-kiosk user add``); passwords are hashed with
  argon2id (``argon2-cffi``). An unknown name costs the same hash check as a known one.
* **Roles**: ``viewer`` looks; ``manager`` also acknowledges incidents, edits the planogram and runs
  and signs counts; ``admin`` also manages users.
* **Rate limit**: ``web.login_attempts`` failures for one account from one address within
  ``web.login_window_s``, and four times as many from one address (whatever the accounts) or for one
  account (whatever the addresses); past a limit, logins of that pair, address or account are
  refused until the oldest failure leaves the window. Failures of one account never lock another
  one out, and a right password typed on the kiosk's own screen (``web.screen``) always gets in.
* **Sessions** live in the history (:mod:`kiosk.history_users`): the cookie holds a random token,
  each session a random CSRF token that every POST must return. Before a login, the form's CSRF
  token travels in Starlette's signed cookie, with a key kept in the state directory (0600).
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

ROLES = ("viewer", "manager", "admin")
#: What each role may do beyond looking (a role has the scopes of those before it).
SCOPES = {"viewer": ("authenticated",), "manager": ("authenticated", "manager"),
          "admin": ("authenticated", "manager", "admin")}
SPREAD = 4      # an address (any accounts) or an account (any addresses) may fail this many times more
USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
SESSION_KEY_FILE = "session.key"

# argon2id at OWASP's parameters (19 MiB, 2 passes): the library's default takes 64 MiB a check, and a
# flood of logins must not take the kiosk's memory; checks run one at a time (_VERIFY_LOCK) for the same
# reason. Hashes made with other parameters still verify, and are re-made at the next right login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_VERIFY_LOCK = threading.Lock()
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


def check_password(password: str) -> str:
    """Return ``password`` if it may be set, else raise :class:`ConfigError`."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"the password must have at most {MAX_PASSWORD} characters")
    if any(0xD800 <= ord(c) <= 0xDFFF or ord(c) == 0 for c in password):
        raise ConfigError("the password holds a NUL or a lone surrogate")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash (the kiosk's parameters) of a password that may be set (else :class:`ConfigError`)."""
    return _hasher.hash(check_password(password))


def add_user(history: History, name: str, role: str, password: str, now: float, by: str = "cli") -> None:
    """Create or replace a user (the password hashed with argon2id); a replaced user's sessions end.

    Raises:
        ConfigError: a bad name, an unknown role, or a password shorter than ``MIN_PASSWORD``.
    """
    check_user_name(name)
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {list(ROLES)}")
    check_password(password)
    existed = history.user(name) is not None
    history.set_user(name, role, _hasher.hash(password), now)
    if existed:
        history.end_sessions(name)
    history.audit(now, by, "user", {"name": name, "role": role, "replaced": existed})


def set_password(history: History, name: str, password: str, now: float, by: str) -> None:
    """Reset ``name``'s password (its sessions end).

    Raises:
        ConfigError: no such user, or a password that may not be set.
    """
    check_password(password)
    if not history.set_password(name, _hasher.hash(password)):
        raise ConfigError(f"no user {name!r}")
    history.audit(now, by, "password", {"name": name})


def set_disabled(history: History, name: str, disabled: bool, now: float, by: str) -> None:
    """Disable (ending its sessions) or enable a user.

    Raises:
        ConfigError: no such user.
    """
    if not history.set_disabled(name, disabled):
        raise ConfigError(f"no user {name!r}")
    history.audit(now, by, "disable" if disabled else "enable", {"name": name})


def end_sessions(history: History, name: str, now: float, by: str) -> int:
    """End every session of ``name``; returns how many.

    Raises:
        ConfigError: no such user.
    """
    if history.user(name) is None:
        raise ConfigError(f"no user {name!r}")
    n = history.end_sessions(name)
    history.audit(now, by, "end sessions", {"name": name, "sessions": n})
    return n


class RateLimiter:
    """Failures per key within a sliding window."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.window_s, self._clock = attempts, window_s, clock
        self._fails: dict[str, deque] = {}
        self._lock = threading.Lock()

    def retry_after(self, limits: dict[str, int]) -> float:
        """Seconds until every key of ``limits`` (key -> failures allowed) may try again (0: now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, limit in limits.items():
                q = self._fails.get(key)
                while q and now - q[0] > self.window_s:
                    q.popleft()
                if q and len(q) >= limit:
                    wait = max(wait, self.window_s - (now - q[len(q) - limit]))
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
    """Checks logins against the history's users, with the rate limits."""

    def __init__(self, history: History, attempts: int, window_s: float) -> None:
        self.history = history
        self.attempts = attempts
        self.limiter = RateLimiter(attempts, window_s)

    def _limits(self, name: str, client: str) -> dict[str, int]:
        who = (name or "").lower()
        return {f"pair:{who}|{client}": self.attempts, f"addr:{client}": self.attempts * SPREAD,
                f"acct:{who}": self.attempts * SPREAD}

    def limited(self, name: str, client: str) -> bool:
        """Whether ``name`` from ``client`` is past a limit now."""
        return self.limiter.retry_after(self._limits(name, client)) > 0

    def login(self, name: str, password: str, client: str, *, screen: bool = False) -> str:
        """The user's role if ``name``/``password`` are right and the user is enabled.

        Args:
            client: The address the login came from (the proxy's client where trusted).
            screen: It came from the kiosk's own screen: a right password is never refused.

        Raises:
            LoginRefused: too many failures (says for how long), or a wrong name or password (one
                message for both, and for a disabled user, so names cannot be probed).
        """
        limits = self._limits(name, client)
        wait = self.limiter.retry_after(limits)
        if wait > 0 and not screen:
            logger.warning("login of %r from %s refused: rate limited for %.0f s", name, client, wait)
            raise LoginRefused(f"too many failed logins; try again in {wait:.0f} s", retry_after=wait)
        row = self.history.user(name) if USER_PATTERN.match(name or "") else None
        ok = False
        try:
            with _VERIFY_LOCK:
                ok = _hasher.verify(row["hash"] if row else _DUMMY_HASH, password[:MAX_PASSWORD]) and row is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or row["disabled"]:
            self.limiter.fail(list(limits))
            logger.warning("failed login for %r from %s%s", name, client, " (disabled)" if ok else "")
            raise LoginRefused("wrong user name or password")
        self.limiter.clear(next(iter(limits)))
        if _hasher.check_needs_rehash(row["hash"]):
            self.history.set_hash(name, _hasher.hash(password[:MAX_PASSWORD]))
        return row["role"]


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token with the one a POST sent."""
    if not expected or not given:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters (a token sent by anyone).
    return hmac.compare_digest(str(expected).encode("utf-8", "surrogatepass"),
                               str(given).encode("utf-8", "surrogatepass"))


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
