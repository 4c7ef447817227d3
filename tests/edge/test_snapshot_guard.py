"""The snapshot guard (edge.link.snapshot_guard): a request is bounded as a whole, however it is framed.

The attacks run against a publisher in its own process (tests/edge/guard_edge.py), so that its RSS is
the edge's alone; the limits, endpoint forms and legitimate traffic run in-process, on real sockets.
"""
from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from edge.link import messages
from edge.link.client import Link
from edge.link.listen import Listener
from tests.helpers import make_curve_files

ROOT = Path(__file__).resolve().parents[2]
FRAME = b"x" * 4000
RSS_LIMIT_MIB = 40   # docs/security.md: what one snapshot connection may cost the edge, with room to spare


def greeting(mechanism: bytes = b"NULL", major: int = 3) -> bytes:
    """A ZMTP 3 greeting (64 bytes), as libzmq's clients send it."""
    return b"\xff" + b"\0" * 8 + b"\x7f" + bytes([major, 1]) + mechanism.ljust(20, b"\0") + b"\0" * 32


def command(name: bytes, body: bytes = b"") -> bytes:
    data = bytes([len(name)]) + name + body
    return b"\x04" + bytes([len(data)]) + data


def frame(body: bytes, more: bool) -> bytes:
    if len(body) > 255:
        return bytes([0x02 | more]) + struct.pack(">Q", len(body)) + body
    return bytes([more]) + bytes([len(body)]) + body


READY_REQ = command(b"READY", b"\x0bSocket-Type" + struct.pack(">I", 3) + b"REQ")


def raw_client(port: int) -> socket.socket:
    """A plaintext client that has done the NULL handshake by hand (the REP's READY received)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(greeting() + READY_REQ)
    got = b""
    while b"READY" not in got:
        data = conn.recv(4096)
        assert data, "the edge closed a well-formed plaintext handshake"
        got += data
    return conn


def closed_by_peer(conn: socket.socket, timeout_s: float = 3.0) -> bool:
    conn.settimeout(timeout_s)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not conn.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


# -- the attack, against the edge in a process of its own --------------------------------------------

class EdgeProcess:
    def __init__(self, curve: dict | None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.edge.guard_edge", json.dumps({"curve": curve})],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line, "the edge process did not start"
        self.endpoints = json.loads(line)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


class Peak:
    """The edge's peak RSS, sampled every 10 ms on a thread while an attack runs."""

    def __init__(self, edge: EdgeProcess) -> None:
        self.edge, self.peak, self._stop = edge, edge.rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.edge.rss_mib())

    def __enter__(self) -> "Peak":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join()


def _plaintext_unfinished(port: int, frames: int) -> bool:
    """A raw plaintext client: a REQ envelope, then ``frames`` frames of 4,000 B marked "more", never
    ending the message. Returns whether the edge cut it before it was done."""
    conn = raw_client(port)
    try:
        batch = frame(b"", True) + frame(FRAME, True) * 249
        for _ in range(frames // 250):
            conn.sendall(batch)
        return closed_by_peer(conn, 2.0)
    except OSError:
        return True
    finally:
        conn.close()


def _curve_many_frames(endpoint: str, keys, frames: int) -> bool:
    """An allowed CURVE client (libzmq only sends a message once it is whole) sending one request of
    ``frames`` frames of 4,000 B (zero-copy: the client holds one buffer). Returns whether it was cut."""
    with Link(zmq.REQ, endpoint, keys, device="case-01") as link:
        assert link.wait_connected(5)
        link.socket.copy_threshold = 0   # pyzmq copies frames under 64 KiB unless told not to
        for _ in range(frames - 1):
            link.socket.send(FRAME, zmq.SNDMORE, copy=False)
        link.socket.send(FRAME, copy=False)
        deadline = time.monotonic() + 5
        while not link.disconnects and time.monotonic() < deadline:
            if link.socket.poll(20):
                return False  # answered (with an error, once the edge had held it all)
            link.check()
        return link.disconnects > 0


@pytest.mark.parametrize("mechanism", ["plaintext", "curve"])
def test_a2_a_request_of_60000_frames_is_cut_and_the_edge_holds_under_40_mib(tmp_path, mechanism):
    """Before the guard, 60,000 frames x 4,000 B made the edge hold 240 MB until the message ended."""
    curve = make_curve_files(tmp_path) if mechanism == "curve" else None
    keys = curve.client_keys() if curve else None
    edge = EdgeProcess(curve.config if curve else None)
    try:
        with Listener(edge.endpoints["endpoint"], keys=keys, plaintext=keys is None,
                      snapshot_endpoint=edge.endpoints["snapshot"]) as lis:
            seqs: list[int] = []
            deadline = time.monotonic() + 5
            while len(seqs) < 5 and time.monotonic() < deadline:
                ev = lis.recv(0.5)
                if ev is not None and ev.kind == "labels":
                    seqs.append(ev.msg["seq"])
            before = edge.rss_mib()
            with Peak(edge) as peak:
                if curve:
                    cut = _curve_many_frames(edge.endpoints["snapshot"], keys, 60_000)
                else:
                    cut = _plaintext_unfinished(port_of(edge.endpoints["snapshot"]), 60_000)
            assert peak.peak - before < RSS_LIMIT_MIB, f"the edge grew by {peak.peak - before:.0f} MiB"
            assert cut, "the edge did not cut the connection"
            # The endpoint still answers an allowed client, and labels kept flowing without a gap.
            assert [ev.msg["camera"] for ev in lis.fetch_snapshot(timeout_s=3.0) if ev.kind == "labels"] == ["cam0"]
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                ev = lis.recv(0.1)
                if ev is not None and ev.kind == "labels" and not ev.from_snapshot:
                    seqs.append(ev.msg["seq"])
            assert len(seqs) > 10 and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "labels stopped or a gap"
    finally:
        edge.close()


# -- the limits, in-process ---------------------------------------------------------------------------

@pytest.fixture
def pub():
    from edge.link.publisher import Publisher
    from tests.helpers import ANY, make_labels

    big = {"kind": "big", "data": "y" * 2_000_000}   # as large as an evidence reply with two crops, and more
    with Publisher("case-01", ANY, ANY, curve=None, handlers={"big": lambda req: big}) as p:
        p.publish_labels("cam0", make_labels("cam0"))
        yield p


def ask(endpoint: str, request: bytes = b'{"camera": null}', timeout_ms: int = 3000) -> dict | None:
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(endpoint)
        req.send(request)
        return messages.decode(req.recv()) if req.poll(timeout_ms) else None
    finally:
        req.close()


def test_legitimate_traffic_passes_through_the_guard(pub):
    """Many requests on one connection (REQ_CORRELATE too), and a 2 MB reply: nothing is cut."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.REQ_CORRELATE, 1)
    sock.setsockopt(zmq.REQ_RELAXED, 1)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 20)   # PINGs and PONGs count, and balance
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
    sock.connect(pub.snapshot_endpoint)
    try:
        for i in range(50):
            sock.send(b'{"kind": "big"}' if i % 10 == 0 else b'{"camera": "cam0"}')
            assert sock.poll(3000), f"request {i} was not answered"
            reply = messages.decode(sock.recv())
            assert len(reply["data"]) == 2_000_000 if i % 10 == 0 else "cam0" in reply["cameras"]
            time.sleep(0.005)
    finally:
        sock.close()
    assert pub._guard.cuts == 0


def test_frames_no_reply_accounts_for_are_cut_however_they_are_paced(pub, caplog):
    """Unfinished frames in bursts, each followed by a PING: the PONGs reset nothing (only replies do)."""
    conn = raw_client(port_of(pub.snapshot_endpoint))
    local = "%s:%d" % conn.getsockname()
    try:
        conn.sendall(frame(b"", True))
        for _ in range(20):
            conn.sendall(frame(FRAME, True) * 2 + command(b"PING", b"\0\0" + b"ctx"))
            time.sleep(0.02)
        assert closed_by_peer(conn)
    except OSError:
        pass
    finally:
        conn.close()
    assert re.search(f"cut the connection from {local}: (9|1[01]) frames sent that no reply accounts for "
                     r"\(the limit is 8", caplog.text)
    assert "cam0" in ask(pub.snapshot_endpoint)["cameras"]


@pytest.mark.parametrize(("data", "reason"), [
    (greeting() + READY_REQ + b"\x02" + struct.pack(">Q", 5000), "a frame of 5000 bytes (over the 4096-byte limit)"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a ZMTP greeting"),
    (greeting(major=1), "a ZMTP 2.0 greeting (ZMTP 3, libzmq 4 or later, is required)"),
    (b"\xff" + b"\0" * 8 + b"\x7e", "not a ZMTP greeting"),
])
def test_a_client_that_breaks_the_protocol_is_cut_at_once(pub, caplog, data, reason):
    conn = socket.create_connection(("127.0.0.1", port_of(pub.snapshot_endpoint)))
    try:
        conn.sendall(data)
        assert closed_by_peer(conn)
    finally:
        conn.close()
    assert reason in caplog.text
    assert "cam0" in ask(pub.snapshot_endpoint)["cameras"]


def test_an_unfinished_request_is_cut_after_its_time(pub, monkeypatch, caplog):
    from edge.link import snapshot_guard

    monkeypatch.setattr(snapshot_guard, "REQUEST_S", 0.4)
    idle = raw_client(port_of(pub.snapshot_endpoint))          # handshaken, asks nothing: left alone
    half = raw_client(port_of(pub.snapshot_endpoint))
    try:
        half.sendall(frame(b"", True) + b"\x00\x40" + b"{")     # a 64-byte frame, 1 byte of it sent
        t0 = time.monotonic()
        assert closed_by_peer(half)
        assert 0.3 < time.monotonic() - t0 < 2.0
        assert not closed_by_peer(idle, 0.5)
    finally:
        half.close()
        idle.close()
    assert "a request unfinished for 0.4 s" in caplog.text


def test_connections_over_the_limit_make_room_or_are_refused(pub, monkeypatch, caplog):
    from edge.link import snapshot_guard

    monkeypatch.setattr(snapshot_guard, "MAX_CONNECTIONS", 3)
    port = port_of(pub.snapshot_endpoint)
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]   # never greet
    time.sleep(0.2)
    try:
        # A newcomer takes the place of the oldest one still in its handshake: the allowed client is served.
        assert "cam0" in ask(pub.snapshot_endpoint)["cameras"]
        assert closed_by_peer(silent[0], 1.0)
        assert "still in its handshake" in caplog.text
        deadline = time.monotonic() + 2
        while len(pub._guard.pairs) > 2 and time.monotonic() < deadline:   # the request's own connection
            time.sleep(0.01)
        done = [raw_client(port) for _ in range(3)]   # handshaken: these keep their places
        try:
            extra = socket.create_connection(("127.0.0.1", port))
            assert closed_by_peer(extra, 2.0)
            extra.close()
            assert "3 connections are open (the limit)" in caplog.text
        finally:
            for conn in done:
                conn.close()
    finally:
        for conn in silent:
            conn.close()


def test_the_guard_survives_any_bytes(pub):
    import random

    rng = random.Random(32)
    port = port_of(pub.snapshot_endpoint)
    for i in range(60):
        prefix = greeting() + READY_REQ if i % 2 else b""
        data = prefix + bytes(rng.randrange(256) for _ in range(rng.choice([1, 11, 64, 300, 5000])))
        with socket.create_connection(("127.0.0.1", port)) as conn:
            try:
                conn.sendall(data)
            except OSError:
                pass
    assert pub._guard._thread.is_alive()
    assert "cam0" in ask(pub.snapshot_endpoint)["cameras"]


def test_a_revoked_client_is_dropped_through_the_guard_and_refused(tmp_path, monkeypatch):
    """The allow-list is the REP's, by key: a revocation drops the relayed connection, the next one is refused."""
    from edge.link import allowlist
    from edge.config.device import CurveConfig
    from edge.errors import LinkError
    from edge.link.keys import revoke
    from edge.link.publisher import Publisher
    from tests.helpers import ANY, make_labels

    monkeypatch.setattr(allowlist, "POLL_S", 0.05)
    curve = make_curve_files(tmp_path)
    keys = curve.client_keys()
    with Publisher("case-01", ANY, ANY, curve=CurveConfig(**curve.config)) as p:
        p.publish_labels("cam0", make_labels("cam0"))
        with Link(zmq.REQ, p.snapshot_endpoint, keys, device="case-01") as link:
            assert b"cam0" in link.request(b'{"camera": null}', 3.0)
            assert len(p._guard.pairs) == 1
            revoke("kiosk-1", curve.allowed_clients)
            deadline = time.monotonic() + 3
            while not link.disconnects and time.monotonic() < deadline:
                link.poll_in(0.05)
            assert link.disconnects, "the revoked client's connection was kept"
        with Link(zmq.REQ, p.snapshot_endpoint, keys, device="case-01") as link:
            with pytest.raises(LinkError, match="not in its allow-list"):
                link.request(b'{"camera": null}', 3.0)
