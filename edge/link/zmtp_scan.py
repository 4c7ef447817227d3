"""Counting the ZMTP 3 frames of a connection as they go by, without keeping them (for :mod:`edge.link.snapshot_guard`).

ZeroMQ's wire protocol (ZMTP 3.0/3.1, rfc.zeromq.org/spec/23 and 37) starts each direction with a
64-byte greeting, then sends frames: a flags byte (bit 0 MORE, bit 1 LONG, bit 2 COMMAND), the body
size in 1 byte (or 8, big-endian, when LONG), then the body. Under CURVE every frame after the
handshake is a ``MESSAGE`` command whose MORE and COMMAND flags are inside the encrypted box, so what
a relay can see on either mechanism is: where each frame starts, how big it is, and the commands of
the handshake (``READY`` ends it, on NULL and on CURVE alike). That is enough to count frames in
both directions, which is what the guard needs; no body is ever copied.

:class:`Exchange` puts both directions of one connection to a REP socket side by side: every reply
is the request's envelope echoed, its empty delimiter and one frame of JSON, and each of those
stands for a frame of the client's that libzmq has consumed (a ``PONG`` for a ``PING``). So the
frames a client has sent beyond those the REP has sent back after its handshake bound what libzmq
can be holding for that client, complete messages or not.

A peer that does not speak ZMTP 3 (a ZMTP 1.0 or 2.0 greeting, from libzmq older than 4.0) or that
announces a frame over ``max_frame`` bytes is refused with :class:`ZmtpViolation`.
"""
from __future__ import annotations

GREETING_BYTES = 64
SIGNATURE_BYTES = 11    # the greeting's signature (10 bytes) and major version: a peer waits for these
_LONG, _COMMAND = 0x02, 0x04
_READY = b"\x05READY"   # the command that ends a handshake (NULL, PLAIN, CURVE), as its body begins


class ZmtpViolation(ValueError):
    """The stream is not ZMTP 3, or breaks a limit; the message says how, in a few words."""


class FrameScanner:
    """The frames of one direction of one connection, counted as bytes are fed in any chunking.

    Args:
        max_frame: Largest frame body accepted (libzmq's ``ZMQ_MAXMSGSIZE`` of the receiving socket),
            or ``None`` for any size (the server's replies).
        check_greeting: Refuse a greeting that is not ZMTP 3 (the client's side).

    Attributes:
        frames: Frames begun so far (a frame counts as soon as its header is complete).
        ready_at: ``frames`` when this side's ``READY`` command ended its handshake, else ``None``.
    """

    def __init__(self, max_frame: int | None = None, *, check_greeting: bool = False) -> None:
        self.max_frame = max_frame
        self.check_greeting = check_greeting
        self.frames = 0
        self.ready_at: int | None = None
        self._greeting = 0          # greeting bytes seen
        self._signature = b""       # the greeting's first 11 bytes (signature and major version)
        self._head = b""            # a frame header begun in one chunk and ended in the next
        self._left = 0              # body bytes of the current frame still to come
        self._prefix: bytes | None = None  # the start of a command's body, until READY can be told apart

    @property
    def mid_frame(self) -> bool:
        """Whether a greeting or a frame has begun and not ended."""
        return 0 < self._greeting < GREETING_BYTES or bool(self._head) or self._left > 0

    @property
    def greeted(self) -> bool:
        """Whether the whole greeting has gone by."""
        return self._greeting >= GREETING_BYTES

    @property
    def after_ready(self) -> int:
        """Frames after the handshake (0 until ``READY``)."""
        return 0 if self.ready_at is None else self.frames - self.ready_at

    def feed(self, data: bytes) -> None:
        """Account for the next bytes of the stream.

        Raises:
            ZmtpViolation: not a ZMTP 3 greeting, or a frame over ``max_frame`` bytes.
        """
        view = memoryview(data)
        pos, end = 0, len(view)
        if self._greeting < GREETING_BYTES:
            take = min(GREETING_BYTES - self._greeting, end)
            if self.check_greeting and len(self._signature) < SIGNATURE_BYTES:
                self._signature += bytes(view[:min(take, SIGNATURE_BYTES - len(self._signature))])
                self._check_signature()
            self._greeting += take
            pos = take
        while pos < end:
            if self._left:
                step = min(self._left, end - pos)
                if self._prefix is not None:
                    self._prefix += bytes(view[pos:pos + min(step, len(_READY) - len(self._prefix))])
                    self._check_ready()
                self._left -= step
                pos += step
                continue
            pos = self._header(view, pos, end)

    def _header(self, view: memoryview, pos: int, end: int) -> int:
        """Read (part of) a frame header from ``pos``; returns the position after what was used."""
        need = 2 if not self._head or not self._head[0] & _LONG else 9
        take = min(need - len(self._head), end - pos)
        self._head += bytes(view[pos:pos + take])
        pos += take
        if len(self._head) == 2 and self._head[0] & _LONG:
            return pos  # a long header: 7 more size bytes
        if len(self._head) < need:
            return pos
        flags = self._head[0]
        size = int.from_bytes(self._head[1:], "big")
        self._head = b""
        if self.max_frame is not None and size > self.max_frame:
            raise ZmtpViolation(f"a frame of {size} bytes (over the {self.max_frame}-byte limit)")
        self.frames += 1
        self._left = size
        self._prefix = b"" if flags & _COMMAND and self.ready_at is None else None
        if self._prefix is not None and size < len(_READY):
            self._prefix = None  # too short to be READY
        return pos

    def _check_ready(self) -> None:
        if self._prefix is not None and len(self._prefix) == len(_READY):
            if self._prefix == _READY:
                self.ready_at = self.frames
            self._prefix = None

    def _check_signature(self) -> None:
        sig = self._signature
        if (sig[:1] and sig[0] != 0xFF) or (len(sig) >= 10 and not sig[9] & 0x01):
            raise ZmtpViolation("not a ZMTP greeting")
        if len(sig) == SIGNATURE_BYTES and sig[10] < 3:
            raise ZmtpViolation(f"a ZMTP {'1.0' if sig[10] == 0 else '2.0'} greeting (ZMTP 3, libzmq 4 or later, "
                                "is required)")


class Exchange:
    """One client's connection to a REP socket, counted in frames both ways.

    Args:
        max_frame: The REP's ``ZMQ_MAXMSGSIZE``.
        handshake_frames: The commands a client sends in its handshake (NULL: 1, CURVE: 2).
    """

    def __init__(self, max_frame: int, handshake_frames: int) -> None:
        self.sent = FrameScanner(max_frame, check_greeting=True)   # what the client sent
        self.replied = FrameScanner()                               # what the REP sent back
        self.handshake_frames = handshake_frames

    @property
    def pending(self) -> int:
        """Client frames that the REP's frames after its handshake do not account for."""
        return self.sent.frames - self.replied.after_ready

    @property
    def unfinished(self) -> bool:
        """A request is under way: frames unanswered beyond the handshake, or a frame half sent."""
        return self.sent.mid_frame or self.pending > self.handshake_frames

    @property
    def authenticated(self) -> bool:
        """The REP ended its handshake (``READY``): on CURVE, the client passed the allow-list."""
        return self.replied.ready_at is not None

    def may_forward(self, forwarded: int) -> int | None:
        """How many more of the client's bytes may reach the REP now (``None``: any), after ``forwarded``.

        The greeting's first 11 bytes wait for nothing, the rest for the REP's whole greeting, as
        libzmq's own peers exchange them: passed on at once, a mechanism the REP refuses can close the
        connection before the REP's greeting has left, and the client would not learn why ("mechanism
        mismatch").
        """
        return None if self.replied.greeted else max(0, SIGNATURE_BYTES - forwarded)
