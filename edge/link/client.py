"""The client side of the link to a device: one API every consumer uses (``listen``, the kiosk, scripts).

A device publishes with CURVE by default (see :mod:`edge.link.publisher`): its PUB and snapshot REP are
CURVE servers that answer only client keys in their allow-list. A client therefore needs

* the device's **server public key**, pinned: a ``zmq.auth`` public certificate (``server.key``);
  a rogue process on the device's port without the matching secret key cannot complete the handshake;
* its own **client certificate**: a ``zmq.auth`` secret certificate (``kiosk-1.key_secret``, made by
  ``gemsight-edge keys client NAME``) whose public half is in the device's allow-list.

Both are credential references as :mod:`edge.config.credentials` says (a bare name is read from
``$CREDENTIALS_DIRECTORY``). A device configured with ``publish.curve: null`` speaks plaintext; a
client must then say so explicitly (``plaintext=True``, ``--plaintext``): nothing falls back to
plaintext by itself.

libzmq retries a refused connection silently forever. :class:`Link` watches its socket with a
socket monitor and turns a refused handshake into a :class:`~edge.errors.LinkError` naming the
device, the endpoint and the reason:

* ``HANDSHAKE_FAILED_AUTH`` - the device's allow-list does not hold this client's key;
* ``HANDSHAKE_FAILED_PROTOCOL`` - CURVE on one side only (a plaintext client, a ``curve: null``
  device), or another protocol error;
* ``HANDSHAKE_FAILED_NO_DETAIL`` twice in a row, or connections closed during the handshake
  ``MAX_SILENT_FAILURES`` times without one succeeding - what a client pinning the wrong server key
  sees (the server cannot open the client's hello and hangs up without a word).

A device that is down or restarting is not an error (the connection is refused or drops after a
good handshake; libzmq reconnects). Typical use in a caller's own poll loop::

    keys = ClientKeys.load("case-01.key", "kiosk-1.key_secret")
    with Link(zmq.SUB, "tcp://case-01:5555", keys, device="case-01") as link:
        link.socket.setsockopt(zmq.SUBSCRIBE, b"gemsight/")
        poller.register(link.socket, zmq.POLLIN)
        poller.register(link.monitor, zmq.POLLIN)   # or call link.check() every loop turn
        while True:
            events = dict(poller.poll(1000))
            link.check()                            # raises LinkError on a refused handshake
            ...

or, for one socket, ``link.poll_in(timeout_s)`` (polls the socket and the monitor together). Send with
``link.send(data, timeout_s)``, never a blocking ``socket.send``: a refused REQ would block forever.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import zmq
from zmq.utils.monitor import parse_monitor_message

from edge.config.credentials import load_curve_keys
from edge.errors import ConfigError, LinkError

logger = logging.getLogger(__name__)

#: Connections closed during the handshake (or handshakes failed without detail) in a row, without
#: one handshake succeeding, before the link is declared refused. Two tells a wrong pinned key apart
#: from one connection cut by a device restarting mid-handshake.
MAX_SILENT_FAILURES = 2

_WATCHED = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_MONITOR_STOPPED)

_monitor_ids = iter(range(1, 1 << 62))


@dataclass(frozen=True)
class ClientKeys:
    """What a CURVE client needs: the device's pinned public key and the client's own key pair (Z85 text).

    Attributes:
        server_public: The device's public key (pinned).
        public: This client's public key (the one the device's allow-list must hold).
        secret: This client's secret key.
    """

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_key: str | os.PathLike, client_key: str | os.PathLike) -> "ClientKeys":
        """Read the device's public certificate and the client's secret certificate.

        Args:
            server_key: Credential reference of the device's ``zmq.auth`` public certificate
                (``server.key``; a secret certificate works too, only its public key is read).
            client_key: Credential reference of this client's ``zmq.auth`` secret certificate
                (``NAME.key_secret``).

        Raises:
            ConfigError: a file is missing, unreadable, not a certificate, or the client file holds no
                secret key.
        """
        if not zmq.has("curve"):
            raise ConfigError("CURVE keys were given but this libzmq has no CURVE support")
        server_public, _ = load_curve_keys(server_key, "CURVE server key file (--curve-server-key)",
                                           need_secret=False)
        public, secret = load_curve_keys(client_key, "CURVE client key file (--curve-client-key)",
                                         need_secret=True)
        return cls(server_public, public, secret or b"")  # need_secret=True: never empty here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the link options every client command shares: ``--curve-server-key``, ``--curve-client-key``,
    ``--plaintext``."""
    parser.add_argument("--curve-server-key", metavar="FILE",
                        help="the device's public certificate (zmq.auth format, e.g. server.key), pinned; a bare "
                             "name is read from $CREDENTIALS_DIRECTORY")
    parser.add_argument("--curve-client-key", metavar="FILE",
                        help="this client's secret certificate (NAME.key_secret from `gemsight-edge keys client`); "
                             "its public key must be in the device's allow-list")
    parser.add_argument("--plaintext", action="store_true",
                        help="talk to a device configured with `publish.curve: null` (no encryption, no keys)")


def keys_from_args(args: argparse.Namespace) -> ClientKeys | None:
    """The keys named by :func:`add_arguments`' options; ``None`` when ``--plaintext`` was given.

    Raises:
        ConfigError: neither keys nor ``--plaintext``, only one of the two keys, keys together with
            ``--plaintext``, or a bad key file.
    """
    server, client = getattr(args, "curve_server_key", None), getattr(args, "curve_client_key", None)
    if getattr(args, "plaintext", False):
        if server or client:
            raise ConfigError("--plaintext cannot be combined with --curve-server-key/--curve-client-key")
        return None
    if not server or not client:
        missing = "--curve-server-key" if not server else "--curve-client-key"
        if not server and not client:
            raise ConfigError("the link to a device is CURVE by default: give --curve-server-key FILE and "
                              "--curve-client-key FILE, or --plaintext for a device with `publish.curve: null`")
        raise ConfigError(f"CURVE needs both keys: {missing} FILE is missing")
    return ClientKeys.load(server, client)


def _protocol_reason(value: int) -> str:
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return ("security mechanism mismatch: CURVE on one side only (a plaintext client on a CURVE device, "
                "or CURVE keys given for a `publish.curve: null` device)")
    try:
        name = zmq.Event(value).name  # pyzmq names the ZMQ_PROTOCOL_ERROR_* codes in the Event enum
    except ValueError:
        name = None
    return f"handshake protocol error {name or hex(value)}"


class Link:
    """One client socket (SUB, REQ, ...) connected to one device endpoint, with a handshake watcher.

    Args:
        kind: ZeroMQ socket type (``zmq.SUB``, ``zmq.REQ``).
        endpoint: The device endpoint to connect to.
        keys: CURVE keys, or ``None`` for plaintext (then ``plaintext=True`` must be given too).
        plaintext: Explicit consent to talk without CURVE (a ``publish.curve: null`` device).
        device: Device id for messages (default: "device").
        context: ZeroMQ context; default ``zmq.Context.instance()``.
        linger_ms: ``LINGER`` of the socket.
        options: Socket options to set before connecting (``{zmq.RCVHWM: 100_000, zmq.MAXMSGSIZE: ...}``:
            high-water marks and size limits apply only to connections made after they are set).

    Attributes:
        disconnects: Connections lost after a good handshake (a device restarting, or a protocol error
            such as a message over ``MAXMSGSIZE``, after which libzmq does not reconnect by itself).
        socket: The connected socket; set options such as ``SUBSCRIBE`` on it (``connect`` already happened:
            ZeroMQ applies options set afterwards to the pending connection).
        monitor: The monitor's PAIR socket, to register in a caller's own poller.
        handshakes: Handshakes that succeeded so far.

    Raises:
        ConfigError: no keys without ``plaintext``, keys with ``plaintext``, or a bad endpoint.
    """

    def __init__(self, kind: int, endpoint: str, keys: ClientKeys | None, *, plaintext: bool = False,
                 device: str | None = None, context: zmq.Context | None = None, linger_ms: int = 0,
                 options: Mapping[int, int | bytes] | None = None) -> None:
        if keys is None and not plaintext:
            raise ConfigError(f"{device or 'device'} ({endpoint}): no CURVE keys given; plaintext needs an "
                              "explicit choice (--plaintext, for a device with `publish.curve: null`)")
        if keys is not None and plaintext:
            raise ConfigError(f"{device or 'device'} ({endpoint}): CURVE keys and plaintext both given")
        self.endpoint = endpoint
        self.device = device
        self.keys = keys
        self.handshakes = 0
        self.disconnects = 0  # connections lost after a good handshake (libzmq may not reconnect: see below)
        self._silent_failures = 0
        self._handshaking = False
        self._error: LinkError | None = None
        ctx = context or zmq.Context.instance()
        self.socket: zmq.Socket = ctx.socket(kind)
        self.socket.setsockopt(zmq.LINGER, linger_ms)
        for option, value in (options or {}).items():
            self.socket.setsockopt(option, value)
        if keys is not None:
            self.socket.curve_serverkey = keys.server_public
            self.socket.curve_publickey = keys.public
            self.socket.curve_secretkey = keys.secret
        # A unique inproc address per monitor: pyzmq's default derives it from id(socket), which
        # can repeat once a closed socket's memory is reused.
        addr = f"inproc://gemsight-link-monitor-{os.getpid()}-{next(_monitor_ids)}"
        self.monitor: zmq.Socket = self.socket.get_monitor_socket(_WATCHED, addr)
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(f"{device or 'device'} endpoint '{endpoint}' is not a valid ZeroMQ endpoint: "
                              f"{exc}") from exc

    @property
    def secure(self) -> bool:
        """Whether this link uses CURVE."""
        return self.keys is not None

    @property
    def error(self) -> LinkError | None:
        """The refusal seen so far, if any (sticky: the link stays failed)."""
        return self._error

    def _fail(self, reason: str) -> None:
        if self._error is None:
            self._error = LinkError(f"{self.device or 'device'} at {self.endpoint} refused the connection: {reason}")
            logger.debug("%s", self._error)  # raised by check(); the caller reports it once

    def _on_event(self, event: int, value: int) -> None:
        if event == zmq.EVENT_CONNECTED:
            self._handshaking = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.handshakes += 1
            self._silent_failures = 0
            self._handshaking = False
            logger.debug("%s: handshake with %s succeeded", self.device or "device", self.endpoint)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            if value == 400:
                self._fail("this client's key is not in its allow-list "
                           "(add the client's .key file with `gemsight-edge keys allow` on the device)")
            else:
                self._fail(f"authentication failed (ZAP status {value})")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self._fail(_protocol_reason(value))
        elif event == zmq.EVENT_DISCONNECTED and not self._handshaking:
            # A device going away (libzmq reconnects), or a protocol error such as a message over
            # MAXMSGSIZE, after which libzmq never reconnects: counted, the caller decides.
            self.disconnects += 1
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL or (event == zmq.EVENT_DISCONNECTED
                                                               and self._handshaking):
            # A disconnect after a good handshake is a device going away (libzmq reconnects); one in
            # the middle of a handshake, or a failure without detail, counts towards a refusal.
            self._handshaking = False
            self._silent_failures += 1
            if self._silent_failures >= MAX_SILENT_FAILURES:
                hint = ("the pinned server key does not match the device (wrong --curve-server-key, or "
                        "another process on its port)" if self.secure else
                        "the device probably requires CURVE (give --curve-server-key and --curve-client-key)")
                self._fail(f"the handshake failed {self._silent_failures} times in a row without detail: {hint}")

    def check(self) -> None:
        """Read the monitor's pending events without blocking; raise if the device refused this client.

        Raises:
            LinkError: the handshake was refused (names the device, the endpoint and the reason).
        """
        while self._error is None and not self.monitor.closed:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            msg = parse_monitor_message(frames)
            if msg["event"] == zmq.EVENT_MONITOR_STOPPED:
                break
            self._on_event(int(msg["event"]), int(msg["value"]))
        if self._error is not None:
            raise self._error

    def _poll(self, flag: int, timeout_s: float | None) -> bool:
        poller = zmq.Poller()
        poller.register(self.socket, flag)
        poller.register(self.monitor, zmq.POLLIN)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.check()
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            events = dict(poller.poll(None if wait is None else int(wait * 1000)))
            if self.monitor in events:
                self.check()
            if events.get(self.socket, 0) & flag:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                self.check()
                return False

    def poll_in(self, timeout_s: float | None) -> bool:
        """Wait until the socket has a message (True) or ``timeout_s`` passes (False), watching the handshake.

        Args:
            timeout_s: Seconds to wait; ``None`` waits forever.

        Raises:
            LinkError: the handshake was refused meanwhile.
        """
        return self._poll(zmq.POLLIN, timeout_s)

    def send(self, data: bytes, timeout_s: float) -> bool:
        """Send one message, waiting at most ``timeout_s`` for the socket to take it, watching the handshake.

        A plain blocking ``socket.send`` can wait forever: after a refused handshake libzmq may drop the
        connection's pipe for good (it does not reconnect after an authentication or protocol error),
        and a REQ socket without a pipe blocks every send.

        Returns:
            True when the message was queued; False when the socket could not take it in time.

        Raises:
            LinkError: the handshake was refused meanwhile.
        """
        if not self._poll(zmq.POLLOUT, timeout_s):
            return False
        try:
            self.socket.send(data, zmq.NOBLOCK)
        except zmq.Again:  # the pipe went away between the poll and the send
            self.check()
            return False
        return True

    def request(self, data: bytes, timeout_s: float) -> bytes | None:
        """Send one request and wait for its reply (a REQ link), all within ``timeout_s``.

        Returns:
            The reply, or None when the request was not taken or not answered in time.

        Raises:
            LinkError: the handshake was refused meanwhile.
        """
        deadline = time.monotonic() + timeout_s
        if not self.send(data, timeout_s) or not self.poll_in(max(0.0, deadline - time.monotonic())):
            return None
        return self.socket.recv()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait for the first successful handshake (True), or ``timeout_s`` (False: device not reachable yet).

        Raises:
            LinkError: the handshake was refused.
        """
        deadline = time.monotonic() + timeout_s
        self.check()
        while not self.handshakes:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.monitor.poll(int(left * 1000) + 1, zmq.POLLIN)
            self.check()
        return True

    def close(self) -> None:
        """Stop the monitor and close both sockets (idempotent)."""
        if not self.socket.closed:
            try:
                self.socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self.socket.close()
        if not self.monitor.closed:
            self.monitor.close(linger=0)

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
