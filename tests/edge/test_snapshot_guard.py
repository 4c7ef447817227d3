"""The snapshot guard (edge.snapshot_guard): a request is bounded as a whole, however it is framed.

The attacks run against a publisher in its own process (tests/edge/guard_edge.py), so that its RSS
is the edge's alone; the limits, the endpoint forms and the legitimate traffic run in-process, on
real sockets.
"""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from edge import messages
from edge.link import Link
from edge.listen import Listener
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
