"""The ZMTP frame counter (edge.link.zmtp_scan): any chunking, long frames, the handshake's end, bad greetings."""
from __future__ import annotations

import random

import pytest

from edge.link.zmtp_scan import Exchange, FrameScanner, ZmtpViolation
from tests.edge.test_snapshot_guard import READY_REQ, command, frame, greeting

STREAM = (greeting() + READY_REQ + frame(b"", True) + frame(b"x" * 300, True) + frame(b"", False)
          + command(b"PING", b"\0\1") + frame(b"y" * 70_000, False))


@pytest.mark.parametrize("seed", range(5))
def test_frames_are_counted_the_same_in_any_chunking(seed):
    rng = random.Random(seed)
    scan = FrameScanner(100_000, check_greeting=True)
    pos = 0
    while pos < len(STREAM):
        step = rng.choice([1, 2, 7, 64, 1000, 9000])
        scan.feed(STREAM[pos:pos + step])
        pos += step
        if 64 < pos < len(STREAM) - 70_000:
            assert scan.frames < 6   # the long frame has not begun
    assert (scan.frames, scan.ready_at, scan.after_ready, scan.mid_frame) == (6, 1, 5, False)


def test_a_partial_frame_counts_as_soon_as_its_header_is_complete():
    scan = FrameScanner()
    scan.feed(greeting() + b"\x02" + (5000).to_bytes(8, "big") + b"abc")
    assert scan.frames == 1 and scan.mid_frame and scan.ready_at is None


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\x0a", "not a ZMTP greeting"),                          # ZMTP 1.0: no 0xFF signature
    (b"\xff" + b"\0" * 8 + b"\x00", "not a ZMTP greeting"),
    (greeting(major=0)[:11], "a ZMTP 1.0 greeting"),
    (greeting(major=1), "a ZMTP 2.0 greeting"),
    (greeting() + b"\x00\xff", "a frame of 255 bytes (over the 100-byte limit)"),
    (greeting() + b"\x02" + (1 << 40).to_bytes(8, "big"), f"a frame of {1 << 40} bytes"),
])
def test_bad_greetings_and_big_frames_are_refused(data, message):
    with pytest.raises(ZmtpViolation, match=message.replace("(", r"\(").replace(")", r"\)")):
        FrameScanner(100, check_greeting=True).feed(data)


def test_an_exchange_balances_a_request_against_its_reply():
    ex = Exchange(4096, handshake_frames=1)
    ex.sent.feed(greeting())
    assert ex.may_forward(0) == 11 and ex.may_forward(11) == 0   # the rest waits for the REP's greeting
    ex.replied.feed(greeting() + command(b"READY", b"x"))
    assert ex.may_forward(11) is None and ex.authenticated
    ex.sent.feed(READY_REQ)
    assert not ex.unfinished
    ex.sent.feed(frame(b"", True) + frame(b"{}", False))
    assert ex.pending == 3 and ex.unfinished
    ex.replied.feed(frame(b"", True) + frame(b'{"device": "x"}', False))
    assert ex.pending == 1 and not ex.unfinished
