"""A relay in front of the snapshot REP socket that bounds what one client can make the edge hold.

libzmq bounds each frame (``ZMQ_MAXMSGSIZE``) but queues every frame of an unfinished multipart
message until its last frame arrives, and no option bounds how many there are: an allowed client
(on a plaintext loopback edge, any local process) sending 75,000 frames marked "more" grew the edge
by 585 MiB; cutting libzmq's own TCP connection from outside broke its other connections. So the
REP binds a private ``ipc://`` endpoint (a socket file in a fresh 0700 directory) and this relay
binds the configured ``tcp://`` one: per client it opens one connection to the REP, copies bytes
both ways and counts the ZMTP frames going by (:class:`edge.link.zmtp_scan.Exchange`). A client is cut
(both sockets of that pair closed: libzmq sees an ordinary disconnection) when

* more than :data:`MAX_PENDING_FRAMES` of its frames are not accounted for by the REP's replies;
* it announces a frame over the REP's ``ZMQ_MAXMSGSIZE`` (as libzmq would), or is not ZMTP 3;
* a request stays unfinished (frames unanswered, or a frame half sent) for :data:`REQUEST_S`.

A connection thus holds at most ``MAX_PENDING_FRAMES`` frames of 4 KiB in libzmq plus one
:data:`CHUNK` per direction in the relay (a side is not read while its peer's buffer is full), and
at most :data:`MAX_CONNECTIONS` are open (a newcomer takes the place of the oldest one still in its
handshake, or is closed). Replies are not budgeted. CURVE stays end to end (the relay sees
ciphertext; the ZAP allow-list is the REP's, by key, as before); libzmq now sees the relay's
address, so the relay's own log lines name the client's. :mod:`edge.link.snapshot_bind` binds the REP
and starts the guard (``ipc://`` and ``inproc://`` snapshot endpoints are bound directly, as before).
"""
from __future__ import annotations

import logging
import selectors
import shutil
import socket
import threading
import time

from edge.link.zmtp_scan import Exchange, ZmtpViolation

logger = logging.getLogger(__name__)

#: Client frames the edge's replies do not yet account for, at most (handshake 1-2, a REQ request 2).
MAX_PENDING_FRAMES = 8
#: A request unfinished (unanswered frames, or a frame half sent) for this long is cut.
REQUEST_S = 10.0
#: Client connections open at once, at most.
MAX_CONNECTIONS = 32
#: Bytes read from a socket at a time; also the most the relay buffers per direction and connection.
CHUNK = 64 * 1024
TICK_S = 0.25            # how often the timers are looked at
LOG_BURST, LOG_WINDOW_S = 10, 60.0   # warnings per window, beyond which they are counted, not written


class _Throttle:
    """At most ``LOG_BURST`` warnings per ``LOG_WINDOW_S``; the rest are counted and the count logged."""

    def __init__(self, what: str) -> None:
        self.what, self.start, self.count, self.dropped = what, time.monotonic(), 0, 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.start >= LOG_WINDOW_S:
            if self.dropped:
                logger.warning("%s: %d more connection(s) cut or refused in the last %.0f s (not logged one by one)",
                               self.what, self.dropped, now - self.start)
            self.start, self.count, self.dropped = now, 0, 0
        if self.count < LOG_BURST:
            self.count += 1
            logger.warning(msg, *args)
        else:
            self.dropped += 1


class _Pair:
    """One client connection, its connection to the REP socket, and what is in flight between them."""

    def __init__(self, client: socket.socket, upstream: socket.socket, peer: str, exchange: Exchange) -> None:
        self.client, self.upstream, self.peer, self.exchange = client, upstream, peer, exchange
        self.to_upstream = b""          # read from the client, not yet written to the REP
        self.forwarded = 0              # bytes of the client's written to the REP
        self.to_client = b""            # read from the REP, not yet written to the client
        self.opened = time.monotonic()
        self.unfinished_since: float | None = None
        self.finishing: float | None = None   # when the REP hung up: what it said last is passed on, then close
        self.closed = self.shut = False
        self.events: dict[socket.socket, int] = {}  # what the selector waits for, per socket

    def upstream_ready(self) -> int:
        """How much of ``to_upstream`` may be written to the REP now."""
        allowed = self.exchange.may_forward(self.forwarded)
        return len(self.to_upstream) if allowed is None else min(len(self.to_upstream), allowed)

    def update_timer(self, now: float) -> None:
        if not self.exchange.unfinished:
            self.unfinished_since = None
        elif self.unfinished_since is None:
            self.unfinished_since = now


def _address(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr) or "?"


class SnapshotGuard:
    """The relay: listens on the public endpoint, forwards to the REP's private ``ipc://`` endpoint.

    Args:
        listener: The bound, listening public socket (:func:`listen_tcp`); the guard owns it.
        endpoint: Its endpoint, for logs.
        upstream: Path of the REP's ``ipc://`` socket file.
        max_frame: The REP's ``ZMQ_MAXMSGSIZE``.
        curve: Whether the REP is a CURVE server (2 handshake commands from a client, else 1).
        directory: A directory to remove once the guard has stopped (the socket file's).
    """

    def __init__(self, listener: socket.socket, endpoint: str, upstream: str, *, max_frame: int, curve: bool,
                 directory: str | None = None) -> None:
        self.endpoint, self.upstream, self.max_frame, self.directory = endpoint, upstream, max_frame, directory
        self.handshake_frames = 2 if curve else 1   # HELLO and INITIATE, or READY
        self.cuts = 0          # connections cut for a limit (tests, benches)
        self.pairs: set[_Pair] = set()
        self._listener = listener
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(listener, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._log = _Throttle(f"snapshot endpoint {endpoint}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gemsight-snapshot-guard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the relay must outlive anything one connection does
                logger.error("snapshot guard on %s: %s: %s (going on)", self.endpoint, type(exc).__name__, exc)
                time.sleep(TICK_S)
        for pair in list(self.pairs):
            self._close(pair)
        self._sel.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _step(self) -> None:
        for key, mask in self._sel.select(TICK_S):
            if key.fileobj is self._listener:
                self._accept()
            elif key.fileobj is self._wake_r:
                self._wake_r.recv(64)
            elif not key.data[0].closed:
                pair, is_client = key.data
                try:
                    self._serve(pair, is_client, mask)
                except OSError as exc:  # a reset, a broken pipe: that pair only
                    logger.debug("snapshot endpoint %s: connection from %s: %s", self.endpoint, pair.peer, exc)
                    self._close(pair)
                except Exception as exc:  # noqa: BLE001 - whatever one connection causes ends that one only
                    logger.error("snapshot endpoint %s: connection from %s closed after %s: %s", self.endpoint,
                                 pair.peer, type(exc).__name__, exc)
                    self._close(pair)
        now = time.monotonic()
        for pair in list(self.pairs):
            if pair.finishing is not None and now - pair.finishing > 1.0:
                self._close(pair)
            elif pair.unfinished_since is not None and now - pair.unfinished_since > REQUEST_S:
                self._cut(pair, f"a request unfinished for {REQUEST_S:g} s")

    def _accept(self) -> None:
        for _ in range(16):
            try:
                client, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: say so, and keep serving the ones open
                self._log.warning("snapshot endpoint %s: cannot accept a connection: %s", self.endpoint, exc)
                return
            peer = _address(addr)
            if len(self.pairs) >= MAX_CONNECTIONS and not self._make_room(peer):
                client.close()
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.settimeout(1.0)   # libzmq accepts at once; never let a stuck backlog hold the relay
            try:
                upstream.connect(self.upstream)
            except OSError as exc:  # the REP is rebinding (a revocation) or closing: the client will retry
                logger.debug("snapshot endpoint %s: %s not relayed: REP socket unreachable (%s)",
                             self.endpoint, peer, exc)
                upstream.close()
                client.close()
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as libzmq: no 40 ms Nagle stalls
            client.setblocking(False)
            upstream.setblocking(False)
            pair = _Pair(client, upstream, peer, Exchange(self.max_frame, self.handshake_frames))
            self.pairs.add(pair)
            self._want(pair, client, selectors.EVENT_READ)
            self._want(pair, upstream, selectors.EVENT_READ)
            logger.debug("snapshot endpoint %s: connection from %s (%d open)", self.endpoint, peer, len(self.pairs))

    def _make_room(self, peer: str) -> bool:
        """At capacity: close the oldest connection still in its handshake, else refuse ``peer``."""
        waiting = [p for p in self.pairs if not p.exchange.authenticated]
        if not waiting:
            self._log.warning("snapshot endpoint %s: refused a connection from %s: %d connections are open "
                              "(the limit)", self.endpoint, peer, MAX_CONNECTIONS)
            return False
        oldest = min(waiting, key=lambda p: p.opened)
        self._cut(oldest, f"still in its handshake after {time.monotonic() - oldest.opened:.1f} s with "
                          f"{MAX_CONNECTIONS} connections open (making room for {peer})")
        return True

    def _serve(self, pair: _Pair, is_client: bool, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(pair, to_client=is_client)
        if mask & selectors.EVENT_READ and not pair.closed:
            data = (pair.client if is_client else pair.upstream).recv(CHUNK)
            if not data and (is_client or pair.finishing is not None):
                self._close(pair)
                return
            if pair.finishing is not None:
                pass  # the REP is gone: the client's bytes go nowhere, its EOF (or a second) ends it
            elif not data:
                self._finish(pair)
            elif is_client:
                try:
                    pair.exchange.sent.feed(data)
                except ZmtpViolation as exc:
                    self._cut(pair, str(exc))
                    return
                if pair.exchange.pending > MAX_PENDING_FRAMES:
                    self._cut(pair, f"{pair.exchange.pending} frames sent that no reply accounts for (the limit is "
                                    f"{MAX_PENDING_FRAMES}: a request is one frame)")
                    return
                pair.to_upstream += data
                self._flush(pair, to_client=False)
            else:
                greeted = pair.exchange.replied.greeted
                pair.exchange.replied.feed(data)
                pair.to_client += data
                self._flush(pair, to_client=True)
                if pair.exchange.replied.greeted and not greeted:
                    self._flush(pair, to_client=False)  # the client's greeting may go on
            if pair.finishing is None:
                pair.update_timer(time.monotonic())
        if not pair.closed:
            self._interest(pair)

    def _finish(self, pair: _Pair) -> None:
        """The REP hung up (a refused handshake): pass on what it said last, then close the client's side
        cleanly (closing a socket with unread input resets it, and the client could lose those last words)."""
        self._want(pair, pair.upstream, 0)
        pair.upstream.close()
        pair.finishing, pair.unfinished_since = time.monotonic(), None
        self._flush(pair, to_client=True)

    def _flush(self, pair: _Pair, *, to_client: bool) -> None:
        sock, data = (pair.client, pair.to_client) if to_client else (pair.upstream, pair.to_upstream)
        ready = len(data) if to_client else pair.upstream_ready()
        if ready:
            try:
                sent = sock.send(data[:ready])
            except (BlockingIOError, InterruptedError):
                sent = 0
            if to_client:
                pair.to_client = data[sent:]
            else:
                pair.to_upstream, pair.forwarded = data[sent:], pair.forwarded + sent
            data = data[sent:]
        if to_client and not data and pair.finishing is not None and not pair.shut:
            pair.shut = True
            pair.client.shutdown(socket.SHUT_WR)

    def _interest(self, pair: _Pair) -> None:
        # Read a side only while what it sent last has left: the relay holds one chunk per direction.
        if pair.finishing is not None:
            self._want(pair, pair.client, selectors.EVENT_READ | (selectors.EVENT_WRITE if pair.to_client else 0))
            return
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        self._want(pair, pair.client, (0 if pair.to_upstream else read) | (write if pair.to_client else 0))
        self._want(pair, pair.upstream, (0 if pair.to_client else read) | (write if pair.upstream_ready() else 0))

    def _want(self, pair: _Pair, sock: socket.socket, events: int) -> None:
        had = pair.events.get(sock, 0)
        if events == had:
            return
        if not events:
            self._sel.unregister(sock)
        elif had:
            self._sel.modify(sock, events, (pair, sock is pair.client))
        else:
            self._sel.register(sock, events, (pair, sock is pair.client))
        pair.events[sock] = events

    def _cut(self, pair: _Pair, reason: str) -> None:
        self.cuts += 1
        self._log.warning("snapshot endpoint %s: cut the connection from %s: %s", self.endpoint, pair.peer, reason)
        self._close(pair)

    def _close(self, pair: _Pair) -> None:
        if pair.closed:
            return
        pair.closed = True
        self.pairs.discard(pair)
        for sock in (pair.client, pair.upstream):
            self._want(pair, sock, 0)
            sock.close()

    def close(self) -> None:
        """Stop the thread and close every connection and the listening socket (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(timeout=2.0)
