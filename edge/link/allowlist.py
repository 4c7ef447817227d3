"""The device's allow-list of client keys, and the ZAP authenticator that enforces it.

The allow-list is a directory of ``zmq.auth`` **public** certificates, one per client
(``kiosk-1.key``; the file name without ``.key`` names the client in logs). ``gemsight-edge keys
allow`` / ``revoke`` add and remove files; the publisher polls the directory every
:data:`POLL_S` seconds (a cheap ``stat`` of each file) and reloads it when something changed, logging
the clients added and removed. Secret certificates (``*.key_secret``) never belong here: they are
ignored with a warning.

ZAP (ZeroMQ's authentication protocol) is served per ZeroMQ context by one
:class:`zmq.auth.thread.ThreadAuthenticator`; several publishers in one process (tests, benches)
share it, each under its own ZAP domain (:func:`attach` / :func:`detach`); it serves for the process's life.
"""
from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path
from typing import Iterable

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from edge.config.credentials import check_z85_key
from edge.errors import ConfigError

logger = logging.getLogger(__name__)

POLL_S = 2.0             # how often a running publisher looks at the allow-list directory
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
_MAX_REFUSED_LOGGED = 1000  # distinct refused keys logged once each (a scan must not flood the journal)


def read_public_key(path: Path) -> bytes:
    """The public key of a ``zmq.auth`` public certificate file.

    Raises:
        ConfigError: unreadable, no public key, a malformed key, or a secret certificate.
    """
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable ZeroMQ certificate ({exc})") from exc
    if secret:
        raise ConfigError(f"{path}: holds a secret key; only public certificates (.key) belong in an allow-list")
    try:
        return check_z85_key(public, "public")
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _signature(directory: Path) -> tuple:
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        return (("error", str(exc)),)
    out = []
    for p in entries:
        if p.name.endswith((PUBLIC_SUFFIX, SECRET_SUFFIX)):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((p.name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class AllowList:
    """The client public keys in one directory; a ZAP credentials provider for pyzmq.

    Args:
        directory: The allow-list directory (must exist).

    Raises:
        ConfigError: the directory is missing or unreadable, or a certificate in it is bad.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"publish.curve.allowed_clients '{self.directory}' is not a directory "
                              "(create it, e.g. with `gemsight-deploy install`, and add client keys with "
                              "`gemsight-edge keys allow`)")
        self._keys: dict[bytes, str] = {}   # replaced whole on reload: readers need no lock
        self._sig: tuple = ()
        self._refused: set[bytes] = set()
        self._keys, self._sig = self._load(strict=True)
        if not self._keys:
            logger.warning("allow-list %s is empty: no client can connect until one is added "
                           "(gemsight-edge keys allow CLIENT.key)", self.directory)

    @property
    def names(self) -> list[str]:
        """The allowed clients' names, sorted."""
        return sorted(self._keys.values())

    def _load(self, strict: bool) -> tuple[dict[bytes, str], tuple]:
        sig = _signature(self.directory)
        keys: dict[bytes, str] = {}
        try:
            files = sorted(self.directory.iterdir())
        except OSError as exc:
            if strict:
                raise ConfigError(f"publish.curve.allowed_clients '{self.directory}': cannot read ({exc})") from exc
            logger.error("allow-list %s cannot be read (%s): no client is allowed until it can", self.directory, exc)
            return {}, sig
        for path in files:
            if path.name.endswith(SECRET_SUFFIX):
                logger.warning("allow-list %s: ignoring %s: secret keys never belong in an allow-list (move it away)",
                               self.directory, path.name)
                continue
            if not path.name.endswith(PUBLIC_SUFFIX):
                continue
            try:
                key = read_public_key(path)
            except ConfigError as exc:
                if strict:
                    raise ConfigError(f"publish.curve.allowed_clients: {exc}") from exc
                logger.error("allow-list: skipping %s", exc)
                continue
            keys[key] = path.name[:-len(PUBLIC_SUFFIX)]
        return keys, sig

    def changed(self) -> bool:
        """Whether the directory looks different from when it was last read (names, sizes, mtimes)."""
        return _signature(self.directory) != self._sig

    def reload(self) -> tuple[list[str], list[str]]:
        """Read the directory again (never raises: a bad file is logged and skipped).

        Returns:
            The names of the clients added and removed (a changed key counts as both).
        """
        old = self._keys
        self._keys, self._sig = self._load(strict=False)
        added = sorted(name for key, name in self._keys.items() if key not in old)
        removed = sorted(name for key, name in old.items() if key not in self._keys)
        if added or removed:
            logger.info("allow-list %s reloaded: %d client(s)%s%s", self.directory, len(self._keys),
                        f"; added {', '.join(added)}" if added else "",
                        f"; removed {', '.join(removed)}" if removed else "")
        self._refused.clear()
        return added, removed

    def allows(self, public_key: bytes) -> bool:
        """Whether a Z85 public key is in the list."""
        return public_key in self._keys

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's ZAP credentials-provider hook: admit ``key`` (Z85) or log its refusal once."""
        name = self._keys.get(key)
        if name is not None:
            logger.debug("ZAP %s: admitted client %s", domain, name)
            return True
        if key not in self._refused and len(self._refused) < _MAX_REFUSED_LOGGED:
            self._refused.add(key)
            logger.warning("refused a client whose public key %s is not in the allow-list %s",
                           key.decode("ascii", "replace"), self.directory)
        return False


# -- one ZAP authenticator per context, for the process's life ----------------------------------
# Never stopped: stopping one and starting the next races libzmq's asynchronous release of the ZAP
# endpoint (the next start fails with "Address already in use"), and pyzmq's stop() joins its thread
# without a timeout. A domain that is detached is refused ("unknown domain"). A CURVE server socket of
# the same context that sets no ZAP domain (not ours: every publisher sets one) is answered as libzmq
# answers it when no authenticator runs: admitted.


class _NoDomain:
    """The credentials provider for servers without a ZAP domain: what libzmq does without a ZAP handler."""

    @staticmethod
    def callback(domain: str, key: bytes) -> bool:
        return True

_lock = threading.Lock()
_authenticators: dict[int, ThreadAuthenticator] = {}
_domains = itertools.count(1)


def attach(context: zmq.Context, allow: AllowList, name: str) -> str:
    """Serve ZAP for ``allow`` in ``context``; returns the ZAP domain to set on the server sockets."""
    domain = f"gemsight-{name}-{next(_domains)}"
    with _lock:
        auth = _authenticators.get(id(context))
        if auth is None or auth.context is not context or not auth.is_alive():
            auth = ThreadAuthenticator(context, log=logging.getLogger("zmq.auth"))
            auth.start()
            auth.configure_curve_callback("*", _NoDomain())  # pyzmq's name for "no domain"
            _authenticators[id(context)] = auth
        auth.configure_curve_callback(domain, allow)
    return domain


def detach(context: zmq.Context, domains: Iterable[str]) -> None:
    """Stop serving these domains (their clients are refused from now on); the authenticator stays."""
    with _lock:
        auth = _authenticators.get(id(context))
        if auth is None or auth.context is not context:
            return
        for domain in domains:
            auth.credentials_providers.pop(domain, None)
