"""The parts of the store-day benchmark (``bench/store_day.py``): a device with one camera per case, two
kiosks on its CURVE link (slot states, and today's category rules as the reference), a clock that runs on
the videos' own time, and the staff's actions of the day's truth.

Everything is real: the edge loop (:class:`edge.loop.run.CameraLoop`) plays the filmed days from their files
(``?speed=`` times real time), publishes over CURVE with an allow-list, and answers enrolment and
evidence requests; each kiosk (:class:`kiosk.service.Kiosk`) subscribes over CURVE, keeps its history in
SQLite and raises incidents on its own clock.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from edge.config.device import parse_config
from edge.link.keys import allow, create_key_pair
from kiosk.config import STATES, KioskConfig, Policies
from kiosk.device_requests import DeviceRequestError
from kiosk.enrolment import enrol_case
from kiosk.history import History
from kiosk.service import Kiosk

DEVICE = "bench-case"
USER = "bench"
#: The kiosk's own swapped-piece confirmation, as a store runs it.
SWAP_CONFIRM_S = Policies.model_fields["swap_confirm_s"].default
RETRIES = 4      # a refused enrolment is tried again this many times ...
RETRY_S = 2.0    # ... this many video seconds apart
#: The manager's look at the page after opening: slots the planogram fills that are still "not enrolled"
#: (the model reads a faint piece empty, so it never enrolled itself) are enrolled on the planogram's word.
OPENING_CHECK_S = 60.0


class VideoClock:
    """The kiosks' clock: the newest video time any labels message carried (frame index / fps), so grace
    periods and time-to-alarm are in the video's seconds whatever the playback speed."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.t = 0.0
        self._lock = threading.Lock()

    def seen(self, msg: dict[str, Any]) -> None:
        index = msg.get("frame_index")
        if isinstance(index, int):
            with self._lock:
                self.t = max(self.t, index / self.fps)

    def __call__(self) -> float:
        with self._lock:
            return self.t


class ClockedKiosk(Kiosk):
    """A kiosk whose clock advances with the labels it receives."""

    def __init__(self, config: KioskConfig, clock: VideoClock, record: Path | None = None) -> None:
        super().__init__(config, clock=clock)
        self.video_clock = clock
        self._record = open(record, "a", encoding="utf-8") if record is not None else None

    def on_message(self, kind: str, msg: dict[str, Any]) -> None:
        if kind == "labels":
            self.video_clock.seen(msg)
            if self._record is not None:   # the states timeline, for reading a false incident afterwards
                self._record.write(json.dumps({"camera": msg["camera"], "i": msg.get("frame_index"), "slots": [
                    [s["name"], s["label"], s.get("state"), s.get("similarity")] for s in msg["slots"]]}) + "\n")
        super().on_message(kind, msg)

    def stop(self) -> None:
        super().stop()
        if self._record is not None:
            self._record.close()


def keys(root: Path) -> dict[str, Path]:
    """The device's key pair and allow-list with one kiosk client, made by ``gemsight-edge keys``' code."""
    server_public, server_secret = create_key_pair(root / "device", "server")
    client_public, client_secret = create_key_pair(root / "kiosk", "kiosk")
    allowed = root / "clients"
    allowed.mkdir(parents=True, exist_ok=True)
    allow(client_public, allowed)
    return {"server_public": server_public, "server_secret": server_secret, "allowed": allowed,
            "client_secret": client_secret}


def device_config(days: list[dict], model: Path, work: Path, k: dict[str, Path], speed: float, *,
                  states: bool = True, threads: int = 2, realtime: bool = True, every: int = 1) -> Any:
    """The edge config: one camera per filmed day (``case0``, ``case1``, ...)."""
    cameras = []
    for i, day in enumerate(days):
        slots = yaml.safe_load(Path(day["slots"]).read_text())["slots"]
        query = (f"speed={speed:g}" if realtime else "realtime=0") + (f"&every={every}" if every > 1 else "")
        cameras.append({"id": f"case{i}", "source": f"file://{day['video']}?{query}", "slots": slots})
    from tests import helpers

    curve = {"server_secret_key": str(k["server_secret"]), "allowed_clients": str(k["allowed"])}
    data = helpers.device_config(model, cameras, device=DEVICE, threads=threads,
                                 publish=helpers.loopback_publish(heartbeat_s=1.0, curve=curve),
                                 states={"enabled": states, "state_dir": str(work / "device-state")})
    return parse_config(data, "store-day edge config", str(work))


def planogram(truth: list[dict]) -> dict[str, str]:
    """The case's planogram at opening: each slot's stocked class."""
    return {ev["slots"][0]: ev["class"] for ev in truth if ev.get("kind") == "stock"}


def kiosk_config(mode: str, work: Path, days: list[dict], truths: list[list[dict]], endpoints: tuple[str, str],
                 k: dict[str, Path], *, grace_s: float, speed: float, swap_confirm_s: float) -> KioskConfig:
    """A kiosk for ``mode`` (``states`` or ``categories``) watching every case of the device."""
    cams = {f"case{i}": {"title": f"Case {i}", "slots": planogram(t)} for i, t in enumerate(truths)}
    data = {"store": f"store day ({mode})", "state_dir": str(work / f"kiosk-{mode}"),
            "curve": {"client_secret_key": str(k["client_secret"])},
            "devices": [{"id": DEVICE, "labels": endpoints[0], "snapshot": endpoints[1],
                         "server_key": str(k["server_public"]), "cameras": cams}],
            # The device's heartbeat is a wall-clock second: speed seconds of the video's time.
            "policies": {"empty_grace_s": grace_s, "burst_slots": 2, "burst_window_s": 10.0,
                         "heartbeat_s": max(1.0, speed), "stale_heartbeats": 5, "incidents": mode,
                         "swap_confirm_s": swap_confirm_s},
            "web": {"port": 0}}
    return KioskConfig.model_validate(data)


class Staff:
    """Performs the truth's staff actions on the video clock: mark a sold piece sold (both kiosks'
    planograms), enrol a restocked slot on the device and set its class in the planograms."""

    def __init__(self, truths: list[list[dict]], kiosks: list[Kiosk], clock: VideoClock, *,
                 request: Any = None) -> None:
        self.request = request     # the enrol request (None: the kiosk's own, over the device's link)
        opening = {"t": OPENING_CHECK_S, "action": "enrol_unwatched", "slot": None}
        self.todo = sorted([(ev["t"], f"case{i}", ev, t) for i, t in enumerate(truths) for ev in t if "action" in ev]
                           + [(OPENING_CHECK_S, f"case{i}", opening, t) for i, t in enumerate(truths)],
                           key=lambda x: x[0])
        self.kiosks, self.clock = kiosks, clock
        self.done: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="staff", daemon=True)

    def start(self) -> "Staff":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while self.todo and not self._stop.is_set():
            if not self.due():
                self._stop.wait(0.05)

    def due(self) -> int:
        """Perform every action whose time has come; returns how many."""
        n = 0
        while self.todo and self.clock() >= self.todo[0][0]:
            t, camera, ev, truth = self.todo.pop(0)
            n += 1
            done = {"t": t, "camera": camera, **ev, **self._act(camera, ev, truth)}
            if done.get("refused") and ev.get("tries", 0) < RETRIES:
                # A person whose enrolment was refused (a hand still over the case) presses again.
                again = {**ev, "tries": ev.get("tries", 0) + 1}
                self.todo.append((self.clock() + RETRY_S, camera, again, truth))
                self.todo.sort(key=lambda x: x[0])
            self.done.append(done)
        return n

    def _unwatched(self, camera: str) -> list[str]:
        """The slots of ``camera`` the states kiosk shows "not enrolled" whose planogram expects a piece."""
        engine = self.kiosks[0].engine
        return sorted(k[2] for k, sv in engine.slots.items() if k[:2] == (DEVICE, camera)
                      and sv.state == "unenrolled" and engine.planogram.get(k) not in (None, *STATES))

    def _act(self, camera: str, ev: dict, truth: list[dict]) -> dict:
        key = (DEVICE, camera, ev["slot"])
        if ev["action"] == "enrol_unwatched":
            slots = self._unwatched(camera)
            if not slots:
                return {}
            return self._enrol(camera, slots)
        if ev["action"] == "mark_sold":
            for kiosk in self.kiosks:
                kiosk.set_expected(key, "sold", USER)
            return {}
        cls = next((e["class"] for e in reversed(truth) if e.get("kind") == "restock" and ev["slot"] in e["slots"]
                    and e["t"] <= ev["t"]), None)
        # The manager types the new piece's class into both kiosks' planograms (its grace starts then), and
        # enrols the slot from the states kiosk ("enrol" on the slot: the device records the new piece, on the
        # planogram's word where the model reads it empty; the slot's incident ends).
        for kiosk in self.kiosks:
            if cls is not None and kiosk.engine.planogram.get(key) != cls:
                kiosk.set_expected(key, cls, USER)
        return self._enrol(camera, [ev["slot"]])

    def _enrol(self, camera: str, slots: list[str]) -> dict:
        """Enrol ``slots`` from the states kiosk; what the device enrolled, refused and took on the planogram's word."""
        try:
            extra = {"request": self.request} if self.request is not None else {}
            reply = enrol_case(self.kiosks[0], DEVICE, camera, USER, slots=slots, **extra)
        except DeviceRequestError as exc:
            return {"error": str(exc)}
        return {"enrolled": reply.get("enrolled"), "refused": reply.get("refused"), "unseen": reply.get("unseen")}


def incidents_of(kiosk_dir: Path) -> list[dict]:
    """Every incident a kiosk raised (open or resolved), from its SQLite history."""
    history = History(kiosk_dir, readonly=True)
    try:
        rows = history.incidents(limit=1_000_000)
    finally:
        history.close()
    return rows


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
