"""A device's snapshot REP endpoint on loopback answering the slot-state requests as the protocol says
(docs/kiosk-states.md): ``evidence`` (two JPEG crops, base64), ``enrol`` (refusing occluded and empty
slots by name), and unknown camera/slot as ``{"error": ..., "status": 404}``. A test double for the
device side (the lead's edge publisher), served by a real ZeroMQ REP socket on a thread."""
from __future__ import annotations

import base64
import threading
import time
from typing import Any

import cv2
import numpy as np
import zmq

from edge.link import messages

from .states_feeds import ENROLMENT, SEEN


def jpeg(value: int = 128, size: int = 48) -> bytes:
    """A real JPEG of a flat grey square."""
    ok, buf = cv2.imencode(".jpg", np.full((size, size, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


class StatesDevice:
    """Answers requests for device ``case-01``, camera ``cam0`` with the slots of :data:`SEEN`.

    Attributes:
        states: slot -> state the device sees now (default present; r1c2 empty).
        current: override of the current crop's bytes (e.g. not a JPEG), or None.
        requests: every request received, in order.
        busy_s: seconds the next request waits before it is answered (an enrolment waiting on the device for a
            slot to settle holds every request behind it), then 0.
    """

    def __init__(self, device: str = "case-01", camera: str = "cam0") -> None:
        self.device, self.camera = device, camera
        self.states: dict[str, str] = {"r1c2": "empty"}
        self.current: bytes | None = None
        self.requests: list[dict[str, Any]] = []
        self.busy_s = 0.0
        self.rep = zmq.Context.instance().socket(zmq.REP)
        self.rep.setsockopt(zmq.LINGER, 0)
        self.rep.bind("tcp://127.0.0.1:*")
        self.endpoint = self.rep.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def entry(self, cameras: dict, **extra: Any) -> dict:
        """This device's entry for a kiosk config (its labels endpoint is never used in these tests)."""
        return {"id": self.device, "labels": "tcp://127.0.0.1:1", "snapshot": self.endpoint, "cameras": cameras,
                **extra}

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        cam, kind = req.get("camera"), req.get("kind")
        if self.busy_s:
            time.sleep(self.busy_s)
            self.busy_s = 0.0
        if cam != self.camera:
            return {"error": f"unknown camera {cam!r} (cameras: {self.camera})", "status": 404}
        if kind == "evidence":
            if req.get("slot") not in SEEN:
                return {"error": f"unknown slot {req.get('slot')!r} of camera {cam}", "status": 404}
            current = self.current if self.current is not None else jpeg(60)
            return {"kind": "evidence", "camera": cam, "slot": req["slot"], "ts": 1234.5,
                    "current": base64.b64encode(current).decode(), "reference": base64.b64encode(jpeg(200)).decode(),
                    "enrolment": ENROLMENT, "state": self.states.get(req["slot"], "present")}
        if kind == "enrol":
            names = req.get("slots") or list(SEEN)
            unknown = [n for n in names if n not in SEEN]
            if unknown:
                return {"error": f"unknown slot {unknown[0]!r} of camera {cam}", "status": 404}
            refused, enrolled = {}, []
            for n in names:
                st = self.states.get(n, "present")
                if st == "occluded":
                    refused[n] = "occluded (a hand or motion over it): enrol it when it is still"
                elif st == "empty":
                    refused[n] = "empty: nothing to enrol"
                else:
                    enrolled.append(n)
            return {"kind": "enrol", "camera": cam, "enrolled": enrolled, "refused": refused,
                    "enrolment": {**ENROLMENT, "id": "fedcba987654"}, "labels": {n: SEEN[n] for n in enrolled}}
        return {"error": f"unknown request kind {kind!r}", "status": 400}

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.rep, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            req = messages.decode(self.rep.recv())
            self.requests.append(req)
            self.rep.send(messages.encode(self.answer(req)))
        self.rep.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
