"""Kiosk test helpers: configs, status and heartbeat messages, a device on loopback (labels messages with chosen
slot labels: :func:`tests.helpers.labels_message`)."""
from __future__ import annotations

import time
from typing import Any

from edge.link import messages
from tests.helpers import labels_message as labels


def config_dict(tmp_path, devices: list[dict] | None = None, **top: Any) -> dict:
    """A plaintext loopback kiosk config: one device case-01, camera cam0 with four slots."""
    devices = devices or [{"id": "case-01", "labels": "tcp://127.0.0.1:1", "snapshot": "tcp://127.0.0.1:2",
                           "cameras": {"cam0": {"slots": {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch",
                                                          "r1c1": "sold"}}}}]
    return {"store": "Test store", "state_dir": str(tmp_path / "state"), "curve": None, "devices": devices, **top}


def status(state: str, *, device: str = "case-01", camera: str = "cam0", detail: str = "") -> dict:
    return messages.status_message(device=device, camera=camera, state=state, detail=detail, ts=time.time())


def heartbeat(seqs: dict[str, int | None], *, device: str = "case-01", state: str = "up") -> dict:
    return messages.heartbeat_message(device=device, ts=time.time(), uptime_s=1.0,
                                      cameras={c: {"seq": s, "state": state, "fps": 2.0} for c, s in seqs.items()})


class SimDevice:
    """A device on loopback: a real PUB and a snapshot REP (served by a thread) that publish what a test says.

    Args:
        device: Device id.
        curve: ``(public, secret)`` server keys for CURVE (any client key accepted: no ZAP), or ``None``.
        answer: Whether the REP answers snapshot requests (``False``: a device that never answers).
    """

    def __init__(self, device: str = "case-01", *, curve: tuple[bytes, bytes] | None = None, answer: bool = True):
        import threading

        import zmq

        self.device, self._zmq = device, zmq
        ctx = zmq.Context.instance()
        self.pub = ctx.socket(zmq.PUB)
        self.rep = ctx.socket(zmq.REP)
        for s in (self.pub, self.rep):
            s.setsockopt(zmq.LINGER, 0)
            if curve:
                s.curve_publickey, s.curve_secretkey = curve
                s.curve_server = True
        self.pub.bind("tcp://127.0.0.1:*")
        self.rep.bind("tcp://127.0.0.1:*")
        self.labels_endpoint = self.pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.snapshot_endpoint = self.rep.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.seq: dict[str, int] = {}
        self.latest: dict[str, dict] = {}
        self.snapshots_served = 0
        self.answer = answer
        self._lock = threading.Lock()
        self._send_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def entry(self, cameras: dict, **extra: Any) -> dict:
        """This device's entry for a kiosk config."""
        return {"id": self.device, "labels": self.labels_endpoint, "snapshot": self.snapshot_endpoint,
                "cameras": cameras, **extra}

    def _serve(self) -> None:
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(self.rep, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            self.rep.recv()
            if not self.answer:
                poller.unregister(self.rep)   # never answers: the REQ waits in vain
                continue
            with self._lock:
                reply = {"device": self.device, "cameras": dict(self.latest), "status": {}}
            self.snapshots_served += 1
            self.rep.send(messages.encode(reply))
        self.rep.close(linger=0)

    def send(self, kind: str, camera: str | None, msg: dict) -> None:
        with self._send_lock:   # the heartbeat thread shares the PUB socket
            self.pub.send_multipart([messages.topic(self.device, camera, kind).encode(), messages.encode(msg)])

    def beat(self, interval: float = 0.5) -> "SimDevice":
        """Like a running device, from a thread until closed: every ``interval`` s each camera's last
        labels again (a new seq) and a heartbeat."""
        import threading

        def run():
            while not self._stop.wait(interval):
                with self._send_lock:
                    for cam, msg in list(self.latest.items()):
                        self.labels(cam, {s["name"]: s["label"] for s in msg["slots"]})
                    self.heartbeat()
        threading.Thread(target=run, daemon=True).start()
        return self

    def labels(self, camera: str, slots: dict[str, str], *, skip: int = 0, **kw: Any) -> dict:
        """Publish a labels message (``skip``: pretend that many were lost before it)."""
        with self._send_lock:
            seq = self.seq.get(camera, -1) + 1 + skip
            self.seq[camera] = seq
            msg = labels(slots, device=self.device, camera=camera, seq=seq, **kw)
            with self._lock:
                self.latest[camera] = msg
            self.send("labels", camera, msg)
        return msg

    def heartbeat(self) -> None:
        self.send("heartbeat", None, heartbeat(dict(self.seq), device=self.device))

    def raw(self, *frames: bytes) -> None:
        with self._send_lock:
            self.pub.send_multipart(list(frames))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with self._send_lock:
            self.pub.close(linger=0)


def wait_for(predicate, timeout: float = 5.0, step: float = 0.02):
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {getattr(predicate, '__name__', predicate)}")


class Served:
    """A kiosk with its web server on a free loopback port, in this process (``url``, ``kiosk``)."""

    def __init__(self, config, *, feed: bool = True) -> None:
        import socket
        import threading

        import uvicorn

        from kiosk.service import Kiosk
        from kiosk.web import create_app

        self.kiosk = Kiosk(config, feed=feed)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.kiosk), log_level="warning",
                                                    timeout_graceful_shutdown=1, lifespan="on"))
        self.kiosk.start()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        wait_for(lambda: self.server.started, timeout=10)

    def close(self) -> None:
        self.kiosk.hub.close_all()
        self.server.should_exit = True
        self._thread.join(10)
        self.kiosk.stop()


def add_users(history, now: float | None = None) -> None:
    """mia (manager) and leo (viewer), password ``correct horse``."""
    from kiosk.auth import add_user

    add_user(history, "mia", "manager", "correct horse", now or time.time())
    add_user(history, "leo", "viewer", "correct horse", now or time.time())
