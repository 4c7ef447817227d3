"""A byte budget per TCP connection on the edge's sockets: what libzmq's per-frame limit cannot bound.

libzmq queues every frame of a multipart message until its last frame arrives, and no socket option
bounds how many there are (``ZMQ_MAXMSGSIZE`` is per frame): one request of 75,000 frames of 4,000 B
held 585 MiB in the edge before the application saw its first frame (``bench/attacks.py``). The
application cannot see an unfinished message, but the kernel counts what each connection sent.

:class:`IngressGuard` watches the connections of the edge's sockets with socket monitors (accepted,
closed), keeps a duplicate of each connection's file descriptor, and every :data:`TICK_S` reads the
bytes the connection has sent (``TCP_INFO``'s ``tcpi_bytes_received``). A connection past its budget
is shut down (``shutdown(2)`` on the duplicate: libzmq sees the peer hang up, closes it and frees what
it queued); the other connections are untouched. The budgets come from what each socket legitimately
receives (:mod:`edge.ingress`):

* **snapshot REP**: :data:`HANDSHAKE_BYTES` plus :data:`REQUEST_BYTES` per request answered (the
  snapshot thread reports each answer with the connection it came from, ``ZMQ_SRCFD``): a request,
  however framed, costs at most one request's budget before it is cut;
* **PUB**: :data:`HANDSHAKE_BYTES` plus :data:`SUBSCRIBER_BYTES` (subscriptions), plus
  :data:`SUBSCRIBER_BYTES_PER_S` for as long as it stays connected (ZMTP heartbeats, resubscriptions).

Between two looks a fast client can get a little more in (at most :data:`TICK_S` of loopback
bandwidth, some tens of MB, freed when it is cut). TCP connections on Linux only: elsewhere, or for
``ipc://`` connections, the guard watches nothing and says so once.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

import zmq

from edge.ingress import MAX_REQUEST_BYTES

logger = logging.getLogger(__name__)

TICK_S = 0.02                 # how often the budgets are checked
HANDSHAKE_BYTES = 4096        # greeting + CURVE HELLO/INITIATE (under 1 KiB) with room to spare
REQUEST_BYTES = MAX_REQUEST_BYTES + 1024   # one request with its CURVE framing
SUBSCRIBER_BYTES = 64 * 1024  # subscriptions: a few topic prefixes of at most ~150 B each
SUBSCRIBER_BYTES_PER_S = 16   # a ZMTP PING every few seconds, should a client send them
_BYTES_RECEIVED = 128         # offset of tcpi_bytes_received in struct tcp_info (Linux >= 4.1)
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
_ids = iter(range(1, 1 << 62))


def bytes_received(sock: socket.socket) -> int | None:
    """What the peer of ``sock`` has sent so far (``None``: not a TCP socket, or no such figure here)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError):
        return None
    return struct.unpack_from("Q", info, _BYTES_RECEIVED)[0] if len(info) >= _BYTES_RECEIVED + 8 else None


@dataclass
class _Conn:
    sock: socket.socket   # a duplicate of libzmq's descriptor
    since: float
    allowance: int        # bytes it may have sent in all, before more requests are answered


@dataclass
class _Watched:
    name: str             # "publish endpoint", "snapshot endpoint"
    monitor: zmq.Socket
    per_request: bool     # REP: the budget grows with answers; PUB: with time
    conns: dict[int, _Conn]


class IngressGuard:
    """Cuts any connection of the watched sockets that sends more than its budget (see the module docstring).

    Call :meth:`watch` for each socket from the thread that owns it, before that socket is used by
    another thread; :meth:`answered` from the snapshot thread after each request; :meth:`close` last.
    """

    def __init__(self) -> None:
        self._watched: list[_Watched] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cut = 0

    def watch(self, sock: zmq.Socket, name: str, *, per_request: bool) -> None:
        """Watch ``sock``'s connections (REP: ``per_request``; PUB: not)."""
        addr = f"inproc://gemsight-ingress-{os.getpid()}-{next(_ids)}"
        monitor = sock.get_monitor_socket(_EVENTS, addr)
        with self._lock:
            self._watched.append(_Watched(name, monitor, per_request, {}))

    def start(self) -> "IngressGuard":
        """Start the guard's thread."""
        self._thread = threading.Thread(target=self._run, name="gemsight-ingress", daemon=True)
        self._thread.start()
        return self

    def answered(self, fd: int) -> None:
        """A request from connection ``fd`` (``ZMQ_SRCFD``) was answered: it may send one more."""
        with self._lock:
            for w in self._watched:
                conn = w.conns.get(fd)
                if w.per_request and conn is not None:
                    sent = bytes_received(conn.sock)
                    conn.allowance = max(conn.allowance, (sent or 0) + REQUEST_BYTES)

    def _events(self, w: _Watched) -> None:
        from zmq.utils.monitor import parse_monitor_message  # noqa: PLC0415

        while True:
            try:
                msg = parse_monitor_message(w.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            fd = int(msg["value"])
            if msg["event"] == zmq.EVENT_ACCEPTED:
                try:
                    dup = socket.socket(fileno=os.dup(fd))
                except OSError:
                    continue
                if bytes_received(dup) is None:  # ipc://, or no TCP_INFO figure on this system
                    dup.close()
                    continue
                old = w.conns.pop(fd, None)
                if old is not None:
                    old.sock.close()
                budget = HANDSHAKE_BYTES + (REQUEST_BYTES if w.per_request else SUBSCRIBER_BYTES)
                w.conns[fd] = _Conn(dup, time.monotonic(), budget)
            elif msg["event"] in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
                conn = w.conns.pop(fd, None)
                if conn is not None:
                    conn.sock.close()

    def _enforce(self, w: _Watched, now: float) -> None:
        for fd, conn in list(w.conns.items()):
            sent = bytes_received(conn.sock)
            allowed = conn.allowance + (0 if w.per_request else int((now - conn.since) * SUBSCRIBER_BYTES_PER_S))
            if sent is None or sent <= allowed:
                continue
            try:
                peer = "%s:%s" % conn.sock.getpeername()[:2]
            except OSError:
                peer = "?"
            logger.warning("%s: cut the connection from %s: it sent %d bytes, more than its budget of %d "
                           "(an unfinished multipart message, or a flood)", w.name, peer, sent, allowed)
            self.cut += 1
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # libzmq sees the peer hang up, and frees its queue
            except OSError:
                pass
            conn.sock.close()
            del w.conns[fd]

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            with self._lock:
                for w in self._watched:
                    self._events(w)
                    self._enforce(w, now)

    def close(self) -> None:
        """Stop the thread; close the monitors and every duplicate descriptor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            for w in self._watched:
                for conn in w.conns.values():
                    conn.sock.close()
                w.conns.clear()
                w.monitor.close(linger=0)
            self._watched.clear()
