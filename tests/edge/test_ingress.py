"""What the edge's sockets accept from the network (edge.link.ingress): real sockets and raw TCP on loopback."""
from __future__ import annotations

import socket
import struct
import time
import tracemalloc

import pytest
import zmq

from edge.link import messages
from edge.link.ingress import MAX_REQUEST_BYTES
from edge.link.listen import Listener
from edge.link.publisher import Publisher
from tests.helpers import ANY, make_curve_files, make_labels


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _greeting(mechanism: bytes) -> bytes:
    """A ZMTP 3.0 greeting (64 bytes) as any client sends it first."""
    return b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + mechanism.ljust(20, b"\0") + b"\0" + b"\0" * 31


def _closed_by_peer(conn: socket.socket, timeout_s: float = 2.0) -> bool:
    """Whether the peer closed ``conn`` (EOF or reset) within ``timeout_s``, whatever it sent first."""
    conn.settimeout(timeout_s)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not conn.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def test_a1_pub_drops_a_huge_frame_before_the_handshake(tmp_path):
    """A raw client's CURVE greeting and a command frame announced as 200 MB: cut at the header, unbuffered."""
    curve = make_curve_files(tmp_path)
    with Publisher("case-01", ANY, None, curve=_curve(curve)) as pub, \
            Listener(pub.endpoint, keys=curve.client_keys()) as lis:
        conn = socket.create_connection(("127.0.0.1", _port(pub.endpoint)))
        try:
            conn.sendall(_greeting(b"CURVE") + b"\x06" + struct.pack(">Q", 200 << 20))
            try:
                conn.sendall(b"\0" * (1 << 20))  # the edge may already have hung up: that is the point
            except OSError:
                pass
            assert _closed_by_peer(conn), "the edge kept reading a 200 MB frame from an unauthenticated client"
        finally:
            conn.close()
        # Meanwhile the allowed client is served as usual, without a gap.
        deadline = time.monotonic() + 5
        while lis.recv(0.05) is None and time.monotonic() < deadline:
            pub.send_heartbeat()
        for _ in range(5):
            pub.publish_labels("cam0", make_labels("cam0"))
        seqs = [ev.msg["seq"] for ev in iter(lambda: lis.recv(1.0), None) if ev.kind == "labels"]
        assert seqs == [0, 1, 2, 3, 4]


def test_a1_limits_leave_room_for_a_real_curve_handshake(tmp_path):
    """A client with the longest routing id libzmq allows still completes the CURVE handshake on the PUB."""
    curve = make_curve_files(tmp_path)
    with Publisher("case-01", ANY, None, curve=_curve(curve)) as pub:
        keys = curve.client_keys()
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.ROUTING_ID, b"k" * 255)
        sub.curve_serverkey, sub.curve_publickey, sub.curve_secretkey = keys.server_public, keys.public, keys.secret
        sub.setsockopt(zmq.SUBSCRIBE, b"gemsight/" + b"x" * 200)  # longer than any real topic prefix
        sub.setsockopt(zmq.SUBSCRIBE, b"gemsight/")
        sub.connect(pub.endpoint)
        try:
            deadline = time.monotonic() + 5
            while not sub.poll(50) and time.monotonic() < deadline:
                pub.send_heartbeat()
            assert sub.poll(0), "a legitimate client was cut by the size limit"
        finally:
            sub.close()


def _curve(curve):
    from edge.config.publish import CurveConfig

    return CurveConfig(**curve.config)


def _ask(endpoint: str, frames: list[bytes], timeout_ms: int = 3000) -> bytes | None:
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(endpoint)
        req.send_multipart(frames)
        return req.recv() if req.poll(timeout_ms) else None
    finally:
        req.close()


@pytest.fixture
def pub():
    with Publisher("case-01", ANY, ANY, curve=None) as p:
        p.publish_labels("cam0", make_labels("cam0"))
        yield p


def test_a2_a_request_of_many_frames_is_bounded_as_a_whole(pub, tmp_path):
    """2,000 frames of 4,000 B (each under the frame limit): on tcp the guard cuts the connection
    (tests/edge/test_snapshot_guard.py); on ipc (bound directly) it is refused, never copied whole into Python."""
    frames = [b"x" * 4000] * 2000
    assert _ask(pub.snapshot_endpoint, frames, timeout_ms=1000) is None
    assert pub._guard.cuts == 1
    with Publisher("case-01", ANY, f"ipc://{tmp_path}/snapshot", curve=None) as direct:
        tracemalloc.start()
        try:
            reply = _ask(direct.snapshot_endpoint, frames)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    error = messages.decode(reply)["error"]
    assert "2000 frame(s) of 8000000 bytes" in error
    assert peak < 1 << 20, f"the request was copied into Python ({peak:,} bytes traced)"
    # Several small frames under the byte limit are refused too: a request is one frame.
    assert "2 frame(s)" in messages.decode(_ask(pub.snapshot_endpoint, [b"{}", b"{}"]))["error"]
    assert "3 frame(s) of 12000 bytes" in messages.decode(_ask(pub.snapshot_endpoint, frames[:3]))["error"]
    assert "cam0" in messages.parse_snapshot(_ask(pub.snapshot_endpoint, [b'{"camera": null}']))["cameras"]


def test_a2_a_frame_over_the_request_limit_drops_the_connection(pub):
    assert _ask(pub.snapshot_endpoint, [b" " * (MAX_REQUEST_BYTES + 1)], timeout_ms=300) is None
    assert messages.decode(_ask(pub.snapshot_endpoint, [b'{"camera": null}']))["device"] == "case-01"
