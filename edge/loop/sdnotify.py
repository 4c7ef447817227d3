"""systemd's notify protocol without a dependency: one AF_UNIX datagram to ``$NOTIFY_SOCKET``.

``READY=1`` once the loop runs, ``WATCHDOG=1`` every half ``WatchdogSec`` (systemd passes it as
``$WATCHDOG_USEC``), ``STATUS=...`` for ``systemctl status``, ``STOPPING=1`` on the way out. Without
``$NOTIFY_SOCKET`` (not started by systemd with ``Type=notify``) every call is a cheap no-op.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

logger = logging.getLogger(__name__)


class SdNotifier:
    """Talks to systemd if it is listening.

    Args:
        env: the environment to read (default ``os.environ``); tests pass their own.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_interval(env)
        self._last_ping: float | None = None
        self._sock: socket.socket | None = None
        if self.address is not None:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # A receiver that does not read (its queue holds a few datagrams) must never block the loop.
                self._sock.setblocking(False)
            except OSError as exc:  # never let systemd plumbing stop the loop
                logger.warning("sd_notify: cannot create a socket: %s", exc)
                self.address = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; ``True`` if it was sent."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8"), self.address)
        except BlockingIOError:
            logger.debug("sd_notify: %r is not reading; dropped %s", _printable(self.address), fields)
            return False
        except OSError as exc:
            logger.warning("sd_notify: cannot send to %r: %s", _printable(self.address), exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (and an optional ``STATUS=``)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """``WATCHDOG=1`` now."""
        self._last_ping = time.monotonic()
        return self.notify("WATCHDOG=1")

    def maybe_watchdog(self, now: float | None = None) -> bool:
        """``WATCHDOG=1`` if half the watchdog interval has passed since the last ping."""
        if self.watchdog_s is None or self._sock is None:
            return False
        now = time.monotonic() if now is None else now
        if self._last_ping is not None and now - self._last_ping < self.watchdog_s:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Linux abstract namespace
    if value.startswith("/"):
        return value
    logger.warning("sd_notify: ignoring NOTIFY_SOCKET %r (neither a path nor an abstract @name)", value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WatchdogSec``, or ``None`` when systemd asks for no watchdog (or for another process)."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        logger.warning("sd_notify: ignoring WATCHDOG_USEC=%r (not an integer)", usec)
        return None
    return value / 1e6 / 2 if value > 0 else None


def _printable(address: str | bytes) -> str:
    return "@" + address[1:].decode(errors="replace") if isinstance(address, bytes) else address
