"""Publishes labels, status and heartbeats on a ZeroMQ PUB socket, and serves the last state on REP.

The PUB socket belongs to the thread that creates the :class:`Publisher` (the camera loop): ZeroMQ
sockets are not thread-safe, so every ``publish_*`` call must come from that thread. The snapshot
REP socket is bound here too (so a bad endpoint fails at once) and then handed to a small thread
that owns it from then on. That thread answers a request ``{"camera": id or null}`` with::

    {"device": "...", "cameras": {cam: latest labels message}, "status": {cam: latest status message}}

so a kiosk that joins late (ZeroMQ's slow joiner) shows the current state at once. The latest
messages are kept as their encoded bytes, which the loop never touches again: the snapshot thread
splices them into its reply without decoding, and without sharing a mutable dict with the loop.

CURVE (the default; see docs/security.md): given ``curve`` (``publish.curve`` of the config:
the server's secret certificate and the allow-list directory), both sockets are CURVE servers:
traffic is encrypted, clients must pin the server's public key, and a ZAP authenticator
(:mod:`edge.link.allowlist`) admits only client public keys in the allow-list. The allow-list is
**polled** every :data:`edge.link.allowlist.POLL_S` seconds (no signal needed): new keys are admitted at
their next handshake; when a key is removed, both sockets are unbound and bound again on the same
endpoint so every client re-handshakes and the revoked one is shut out (the others reconnect within
ZeroMQ's reconnect interval and see a ``seq`` gap).

Plaintext (``curve=None``, i.e. ``publish.curve: null``) is an explicit choice: it is logged as a
warning at every start, and refused on an endpoint other than loopback/``ipc``/``inproc`` unless
``insecure=True`` (``gemsight-edge run --insecure``).

Both sockets are bounded as :mod:`edge.link.ingress` says, a ``tcp://`` REP behind
:mod:`edge.link.snapshot_guard`; what one request raises is answered with an error, logged, and ignored.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import zmq

from edge.config.credentials import load_curve_keys
from edge.errors import ConfigError, MessageError
from edge.link import allowlist, messages, snapshot_bind, snapshot_guard
from edge.link.ingress import (MAX_REQUEST_BYTES, MAX_REQUEST_FRAMES, MAX_SUBSCRIPTION_BYTES, Request, limit_socket,
                          read_request)
from edge.link.policy import check_plaintext

if TYPE_CHECKING:
    from edge.config.publish import CurveConfig

logger = logging.getLogger(__name__)

LINGER_MS = 250          # on close, give queued messages a moment to leave, never hang a shutdown
SNAPSHOT_POLL_MS = 100   # how often the snapshot thread looks at its stop flag
REBIND_TIMEOUT_S = 2.0   # after a revocation: how long to wait for the unbound port to come free


def _bind(sock: zmq.Socket, endpoint: str, what: str) -> str:
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ConfigError(f"{what} '{endpoint}' cannot be bound: {exc}") from exc
    # With a wildcard port ("tcp://127.0.0.1:*") only LAST_ENDPOINT says which port was taken.
    return sock.getsockopt(zmq.LAST_ENDPOINT).decode()


class Publisher:
    """Sends every message of one device; one instance per process, used from one thread.

    Args:
        device: Device id (goes into every topic and message).
        endpoint: PUB endpoint to bind, e.g. ``tcp://0.0.0.0:5555`` or ``tcp://127.0.0.1:*``.
        snapshot_endpoint: REP endpoint for late joiners, or ``None`` for none.
        hwm: Send high-water mark per subscriber: past it, a slow subscriber loses messages (and sees
            a ``seq`` gap) instead of the device buffering without bound.
        heartbeat_s: Interval of :meth:`maybe_heartbeat`.
        curve: ``publish.curve``: the server's secret certificate (a credential reference) and the
            allow-list directory; ``None`` (explicit, keyword required) for plaintext.
        insecure: Allow plaintext on an endpoint that is not loopback.
        context: ZeroMQ context; default the process-wide ``zmq.Context.instance()``.

    Attributes:
        endpoint: The PUB endpoint actually bound (port filled in).
        snapshot_endpoint: The REP endpoint actually bound, or ``None``.

    Raises:
        ConfigError: a bad id, interval, hwm, key file or allow-list, an endpoint that cannot be bound, or
            plaintext on a non-loopback endpoint without ``insecure``.
    """

    def __init__(self, device: str, endpoint: str, snapshot_endpoint: str | None = None, *,
                 curve: "CurveConfig | None", insecure: bool = False, hwm: int = 1000,
                 heartbeat_s: float = 1.0, context: zmq.Context | None = None,
                 handlers: Mapping[str, Callable[[dict], dict]] | None = None) -> None:
        #: Requests other than snapshots, by their "kind" (edge.loop.device_requests: enrol, evidence).
        self.handlers = dict(handlers or {})
        try:
            self.device = messages.check_id(device, "device")
        except MessageError as exc:
            raise ConfigError(str(exc)) from None
        if int(hwm) != hwm or hwm < 1:
            raise ConfigError(f"publish.hwm must be an integer >= 1, got {hwm}")
        if not heartbeat_s > 0:
            raise ConfigError(f"publish.heartbeat_s must be > 0, got {heartbeat_s}")
        self.heartbeat_s = float(heartbeat_s)
        self._ctx = context or zmq.Context.instance()
        self._curve: tuple[bytes, bytes] | None = None
        self.allow: allowlist.AllowList | None = None
        self._zap_domain: str | None = None
        self._revocations = 0          # bumped by the allow-list thread when a key was removed
        if curve is None:
            check_plaintext({"publish.endpoint": endpoint, "publish.snapshot_endpoint": snapshot_endpoint},
                            insecure=insecure)
        else:
            if not zmq.has("curve"):
                raise ConfigError("publish.curve: CURVE was asked for but this libzmq has no CURVE support")
            public, secret = load_curve_keys(curve.server_secret_key, "publish.curve.server_secret_key",
                                             need_secret=True)
            self._curve = (public, secret)  # type: ignore[assignment]
            self.allow = allowlist.AllowList(curve.allowed_clients)
            self._zap_domain = allowlist.attach(self._ctx, self.allow, self.device)

        try:
            self._pub = self._socket(zmq.PUB)
            self._pub.setsockopt(zmq.SNDHWM, int(hwm))
            # Subscribers send only the handshake and subscriptions: a bigger frame drops its connection unread.
            limit_socket(self._pub, MAX_SUBSCRIPTION_BYTES)
            self.endpoint = _bind(self._pub, endpoint, "publish endpoint")
        except ConfigError:
            self._detach()
            raise
        self._pub_revocations = 0

        self._seq: dict[str, int] = {}                 # next seq per camera
        self._state: dict[str, str] = {}               # last status state per camera
        self._latest: dict[str, bytes] = {}            # camera -> encoded latest labels message
        self._latest_status: dict[str, bytes] = {}     # camera -> encoded latest status message
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_heartbeat: float | None = None
        self.sent = 0
        self.last_timing = (0.0, 0.0)  # seconds the last labels message took to encode and to send
        self._closed = False

        self.snapshot_endpoint: str | None = None
        self._guard: snapshot_guard.SnapshotGuard | None = None  # the relay in front of a tcp:// REP
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if snapshot_endpoint:
            try:
                rep = self._socket(zmq.REP)
                # Bounded before it is buffered: a bigger request frame drops its connection unread.
                limit_socket(rep, MAX_REQUEST_BYTES)
                self._rep_endpoint, self.snapshot_endpoint, self._guard = snapshot_bind.bind_snapshot(
                    rep, snapshot_endpoint, _bind, curve=self._curve is not None, context=self._ctx)
            except ConfigError:
                self._pub.close(linger=0)
                self._detach()
                raise
            # Thread start is a full memory barrier: from here on only the snapshot thread touches `rep`.
            self._thread = threading.Thread(target=self._serve_snapshots, args=(rep,),
                                            name=f"gemsight-snapshot-{self.device}", daemon=True)
            self._thread.start()
        self._watcher: threading.Thread | None = None
        if self.allow is not None:
            self._watcher = threading.Thread(target=self._watch_allowlist, name=f"gemsight-allowlist-{self.device}",
                                             daemon=True)
            self._watcher.start()
        logger.info("publishing on %s (snapshot %s, hwm %d, heartbeat %.1f s, %s)", self.endpoint,
                    self.snapshot_endpoint or "off", hwm, self.heartbeat_s,
                    f"CURVE, {len(self.allow.names)} allowed client(s) in {self.allow.directory}"
                    if self.allow is not None else "PLAINTEXT")

    def _detach(self) -> None:
        if self._zap_domain is not None:
            allowlist.detach(self._ctx, [self._zap_domain])
            self._zap_domain = None

    def _watch_allowlist(self) -> None:
        """Poll the allow-list directory; reload it on a change (runs in its own thread)."""
        while not self._stop.wait(allowlist.POLL_S):
            self.reload_allowlist(force=False)

    def reload_allowlist(self, force: bool = True) -> tuple[list[str], list[str]]:
        """Read the allow-list again now (the watcher thread does this every ``POLL_S`` s on a change).

        A removed key makes both sockets rebind (in the threads that own them), which drops every
        connection so that each client must pass the new list.

        Returns:
            The clients added and removed.
        """
        if self.allow is None or not (force or self.allow.changed()):
            return [], []
        added, removed = self.allow.reload()
        if removed:
            self._revocations += 1
        return added, removed

    def _rebind_if_revoked(self, sock: zmq.Socket, endpoint: str, seen: int) -> int:
        """Unbind and bind ``sock`` again if a key was revoked since ``seen``; returns the new count."""
        now = self._revocations
        if now == seen:
            return seen
        try:
            sock.unbind(endpoint)
        except zmq.ZMQError as exc:
            logger.error("%s: unbinding after a revocation failed: %s", endpoint, exc)
            return now
        # The listener closes asynchronously in libzmq's I/O thread: the port can stay busy a moment.
        deadline = time.monotonic() + REBIND_TIMEOUT_S
        while True:
            try:
                sock.bind(endpoint)
                break
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    logger.error("%s: rebinding after a revocation failed: %s", endpoint, exc)
                    return now
                time.sleep(0.005)
        logger.info("%s: dropped every connection after a revocation; allowed clients reconnect", endpoint)
        return now

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        if self._curve:
            sock.curve_secretkey = self._curve[1]
            sock.curve_publickey = self._curve[0]
            sock.curve_server = True
            sock.zap_domain = (self._zap_domain or "").encode()
        return sock

    def _send(self, topic: str, payload: bytes) -> None:
        if self._closed:
            raise MessageError("publisher is closed")
        if self._revocations != self._pub_revocations:
            self._pub_revocations = self._rebind_if_revoked(self._pub, self.endpoint, self._pub_revocations)
        # PUB never blocks: at the high-water mark ZeroMQ drops for that subscriber, which the
        # subscriber sees as a gap in seq.
        self._pub.send_multipart([topic.encode(), payload], flags=zmq.NOBLOCK)
        self.sent += 1

    def publish_labels(self, camera: str, msg: dict) -> int:
        """Send a labels message; sets its ``seq`` (per camera, from 0) and ``publish_ts`` in place.

        Args:
            camera: Camera id; must equal ``msg["camera"]``.
            msg: A message from :func:`edge.link.messages.labels_message` for this device.

        Returns:
            The ``seq`` given to the message.

        Raises:
            MessageError: the message is for another device or camera, or cannot be encoded.
        """
        if msg.get("camera") != camera or msg.get("device") != self.device:
            raise MessageError(f"labels message for {msg.get('device')}/{msg.get('camera')} given to the "
                               f"publisher of {self.device}/{camera}")
        seq = self._seq.get(camera, 0)
        msg["seq"] = seq
        msg["publish_ts"] = time.time()
        t0 = time.monotonic()
        payload = messages.encode(msg)
        t1 = time.monotonic()
        self._send(messages.topic(self.device, camera, "labels"), payload)
        self.last_timing = (t1 - t0, time.monotonic() - t1)  # encode, send: the loop's per-stage metrics
        self._seq[camera] = seq + 1
        with self._lock:
            self._latest[camera] = payload
        return seq

    def publish_status(self, camera: str, state: str, detail: str = "") -> None:
        """Send a camera status message (up, down, eos) and keep it for snapshots.

        Raises:
            MessageError: an unknown state or a bad camera id.
        """
        msg = messages.status_message(device=self.device, camera=camera, state=state, detail=detail, ts=time.time())
        payload = messages.encode(msg)
        self._send(messages.topic(self.device, camera, "status"), payload)
        self._state[camera] = state
        with self._lock:
            self._latest_status[camera] = payload
        log = logger.info if state == "up" else logger.warning
        log("camera %s: %s%s", camera, state, f" ({detail})" if detail else "")

    def last_seq(self, camera: str) -> int | None:
        """The last ``seq`` published for ``camera`` (``None`` before its first labels message)."""
        nxt = self._seq.get(camera)
        return None if nxt is None else nxt - 1

    def send_heartbeat(self, cameras: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Send a heartbeat now; each camera's entry gets ``seq`` and ``state`` filled in by the publisher.

        Args:
            cameras: Camera id → scalar figures from the loop (fps, dropped, reconnects...). Cameras
                that published but are missing here are added with their seq and state.
        """
        cams: dict[str, dict[str, Any]] = {}
        for cam in {*(cameras or {}), *self._seq, *self._state}:
            info = dict((cameras or {}).get(cam, {}))
            info["seq"] = self.last_seq(cam)
            info["state"] = self._state.get(cam)
            cams[cam] = info
        now = time.monotonic()
        msg = messages.heartbeat_message(device=self.device, ts=time.time(), cameras=cams,
                                         uptime_s=now - self._started)
        self._send(messages.topic(self.device, None, "heartbeat"), messages.encode(msg))
        self._last_heartbeat = now

    def maybe_heartbeat(self, cameras: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
        """Send a heartbeat if ``heartbeat_s`` has passed since the last one (or none was sent yet).

        Returns:
            Whether one was sent.
        """
        if self._last_heartbeat is not None and time.monotonic() - self._last_heartbeat < self.heartbeat_s:
            return False
        self.send_heartbeat(cameras)
        return True

    def snapshot_reply(self, camera: str | None = None) -> bytes:
        """The JSON bytes the REP endpoint answers with for ``{"camera": camera}`` (any thread)."""
        with self._lock:
            labels = dict(self._latest)
            status = dict(self._latest_status)
        if camera is not None:
            labels = {camera: labels[camera]} if camera in labels else {}
            status = {camera: status[camera]} if camera in status else {}

        def obj(parts: dict[str, bytes]) -> bytes:
            # Splice the already-encoded messages in: no decode/re-encode, and nothing shared mutable.
            return b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in parts.items()) + b"}"

        return (b'{"device":' + json.dumps(self.device).encode() + b',"cameras":' + obj(labels)
                + b',"status":' + obj(status) + b"}")

    def _answer(self, request: Request) -> bytes:
        if not request.within_limits:  # MAXMSGSIZE bounds each frame; read_request counted them all
            return messages.encode({"error": f"a snapshot request is {MAX_REQUEST_FRAMES} JSON frame of at most "
                                             f"{MAX_REQUEST_BYTES} bytes like {{\"camera\": null}}, got "
                                             f"{request.frames} frame(s) of {request.size} bytes"})
        try:
            req = messages.decode(request.first) if request.first.strip() else {}
        except MessageError as exc:
            return messages.encode({"error": str(exc)})
        if isinstance(req, dict) and req.get("kind") in self.handlers:
            return messages.encode(self.handlers[req["kind"]](req))
        camera = req.get("camera") if isinstance(req, dict) else None
        if not isinstance(req, dict) or set(req) - {"camera"} or not (camera is None or isinstance(camera, str)):
            return messages.encode({"error": "request must be {\"camera\": <id or null>}"})
        return self.snapshot_reply(camera)

    def _serve_snapshots(self, rep: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(rep, zmq.POLLIN)
        seen = 0
        try:
            while not self._stop.is_set():
                if self._revocations != seen:
                    seen = self._rebind_if_revoked(rep, self._rep_endpoint, seen)
                if not poller.poll(SNAPSHOT_POLL_MS):
                    continue
                request = read_request(rep)
                try:
                    reply = self._answer(request)
                except Exception as exc:  # noqa: BLE001 - one request must never stop the endpoint
                    logger.error("snapshot endpoint %s: a request failed (%s: %s); answered with an error",
                                 self.snapshot_endpoint, type(exc).__name__, exc)
                    reply = messages.encode({"error": f"request failed: {type(exc).__name__}"})
                # REP must answer every request, or the socket's state machine stays stuck.
                rep.send(reply)
        except zmq.ZMQError as exc:
            if not self._stop.is_set():
                logger.error("snapshot endpoint %s failed: %s", self.snapshot_endpoint, exc)
        finally:
            rep.close(linger=0)

    def close(self) -> None:
        """Stop the snapshot thread and close both sockets (queued messages get ``LINGER`` ms to leave)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._watcher is not None:
            self._watcher.join(timeout=2.0)
        if self._guard is not None:
            self._guard.close()
        self._pub.close()
        self._detach()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

