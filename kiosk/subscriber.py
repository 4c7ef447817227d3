"""The kiosk's feed: one ZeroMQ SUB per device, a snapshot REQ on start, on reconnect and on any seq gap.

One thread owns every socket (ZeroMQ sockets are not thread-safe) and polls them together: SUBs,
their handshake monitors (:class:`edge.link.client.Link`) and the snapshot requests in flight, which never
block the others. Every message goes through :func:`kiosk.validate.parse` (topic, JSON, schema,
device/camera match: :func:`edge.link.messages.parse_message`'s checks, fast); a bad one is counted and
logged (the first few of each device, then every hundredth) and skipped, never raised. Good ones
are handed to a sink (the service), which updates the engine.

A device that refuses the handshake (its allow-list lacks the kiosk's key, or the pinned key is
wrong) is reported with the :class:`~edge.errors.LinkError`'s reason and retried after
``RETRY_REFUSED_S``; a device whose snapshot endpoint does not answer is retried with backoff;
the other devices carry on.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import zmq

from edge.backoff import Backoff
from edge.errors import ConfigError, LinkError, MessageError
from edge.link import messages
from edge.link.client import ClientKeys, Link
from kiosk.config import DeviceEntry, KioskConfig
from kiosk.validate import parse

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20        # a labels message is a few kB: bigger ones are counted as bad
HARD_MAX_BYTES = 16 << 20          # libzmq cuts (for good) a connection that sends more: see _silent
MAX_SNAPSHOT_BYTES = 64 << 20
POLL_MS = 100
RCVHWM = 100_000                   # 32 devices x 4 cameras x 2/s is 256/s: seconds of slack, not minutes
RETRY_REFUSED_S = 10.0          # a refused kiosk tries again (a key may have been allowed meanwhile)
SNAPSHOT_BACKOFF_S = 1.0      # the first wait after a snapshot request failed, doubling ...
SNAPSHOT_BACKOFF_MAX_S = 30.0  # ... up to this
LOG_FIRST_BAD = 5                  # bad messages logged one by one per device, then every hundredth


class Sink(Protocol):
    def on_message(self, kind: str, msg: dict[str, Any]) -> None: ...
    def on_device(self, device: str, info: dict[str, Any]) -> None: ...


@dataclass
class DeviceFeed:
    """One device's sockets and counters (owned by the feed thread)."""

    entry: DeviceEntry
    sub: Link | None = None
    req: Link | None = None
    req_deadline: float = 0.0
    snapshot_due: float = 0.0           # monotonic time of the next snapshot request (0: now)
    snapshot_backoff: Backoff = field(default_factory=lambda: Backoff(SNAPSHOT_BACKOFF_S, SNAPSHOT_BACKOFF_MAX_S))
    handshakes: int = 0
    retry_at: float = 0.0               # when a refused link is tried again
    last_rx: float = 0.0                # when the SUB last received anything
    last_seq: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=lambda: {"link": "connecting", "error": None, "received": 0,
                                                          "bad": 0, "gaps": 0, "snapshots": 0, "reconnects": 0})


class Feed:
    """Subscribes to every device of ``config`` and hands their messages to ``sink``.

    Args:
        config: The kiosk config (devices, keys, snapshot timeout).
        sink: Receives validated messages and device link changes (called from the feed thread).
        context: ZeroMQ context (default the process-wide one).

    Raises:
        ConfigError: the kiosk's or a device's key file cannot be read.
    """

    def __init__(self, config: KioskConfig, sink: Sink, *, context: zmq.Context | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.sink = sink
        self._ctx = context or zmq.Context.instance()
        self._clock = clock
        self._keys: dict[str, ClientKeys | None] = {}
        for d in config.devices:
            self._keys[d.id] = (ClientKeys.load(d.server_key, config.curve.client_secret_key)
                                if config.curve is not None else None)
        self.devices = {d.id: DeviceFeed(d) for d in config.devices}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Feed":
        """Connect every device and start the feed thread."""
        self._thread = threading.Thread(target=self._run, name="gemsight-kiosk-feed", daemon=True)
        self._thread.start()
        return self

    @property
    def thread(self) -> threading.Thread | None:
        """The feed thread once started (the service's health checks that it runs)."""
        return self._thread

    def stop(self) -> None:
        """Stop the thread and close every socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _link(self, dev: DeviceFeed, kind: int, endpoint: str) -> Link:
        keys = self._keys[dev.entry.id]
        size = HARD_MAX_BYTES if kind == zmq.SUB else MAX_SNAPSHOT_BYTES
        options = {zmq.MAXMSGSIZE: size}
        if kind == zmq.SUB:
            options[zmq.RCVHWM] = RCVHWM
        return Link(kind, endpoint, keys, plaintext=keys is None, device=dev.entry.id, context=self._ctx,
                    options=options)

    def _connect(self, dev: DeviceFeed) -> None:
        dev.sub = self._link(dev, zmq.SUB, dev.entry.labels)
        dev.sub.socket.setsockopt(zmq.SUBSCRIBE, f"{messages.TOPIC_ROOT}/{dev.entry.id}/".encode())
        dev.handshakes = 0
        dev.last_rx = dev.snapshot_due = self._clock()
        dev.info.update(link="connecting", error=None)

    def _close(self, dev: DeviceFeed) -> None:
        for link in (dev.sub, dev.req):
            if link is not None:
                link.close()
        dev.sub = dev.req = None

    # -- the loop ----------------------------------------------------------------------------------
    def _run(self) -> None:
        now = self._clock()
        for dev in self.devices.values():
            try:
                self._connect(dev)
                self.sink.on_device(dev.entry.id, dict(dev.info))
            except ConfigError as exc:       # an endpoint libzmq refuses: that device only
                self._refused(dev, str(exc), now)
        try:
            while not self._stop.is_set():
                self._turn()
        finally:
            for dev in self.devices.values():
                self._close(dev)

    def _turn(self) -> None:
        poller = zmq.Poller()
        for dev in self.devices.values():
            for link in (dev.sub, dev.req):
                if link is not None:
                    poller.register(link.socket, zmq.POLLIN)
                    poller.register(link.monitor, zmq.POLLIN)
        ready = dict(poller.poll(POLL_MS))
        now = self._clock()
        for dev in self.devices.values():
            try:
                self._service(dev, ready, now)
            except LinkError as exc:
                self._refused(dev, str(exc), now)
            except ConfigError as exc:   # a bad endpoint: stays broken until the config changes
                self._refused(dev, str(exc), now)

    def _service(self, dev: DeviceFeed, ready: dict, now: float) -> None:
        if dev.sub is None:
            if now >= dev.retry_at:
                logger.info("%s: connecting again", dev.entry.id)
                self._connect(dev)
            return
        dev.sub.check()
        if dev.sub.handshakes != dev.handshakes:
            if dev.handshakes:               # a new handshake after a good one: the device came back
                dev.info["reconnects"] += 1
                dev.snapshot_due = min(dev.snapshot_due, now)
            dev.handshakes = dev.sub.handshakes
            if dev.info["link"] != "up":
                dev.info.update(link="up", error=None)
                self.sink.on_device(dev.entry.id, dict(dev.info))
        if dev.sub.socket in ready:
            dev.last_rx = now
            self._drain(dev)
        elif dev.handshakes and now - dev.last_rx > self._silence_s:
            self._silent(dev, now)
            return
        if dev.req is not None:
            dev.req.check()
            if dev.req.socket in ready:
                self._snapshot_reply(dev, now)
            elif now >= dev.req_deadline:
                self._snapshot_failed(dev, f"snapshot endpoint {dev.entry.snapshot} did not answer within "
                                           f"{self.config.policies.snapshot_timeout_s:g} s", now)
        elif dev.entry.snapshot and now >= dev.snapshot_due:
            dev.req = self._link(dev, zmq.REQ, dev.entry.snapshot)
            # Never a blocking send in this loop: a refused REQ has no pipe and would block every device.
            # Not taken now, the request times out below (or check() reports the refusal).
            dev.req.send(messages.encode({"camera": None}), 0.0)
            dev.req_deadline = now + self.config.policies.snapshot_timeout_s
            dev.snapshot_due = float("inf")

    @property
    def _silence_s(self) -> float:
        # Heartbeats come every heartbeat_s: this much silence on a connected link means it is dead
        # for good (libzmq does not reconnect after a protocol error such as a message over
        # MAXMSGSIZE) or the device hangs; a fresh connection costs nothing either way.
        p = self.config.policies
        return 2 * p.stale_heartbeats * p.heartbeat_s

    def _silent(self, dev: DeviceFeed, now: float) -> None:
        logger.warning("%s: nothing received for %.1f s on a connected link; connecting again",
                       dev.entry.id, now - dev.last_rx)
        self._close(dev)
        self._connect(dev)
        dev.info["reconnects"] += 1
        self.sink.on_device(dev.entry.id, dict(dev.info))

    def _refused(self, dev: DeviceFeed, error: str, now: float) -> None:
        logger.error("%s (retrying in %.0f s)", error, RETRY_REFUSED_S)
        self._close(dev)
        dev.retry_at = now + RETRY_REFUSED_S
        dev.info.update(link="refused", error=error)
        self.sink.on_device(dev.entry.id, dict(dev.info))

    def _drain(self, dev: DeviceFeed) -> None:
        sock = dev.sub.socket
        for _ in range(1000):                # bounded, so one chatty device cannot starve the others
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            dev.info["received"] += 1
            if len(frames) != 2:
                self._bad(dev, f"{len(frames)} frames instead of [topic, json]")
                continue
            if len(frames[1]) > MAX_MESSAGE_BYTES:
                self._bad(dev, f"message of {len(frames[1])} bytes (limit {MAX_MESSAGE_BYTES})")
                continue
            try:
                device, camera, kind, msg = parse(frames[0], frames[1])
            except MessageError as exc:
                self._bad(dev, str(exc))
                continue
            if device != dev.entry.id:       # the subscription prefix makes this impossible, unless topics lie
                self._bad(dev, f"message of device {device!r} on the link of {dev.entry.id}")
                continue
            if kind == "labels":
                self._check_seq(dev, camera, msg["seq"])
            elif kind == "heartbeat":
                for cam, info in msg["cameras"].items():
                    seq = info.get("seq")
                    if isinstance(seq, int) and cam in dev.last_seq and seq > dev.last_seq[cam]:
                        self._gap(dev, cam, dev.last_seq[cam] + 1, seq)
            self.sink.on_message(kind, msg)

    def _check_seq(self, dev: DeviceFeed, camera: str, seq: int) -> None:
        last = dev.last_seq.get(camera)
        dev.last_seq[camera] = seq
        if last is not None and seq > last + 1:
            self._gap(dev, camera, last + 1, seq - 1)
        elif last is not None and seq < last:
            logger.warning("%s/%s: seq went back from %d to %d (device restarted); asking for a snapshot",
                           dev.entry.id, camera, last, seq)
            dev.snapshot_due = min(dev.snapshot_due, self._clock())

    def _gap(self, dev: DeviceFeed, camera: str, first: int, last: int) -> None:
        now = self._clock()
        if dev.req is not None or dev.snapshot_due <= now:
            return                           # a snapshot is on its way already
        dev.info["gaps"] += 1
        logger.warning("%s/%s: missed seq %d-%d; asking for a snapshot", dev.entry.id, camera, first, last)
        dev.snapshot_due = now

    def _bad(self, dev: DeviceFeed, why: str) -> None:
        dev.info["bad"] += 1
        n = dev.info["bad"]
        if n <= LOG_FIRST_BAD or n % 100 == 0:
            logger.warning("%s: bad message #%d skipped: %s", dev.entry.id, n, why)

    def _snapshot_reply(self, dev: DeviceFeed, now: float) -> None:
        try:
            reply = messages.parse_snapshot(dev.req.socket.recv(zmq.NOBLOCK))
        except zmq.Again:
            return
        except MessageError as exc:
            self._snapshot_failed(dev, f"snapshot of {dev.entry.id}: {exc}", now)
            return
        dev.req.close()
        dev.req = None
        dev.snapshot_backoff.reset()
        dev.info["snapshots"] += 1
        for cam, msg in reply.get("cameras", {}).items():
            if msg["device"] != dev.entry.id:
                self._bad(dev, f"snapshot holds a labels message of device {msg['device']!r}")
                continue
            if msg["seq"] <= dev.last_seq.get(cam, -1):
                continue                     # live messages got here first: the snapshot is older
            dev.last_seq[cam] = msg["seq"]
            self.sink.on_message("labels", msg)
        for msg in reply.get("status", {}).values():
            if msg["device"] == dev.entry.id:
                self.sink.on_message("status", msg)
        if dev.info["error"]:
            dev.info["error"] = None
            self.sink.on_device(dev.entry.id, dict(dev.info))

    def _snapshot_failed(self, dev: DeviceFeed, error: str, now: float) -> None:
        dev.req.close()                      # a REQ without its reply is stuck: never reuse it
        dev.req = None
        wait = dev.snapshot_backoff.failed()
        dev.snapshot_due = now + wait
        logger.warning("%s; next try in %.0f s", error, wait)
        dev.info["error"] = error
        self.sink.on_device(dev.entry.id, dict(dev.info))
