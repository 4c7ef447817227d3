"""What the edge accepts from the network: limits on every socket it binds, sized from what each carries.

The edge binds two sockets (:mod:`edge.link.publisher`), and each legitimately receives very little:

* the **PUB** socket receives only what subscribers send: the handshake (a CURVE ``INITIATE`` command
  is under 600 bytes) and subscriptions (a topic prefix, at most ~150 bytes:
  ``gemsight/<device>/<camera>/heartbeat`` with 64-character ids);
* the snapshot **REP** socket receives requests ``{"camera": "<id or null>"}`` (under 100 bytes).

``ZMQ_MAXMSGSIZE`` is applied to both before they are bound (:func:`limit_socket`). libzmq checks it
on every frame's length field as soon as the frame header arrives, *including the commands of the
handshake*: a client announcing a bigger frame is disconnected before a byte of it is buffered, CURVE
or not, authenticated or not (a raw client sending a CURVE greeting and one 200 MB command frame
used to cost the edge the whole 200 MB; now nothing). ``ZMQ_HANDSHAKE_IVL`` closes a connection
that has not finished its handshake within :data:`HANDSHAKE_S`.

libzmq's limit is per frame: the frames of one multipart message are queued until its last frame
arrives, and no socket option bounds how many there are. A snapshot request is therefore read one
frame at a time (:func:`read_request`, never ``recv_multipart``): only the first frame is kept, the
rest are counted and released at once, and a request of more than :data:`MAX_REQUEST_FRAMES` frame
or :data:`MAX_REQUEST_BYTES` bytes in all is answered with an error without being parsed. Frames that
never end a message would stay queued in libzmq until the connection closes: a ``tcp://`` snapshot
endpoint is therefore served through :mod:`edge.link.snapshot_guard`, which cuts a client whose frames
no reply accounts for pass a small count. See ``docs/security.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import zmq

#: Largest frame a subscriber may send to the PUB socket (handshake commands and subscriptions).
MAX_SUBSCRIPTION_BYTES = 1024
#: Largest snapshot request, all of its frames together (a real one is under 100 bytes).
MAX_REQUEST_BYTES = 4096
#: A snapshot request is one frame; more are counted, released and refused.
MAX_REQUEST_FRAMES = 1
#: A connection that has not finished its handshake after this many seconds is closed (libzmq: 30 s).
HANDSHAKE_S = 5.0


def limit_socket(sock: zmq.Socket, max_frame_bytes: int) -> None:
    """Bound what ``sock`` accepts from any peer: frame size and handshake time (set before binding)."""
    sock.setsockopt(zmq.MAXMSGSIZE, int(max_frame_bytes))
    sock.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_S * 1000))


@dataclass(frozen=True)
class Request:
    """One request as read by :func:`read_request`: its first frame, and how many frames and bytes it had."""

    first: bytes
    frames: int
    size: int

    @property
    def within_limits(self) -> bool:
        """At most :data:`MAX_REQUEST_FRAMES` frames and :data:`MAX_REQUEST_BYTES` bytes in all."""
        return self.frames <= MAX_REQUEST_FRAMES and self.size <= MAX_REQUEST_BYTES


def read_request(sock: zmq.Socket) -> Request:
    """Receive one whole message from ``sock`` frame by frame, keeping only its first frame.

    Every frame is received (a REP socket must consume the whole request before it can answer),
    but frames after the first are released as soon as they are counted: a request of 75,000
    frames costs no Python copies, and libzmq frees each frame's buffer as it goes.
    """
    frame = sock.recv(copy=False)
    first, frames, size = frame.bytes if len(frame) <= MAX_REQUEST_BYTES else b"", 1, len(frame)
    more = frame.more
    while more:
        frame = sock.recv(copy=False)
        frames += 1
        size += len(frame)
        more = frame.more
        del frame
    return Request(first, frames, size)
