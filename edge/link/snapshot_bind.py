"""Where the snapshot REP socket is bound: behind :mod:`edge.link.snapshot_guard` for ``tcp://``, directly otherwise.

The guard must listen exactly where libzmq would have bound the configured endpoint, so libzmq
resolves it (:func:`listen_tcp`); the REP itself binds a socket file in a fresh 0700 directory,
which only this user can reach.
"""
from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable

import zmq

from edge.errors import ConfigError
from edge.link.ingress import MAX_REQUEST_BYTES
from edge.link.snapshot_guard import SnapshotGuard


def listen_tcp(endpoint: str, context: zmq.Context) -> tuple[socket.socket, str]:
    """A listening socket where libzmq would bind ``endpoint`` (``tcp://host:port``, ``*``, a list).

    libzmq resolves the host (an address, ``*``, ``localhost``, an interface name) and binds the last
    element of a ``tcp://a;b`` list: a throwaway socket binds it on a free port first, so that this
    relay listens exactly where the REP would have.

    Returns:
        The socket and the endpoint bound (``tcp://127.0.0.1:5556``).

    Raises:
        ConfigError: libzmq cannot resolve it, or the address cannot be bound.
    """
    head, _, port = endpoint.rpartition(":")
    probe = context.socket(zmq.REP)
    probe.setsockopt(zmq.LINGER, 0)
    try:
        probe.bind(f"{head}:*")
        resolved = probe.getsockopt(zmq.LAST_ENDPOINT).decode()
    except zmq.ZMQError as exc:
        raise ConfigError(f"snapshot endpoint '{endpoint}' cannot be bound: {exc}") from exc
    finally:
        probe.close(linger=0)
    host = resolved.partition("://")[2].rpartition(":")[0].strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq: restarts are not held by TIME_WAIT
        sock.bind((host, 0 if port == "*" else int(port)))
        sock.listen(64)
        sock.setblocking(False)
    except (OSError, ValueError, OverflowError) as exc:
        sock.close()
        raise ConfigError(f"snapshot endpoint '{endpoint}' cannot be bound: "
                          f"{getattr(exc, 'strerror', None) or exc} (addr='{host}:{port}')") from exc
    bound = sock.getsockname()
    return sock, f"tcp://{'[' + host + ']' if family == socket.AF_INET6 else host}:{bound[1]}"


def bind_snapshot(rep: zmq.Socket, endpoint: str, bind: Callable[[zmq.Socket, str, str], str], *, curve: bool,
                  context: zmq.Context, max_frame: int = MAX_REQUEST_BYTES) -> tuple[str, str, SnapshotGuard | None]:
    """Bind the snapshot REP socket for ``endpoint``: behind a :class:`SnapshotGuard` for ``tcp://``.

    Args:
        rep: The REP socket (closed here if binding fails, as ``bind`` does).
        endpoint: ``publish.snapshot_endpoint``.
        bind: ``bind(rep, endpoint, what)`` binds and returns the endpoint bound (or raises :class:`ConfigError`).
        curve: Whether ``rep`` is a CURVE server.
        context: For :func:`listen_tcp`'s probe.
        max_frame: ``rep``'s ``ZMQ_MAXMSGSIZE``.

    Returns:
        The endpoint ``rep`` is bound to (to rebind it), the endpoint clients use, and the guard (``None``
        for ``ipc://``/``inproc://``, bound directly).

    Raises:
        ConfigError: the endpoint cannot be bound.
    """
    if not endpoint.lower().startswith("tcp://"):
        bound = bind(rep, endpoint, "snapshot endpoint")
        return bound, bound, None
    try:
        listener, public = listen_tcp(endpoint, context)
    except ConfigError:
        rep.close(linger=0)
        raise
    try:
        directory = tempfile.mkdtemp(prefix="gemsight-snapshot-")  # 0700: only this user reaches the REP behind it
    except OSError as exc:
        listener.close()
        rep.close(linger=0)
        raise ConfigError(f"snapshot endpoint '{endpoint}': cannot make the folder of its private socket in "
                          f"{tempfile.gettempdir()} ({exc.strerror or exc}; set TMPDIR to a writable folder)") from exc
    path = str(Path(directory) / "rep")
    try:
        internal = bind(rep, f"ipc://{path}", "snapshot endpoint (internal)")
    except ConfigError:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return internal, public, SnapshotGuard(listener, public, path, max_frame=max_frame, curve=curve,
                                           directory=directory)
