"""Publishes labels, status and heartbeats on a ZeroMQ PUB socket, and serves the last state on REP.

The PUB socket belongs to the thread that creates the :class:`Publisher` (the camera loop): ZeroMQ
sockets are not thread-safe, so every ``publish_*`` call must come from that thread. The snapshot
REP socket is bound here too (so a bad endpoint fails at once) and then handed to a small thread
that owns it from then on. That thread answers a request ``{"camera": id or null}`` with::

    {"device": "...", "cameras": {cam: latest labels message}, "status": {cam: latest status message}}

so a kiosk that joins late (ZeroMQ's slow joiner) shows the current state at once. The latest
messages are kept as their encoded bytes, which the loop never touches again: the snapshot thread
splices them into its reply without decoding, and without sharing a mutable dict with the loop.

CURVE: given a server secret key file (``zmq.auth`` certificate format, as written by
``zmq.auth.create_certificates``; named as :mod:`edge.credentials` says), both sockets become CURVE
servers: traffic is encrypted and only clients that know the server's public key can talk to them. Client keys are not checked (no ZAP allow-list).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Mapping

import zmq

from edge import messages
from edge.credentials import load_curve_keys
from edge.errors import ConfigError, MessageError

logger = logging.getLogger(__name__)

LINGER_MS = 250          # on close, give queued messages a moment to leave, never hang a shutdown
SNAPSHOT_POLL_MS = 100   # how often the snapshot thread looks at its stop flag
MAX_REQUEST_BYTES = 4096  # a snapshot request is tiny; refuse anything bigger before parsing


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
        context: ZeroMQ context; default the process-wide ``zmq.Context.instance()``.
        curve_secret_key_file: Server certificate with secret key to enable CURVE on both sockets.

    Attributes:
        endpoint: The PUB endpoint actually bound (port filled in).
        snapshot_endpoint: The REP endpoint actually bound, or ``None``.

    Raises:
        ConfigError: a bad id, interval, hwm or key file, or an endpoint that cannot be bound.
    """

    def __init__(self, device: str, endpoint: str, snapshot_endpoint: str | None = None, *, hwm: int = 1000,
                 heartbeat_s: float = 1.0, context: zmq.Context | None = None,
                 curve_secret_key_file: str | None = None) -> None:
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
        if curve_secret_key_file:
            if not zmq.has("curve"):
                raise ConfigError("publish: CURVE was asked for but this libzmq has no CURVE support")
            public, secret = load_curve_keys(curve_secret_key_file, "publish CURVE secret key file",
                                             need_secret=True)
            self._curve = (public, secret)  # type: ignore[assignment]

        self._pub = self._socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, int(hwm))
        self.endpoint = _bind(self._pub, endpoint, "publish endpoint")

        self._seq: dict[str, int] = {}                 # next seq per camera
        self._state: dict[str, str] = {}               # last status state per camera
        self._latest: dict[str, bytes] = {}            # camera -> encoded latest labels message
        self._latest_status: dict[str, bytes] = {}     # camera -> encoded latest status message
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_heartbeat: float | None = None
        self.sent = 0
        self._closed = False

        self.snapshot_endpoint: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if snapshot_endpoint:
            try:
                rep = self._socket(zmq.REP)
                self.snapshot_endpoint = _bind(rep, snapshot_endpoint, "snapshot endpoint")
            except ConfigError:
                self._pub.close(linger=0)
                raise
            # Thread start is a full memory barrier: from here on only the snapshot thread touches `rep`.
            self._thread = threading.Thread(target=self._serve_snapshots, args=(rep,),
                                            name=f"gemsight-snapshot-{self.device}", daemon=True)
            self._thread.start()
        logger.info("publishing on %s (snapshot %s, hwm %d, heartbeat %.1f s%s)", self.endpoint,
                    self.snapshot_endpoint or "off", hwm, self.heartbeat_s, ", CURVE" if self._curve else "")

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        if self._curve:
            sock.curve_secretkey = self._curve[1]
            sock.curve_publickey = self._curve[0]
            sock.curve_server = True
        return sock

    def _send(self, topic: str, payload: bytes) -> None:
        if self._closed:
            raise MessageError("publisher is closed")
        # PUB never blocks: at the high-water mark ZeroMQ drops for that subscriber, which the
        # subscriber sees as a gap in seq.
        self._pub.send_multipart([topic.encode(), payload], flags=zmq.NOBLOCK)
        self.sent += 1

    def publish_labels(self, camera: str, msg: dict) -> int:
        """Send a labels message; sets its ``seq`` (per camera, from 0) and ``publish_ts`` in place.

        Args:
            camera: Camera id; must equal ``msg["camera"]``.
            msg: A message from :func:`edge.messages.labels_message` for this device.

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
        payload = messages.encode(msg)
        self._send(messages.topic(self.device, camera, "labels"), payload)
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

    def _answer(self, frames: list[bytes]) -> bytes:
        if len(frames) != 1 or len(frames[0]) > MAX_REQUEST_BYTES:
            return messages.encode({"error": "a snapshot request is one JSON frame like {\"camera\": null}"})
        try:
            req = messages.decode(frames[0]) if frames[0].strip() else {}
        except MessageError as exc:
            return messages.encode({"error": str(exc)})
        camera = req.get("camera")
        if set(req) - {"camera"} or not (camera is None or isinstance(camera, str)):
            return messages.encode({"error": "request must be {\"camera\": <id or null>}"})
        return self.snapshot_reply(camera)

    def _serve_snapshots(self, rep: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(rep, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(SNAPSHOT_POLL_MS):
                    continue
                frames = rep.recv_multipart()
                # REP must answer every request, or the socket's state machine stays stuck.
                rep.send(self._answer(frames))
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
        self._pub.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

