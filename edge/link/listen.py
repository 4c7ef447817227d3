"""Subscribe to a device's messages: :class:`Listener` for code, ``gemsight-edge listen`` for people.

The listener tracks ``seq`` per camera and reports gaps (messages lost on the way: a slow subscriber
past the publisher's high-water mark, a network hiccup). Gaps count from the first live message of a
camera; a heartbeat carries each camera's last ``seq``, so messages lost at the tail are noticed too.
A ``seq`` that goes backwards means the publisher restarted; tracking starts over.

Whatever arrives, the listener keeps listening: a message over :data:`MAX_MESSAGE_BYTES` is skipped
with a warning; one over :data:`HARD_MAX_BYTES` makes libzmq close the connection without reading it,
and for good (no reconnect after a protocol error), so a lost connection is logged and made again.

With a snapshot endpoint the listener first asks it for the latest state (ZeroMQ's slow joiner:
a new subscriber misses what was published before its subscription took effect); live messages
not newer than the snapshot are then skipped as duplicates.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import zmq

from edge.cli_support import run_main, setup_logging
from edge.errors import ConfigError, LinkError, MessageError
from edge.link import messages
from edge.link.client import ClientKeys, Link
from edge.link.client import add_arguments as add_link_arguments
from edge.link.client import keys_from_args
from edge.link.listen_view import Event, Renderer, format_summary, printable

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20  # a labels message is a few kB: a bigger one is skipped, with a warning
HARD_MAX_BYTES = 16 << 20    # libzmq cuts a connection that sends a bigger one, unread (the listener reconnects)
CHECK_LINK_S = 0.5           # how often a waiting recv() looks for a lost connection
MAX_GAP_RANGES = 1000        # keep the first ranges for the summary, count all of them


@dataclass
class CameraTrack:
    """What the listener knows about one camera's ``seq``."""

    last_seq: int | None = None      # last live seq seen (None before the first live message)
    snapshot_seq: int | None = None  # seq of the snapshot's message, live ones up to it are duplicates
    first_seq: int | None = None
    received: int = 0
    missed: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # inclusive ranges of missing seq
    restarts: int = 0
    duplicates: int = 0


class Listener:
    """A SUB socket on a gemsight publisher that decodes messages and tracks ``seq`` per camera.

    Args:
        endpoint: The publisher's PUB endpoint to connect to.
        camera: Only this camera (heartbeats still come through).
        device: Only this device.
        snapshot_endpoint: The publisher's REP endpoint for :meth:`fetch_snapshot`.
        context: ZeroMQ context; default ``zmq.Context.instance()``.
        keys: CURVE keys (:class:`edge.link.client.ClientKeys`: the device's pinned public key and this
            client's key pair), or ``None`` with ``plaintext=True`` for a ``publish.curve: null`` device.
        plaintext: Explicitly talk without CURVE.
        rcvhwm: Receive high-water mark (large, so the listener itself is not where messages drop).

    Raises:
        ConfigError: a bad endpoint, or neither keys nor ``plaintext``.

    :meth:`recv` and :meth:`fetch_snapshot` raise :class:`~edge.errors.LinkError` when the device
    refuses the handshake (see :mod:`edge.link.client`).
    """

    def __init__(self, endpoint: str, *, camera: str | None = None, device: str | None = None,
                 snapshot_endpoint: str | None = None, context: zmq.Context | None = None,
                 keys: ClientKeys | None = None, plaintext: bool = False, rcvhwm: int = 100_000) -> None:
        self.endpoint = endpoint
        self.camera = camera
        self.device = device
        self.snapshot_endpoint = snapshot_endpoint
        self._ctx = context or zmq.Context.instance()
        self._keys, self._plaintext = keys, plaintext
        self.tracks: dict[str, CameraTrack] = {}
        self.received = 0
        self.rejected = 0  # messages skipped as malformed (bad topic, JSON or schema)
        self.reconnects = 0
        self._rcvhwm = int(rcvhwm)
        self._connect()

    def _connect(self) -> None:
        self.link = self._link(zmq.SUB, self.endpoint, {zmq.RCVHWM: self._rcvhwm, zmq.MAXMSGSIZE: HARD_MAX_BYTES})
        self._sub = self.link.socket
        prefix = f"{messages.TOPIC_ROOT}/"
        if self.device:
            prefix += f"{self.device}/"
            if self.camera:
                prefix += f"{self.camera}/"
        # Heartbeats (camera "_") would not match a camera prefix, so subscribe to them separately.
        self._sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        if self.device and self.camera:
            self._sub.setsockopt(zmq.SUBSCRIBE,
                                 f"{messages.TOPIC_ROOT}/{self.device}/{messages.ALL_CAMERAS}/".encode())

    def _reconnect_if_lost(self) -> None:
        if not self.link.disconnects:
            return
        self.reconnects += 1
        logger.warning("connection to %s lost (the device restarted, or sent a message over the %d-byte limit, "
                       "which closes it for good); connecting again", self.endpoint, HARD_MAX_BYTES)
        self.link.close()
        self._connect()

    def _link(self, kind: int, endpoint: str, options: dict[int, int]) -> Link:
        # SUBSCRIBE may follow connect; RCVHWM and MAXMSGSIZE must come before it (Link sets them first).
        return Link(kind, endpoint, self._keys, plaintext=self._plaintext, device=self.device, context=self._ctx,
                    options=options)

    def track(self, camera: str) -> CameraTrack:
        """The seq tracking state of ``camera`` (created on first use)."""
        t = self.tracks.get(camera)
        if t is None:
            t = self.tracks[camera] = CameraTrack()
        return t

    def fetch_snapshot(self, timeout_s: float = 2.0) -> list[Event]:
        """Ask the snapshot endpoint for the latest state; returns it as events (labels, then status).

        Raises:
            MessageError: no snapshot endpoint, no answer within ``timeout_s``, or a bad reply.
            LinkError: the snapshot endpoint refused the handshake.
        """
        if not self.snapshot_endpoint:
            raise MessageError("no snapshot endpoint given")
        req = self._link(zmq.REQ, self.snapshot_endpoint, {zmq.MAXMSGSIZE: 64 * MAX_MESSAGE_BYTES})
        try:
            data = req.request(messages.encode({"camera": self.camera}), timeout_s)
            if data is None:
                raise MessageError(f"snapshot endpoint {self.snapshot_endpoint} did not answer within {timeout_s:g} s")
        finally:
            req.close()  # a REQ without its reply is stuck: never reuse it
        try:
            reply = messages.parse_snapshot(data)
        except MessageError as exc:
            self.rejected += 1
            raise MessageError(f"snapshot endpoint {self.snapshot_endpoint}: {exc}") from exc
        events = []
        for kind, key in (("labels", "cameras"), ("status", "status")):
            for cam, msg in reply[key].items():
                if not self._wanted(msg["device"], cam):
                    continue
                if kind == "labels":
                    self.track(cam).snapshot_seq = msg["seq"]
                events.append(Event(kind, cam, msg, messages.encode(msg), from_snapshot=True))
        return events

    def _wanted(self, device: str | None, camera: str | None) -> bool:
        if self.device and device != self.device:
            return False
        return not (self.camera and camera is not None and camera != self.camera)

    def _on_labels(self, camera: str, seq: int) -> tuple[bool, list[tuple[str, int, int]]]:
        """Update the camera's track with a live seq; returns (is_new, gaps found)."""
        t = self.track(camera)
        if t.last_seq is None:
            if t.snapshot_seq is not None and seq <= t.snapshot_seq:
                t.duplicates += 1
                return False, []
            t.last_seq = t.first_seq = seq
            t.received += 1
            return True, []
        if seq == t.last_seq + 1:
            t.last_seq = seq
            t.received += 1
            return True, []
        if seq <= t.last_seq:
            if seq == t.last_seq:
                t.duplicates += 1
                return False, []
            t.restarts += 1
            logger.warning("camera %s: seq went back from %d to %d (publisher restarted)", camera, t.last_seq, seq)
            t.last_seq = seq
            t.received += 1
            return True, []
        gap = self._gap(camera, t, t.last_seq + 1, seq - 1)
        t.last_seq = seq
        t.received += 1
        return True, [gap]

    def _gap(self, camera: str, t: CameraTrack, first: int, last: int) -> tuple[str, int, int]:
        t.missed += last - first + 1
        if len(t.gaps) < MAX_GAP_RANGES:
            t.gaps.append((first, last))
        logger.debug("camera %s: missed seq %d-%d", camera, first, last)
        return camera, first, last

    def _on_heartbeat(self, msg: dict) -> list[tuple[str, int, int]]:
        gaps = []
        for cam, info in msg["cameras"].items():  # validated: a mapping of camera -> mapping
            t = self.tracks.get(cam)
            seq = info.get("seq")
            if t is None or t.last_seq is None or not isinstance(seq, int) or not self._wanted(None, cam):
                continue
            # PUB keeps order on one connection: a heartbeat newer than our last seq means the rest was lost.
            if seq > t.last_seq:
                gaps.append(self._gap(cam, t, t.last_seq + 1, seq))
                t.last_seq = seq
        return gaps

    def recv(self, timeout_s: float | None = None) -> Event | None:
        """The next wanted message, or ``None`` after ``timeout_s`` seconds (``None``: wait forever).

        Every message is checked against its JSON Schema first (:func:`edge.link.messages.parse_message`);
        one that fails is counted in :attr:`rejected`, logged in one line and skipped, never raised:
        one bad publisher must not stop a kiosk.

        Raises:
            LinkError: the device refused the handshake (a refusal is never retried in silence).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = CHECK_LINK_S if deadline is None else min(CHECK_LINK_S, max(0.0, deadline - time.monotonic()))
            if not self.link.poll_in(wait):
                self._reconnect_if_lost()
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            frames = self._sub.recv_multipart()
            event = self._handle(frames)
            if event is not None:
                return event
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _handle(self, frames: list[bytes]) -> Event | None:
        if len(frames) != 2:
            self.rejected += 1
            logger.warning("skipping a message of %d frames (expected [topic, json])", len(frames))
            return None
        if len(frames[1]) > MAX_MESSAGE_BYTES:
            self.rejected += 1
            logger.warning("skipping a message of %d bytes on topic %s: over the %d-byte limit", len(frames[1]),
                           printable(repr(frames[0][:80])), MAX_MESSAGE_BYTES)
            return None
        try:
            # Validated against its schema before anything reads it: one bad publisher must not stop us.
            device, camera, kind, msg = messages.parse_message(frames[0], frames[1])
        except MessageError as exc:
            self.rejected += 1
            logger.warning("skipping a bad message: %s", exc)
            return None
        if not self._wanted(device, camera):
            return None
        self.received += 1
        gaps: list[tuple[str, int, int]] = []
        if kind == "labels" and camera is not None:
            is_new, gaps = self._on_labels(camera, int(msg["seq"]))  # the schema's integer admits 7.0
            if not is_new:
                return None
        elif kind == "heartbeat":
            gaps = self._on_heartbeat(msg)
        return Event(kind, camera, msg, frames[1], gaps)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per camera: messages received, seq range, missed count, gap ranges, restarts."""
        return {cam: {"received": t.received, "first_seq": t.first_seq, "last_seq": t.last_seq,
                      "missed": t.missed, "gaps": [list(g) for g in t.gaps], "restarts": t.restarts,
                      "duplicates_skipped": t.duplicates}
                for cam, t in sorted(self.tracks.items())}

    def close(self) -> None:
        """Close the SUB socket and its handshake monitor."""
        self.link.close()

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``listen``'s arguments: ENDPOINT [--camera ID] [--device ID] [--json] [--snapshot REP] ..."""
    parser.add_argument("endpoint", metavar="ENDPOINT", help="publisher PUB endpoint, e.g. tcp://case-01:5555")
    parser.add_argument("--camera", metavar="ID", help="only this camera")
    parser.add_argument("--device", metavar="ID", help="only this device")
    parser.add_argument("--json", action="store_true", help="print each message as one JSON line (payload as sent)")
    parser.add_argument("--snapshot", metavar="REP_ENDPOINT",
                        help="ask this snapshot endpoint for the latest state first")
    parser.add_argument("--count", type=int, metavar="N", help="exit after N labels messages")
    parser.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds without a message")
    add_link_arguments(parser)  # --curve-server-key, --curve-client-key, --plaintext (edge.link.client)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Listen until ``--count`` labels messages, ``--timeout`` idle seconds, or Ctrl-C; print a summary.

    Returns:
        0, or 1 if ``--timeout`` passed without a single message.

    Raises:
        ConfigError: a bad argument, endpoint or key file; no keys without ``--plaintext``.
        LinkError: the device refused the handshake (wrong or unknown key, CURVE on one side only).
    """
    out = out or sys.stdout
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError(f"--timeout must be > 0, got {args.timeout}")
    if hasattr(out, "reconfigure"):  # a name or detail the terminal's encoding cannot show is escaped, not fatal
        out.reconfigure(errors="backslashreplace")
    mode = "json" if args.json else ("table" if out.isatty() else "lines")
    keys = keys_from_args(args)
    view = Renderer(out, mode)
    labels_seen = 0
    refused = False
    with Listener(args.endpoint, camera=args.camera, device=args.device, snapshot_endpoint=args.snapshot,
                  keys=keys, plaintext=keys is None) as listener:
        try:
            if args.snapshot:
                try:
                    for ev in listener.fetch_snapshot(timeout_s=args.timeout or 2.0):
                        view.show(ev)
                except MessageError as exc:
                    logger.warning("no snapshot: %s", exc)
            while args.count is None or labels_seen < args.count:
                ev = listener.recv(args.timeout)
                if ev is None:
                    logger.info("no message for %g s; stopping", args.timeout)
                    break
                view.show(ev)
                labels_seen += ev.kind == "labels"
        except KeyboardInterrupt:
            pass
        except LinkError:
            refused = True  # the one-line error is all there is to say
            raise
        finally:
            view.finish()
            summary = listener.summary()
            text = format_summary(summary, listener.received, listener.rejected)
            if not refused:
                (sys.stderr if mode == "json" else out).write(text)
    return 1 if listener.received == 0 and args.timeout is not None else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m edge.link.listen ENDPOINT ...`` (``gemsight-edge listen`` is the same)."""
    parser = argparse.ArgumentParser(prog="gemsight-listen", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_main(lambda: run(args), "gemsight-listen")


if __name__ == "__main__":
    sys.exit(main())
