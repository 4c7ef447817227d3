"""Camera health for the engine: up, stale or down, from status messages, heartbeats and seq.

A camera is **down** when its last status is ``down``; **ended** when its run ended as asked (``eos``: a
recording played to its end, or a run bounded by ``--max-frames``, as in the demo and the benchmarks: shown,
never an incident);
**stale** when its device sent no
heartbeat for ``stale_heartbeats`` intervals (or never, counted from the kiosk's start), or when
that many heartbeats in a row carried the same ``seq`` while the camera said it was up (frozen);
**up** otherwise. Disabling a camera is how a smash-and-grab starts, so a camera incident opens at
once, with no grace.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kiosk.incident import Changes, incident_key
from kiosk.words import model_words

DOWN_STATES = ("down",)
#: Healths in which a camera sends no frames (the page greys its case out).
NOT_LIVE = ("down", "stale", "ended")


@dataclass
class CameraView:
    """What the kiosk knows about one camera."""

    state: str | None = None           # last status state (up/down/eos)
    detail: str = ""
    hb_seq: int | None = None          # seq in the last heartbeat
    frozen: int = 0                    # heartbeats in a row with the same seq
    fps: float | None = None
    seq: int | None = None             # last labels seq
    last_labels: float | None = None
    counts: dict = field(default_factory=dict)
    health: str = "unknown"
    reason: str = "no message yet"


class HealthMixin:
    """The engine's camera part (needs ``cams``, ``last_heartbeat``, ``policies``, ``started``, incidents)."""

    def on_status(self, msg: dict[str, Any], now: float) -> Changes:
        """A camera status message (up, down, eos)."""
        case = (msg["device"], msg["camera"])
        # A status is contact from its device like a heartbeat: a device that restarts says "up" before its first
        # heartbeat, and must not be judged by the heartbeat before it went away.
        self.last_heartbeat[case[0]] = now
        view = self.cams.setdefault(case, CameraView())
        view.state, view.detail = msg["state"], msg.get("detail", "")
        ch = Changes()
        self._update_health(case, now, ch)
        return ch

    def on_heartbeat(self, msg: dict[str, Any], now: float) -> Changes:
        """A device heartbeat: fresh contact, per-camera seq (frozen?), fps and state."""
        dev = msg["device"]
        self.last_heartbeat[dev] = now
        ch = Changes()
        for cam, info in (msg.get("cameras") or {}).items():
            case = (dev, cam)
            view = self.cams.setdefault(case, CameraView())
            seq = info.get("seq")
            view.frozen = view.frozen + 1 if seq is not None and seq == view.hb_seq else 0
            view.hb_seq = seq
            if isinstance(info.get("fps"), (int, float)):
                view.fps = float(info["fps"])
            if info.get("state") is not None:
                view.state = info["state"]
        for case in [c for c in self.cams if c[0] == dev]:
            self._update_health(case, now, ch)
        return ch

    def camera_health(self, case: tuple[str, str], now: float) -> tuple[str, str]:
        """``(health, reason)`` of a camera right now."""
        view = self.cams[case]
        window = self.policies.stale_heartbeats * self.policies.heartbeat_s
        if view.state == "eos":
            return "ended", "the camera's run ended" + (f" ({view.detail})" if view.detail else "")
        if view.state in DOWN_STATES:
            return "down", f"camera reports {view.state}" + (f": {view.detail}" if view.detail else "")
        last = self.last_heartbeat.get(case[0])
        if last is None:
            if now - self.started > window:
                return "stale", f"no contact with device {case[0]} since the kiosk started"
            return "unknown", "waiting for the device"
        if now - last > window:
            return "stale", f"no heartbeat from device {case[0]} for {now - last:.1f} s"
        if view.frozen >= self.policies.stale_heartbeats:
            return "stale", f"seq frozen at {view.hb_seq} for {view.frozen} heartbeats"
        if view.hb_seq is None and view.last_labels is None:
            return "unknown", "device has not reported this camera"
        return "up", "frames flowing"

    def camera_dict(self, case: tuple[str, str], now: float | None = None) -> dict[str, Any]:
        """A camera for the health strip and the API."""
        view = self.cams[case]
        model = self.models.get(case)      # what the case's labels say it runs (a newly flashed version shows here)
        return {"device": case[0], "camera": case[1], "title": self.case_title(case), "health": view.health,
                "reason": view.reason, "fps": view.fps, "seq": view.seq,
                "last_heartbeat": self.last_heartbeat.get(case[0]), "counts": view.counts, "model": model,
                "model_text": model_words(model)}

    def _update_health(self, case: tuple[str, str], now: float, ch: Changes) -> None:
        view = self.cams[case]
        health, reason = self.camera_health(case, now)
        # The seconds in a reason tick on; only a change of health (or of the kind of reason) is news.
        if health == view.health and reason.split(" for ")[0] == view.reason.split(" for ")[0]:
            return
        view.health, view.reason = health, reason
        ch.cameras.append(self.camera_dict(case, now))
        if case not in self.cases:           # a camera the planogram does not know: shown, never an incident
            return
        inc = self.open.get(incident_key("camera", *case, None))
        if health in ("down", "stale"):
            self._open_or_update("camera", case[0], case[1], None, f"{self.case_title(case)}: {reason}",
                                 {"health": health, "state": view.state, "detail": view.detail,
                                  "last_seq": view.seq, "heartbeat_seq": view.hb_seq}, now, ch)
        elif health == "up" and inc is not None:
            self._resolve(inc, "frames flowing again", now, ch)
