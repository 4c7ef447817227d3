"""The demo's store staff: what the filmed day's truth says a person did, done on the kiosk's page API.

A sale is marked sold a few seconds after the piece left (``mark_sold``); a restocked or re-filled slot is
enrolled ("enrol" on the slot: the device records the new piece) and its class typed into the planogram. With
``gemsight-demo --learn`` the manager also turns on "Collect training photos from this case" early in the day.
The staff logs in to the kiosk as the demo manager, as a person at the page would, and acts at the video's
own time (the device's snapshot says which frame it is at). At the end, :func:`truth_lines` lists what
the video really contains, to read beside the kiosk's incidents.
"""
from __future__ import annotations

import http.cookiejar
import json
import logging
import re
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

logger = logging.getLogger("gemsight.demo")

RETRIES = 4       # a refused enrolment (a hand still over the case) is pressed again ...
RETRY_S = 2.0     # ... this many video seconds later
COLLECT_AT = 4.0  # video seconds: --learn's manager turns on "Collect training photos" (slots enrol when still)
COLLECT_HOURS = 1.0
ALARMS = ("theft", "swap", "smash")


class KioskPage:
    """A logged-in session on the kiosk's page (cookies, the session's CSRF token)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = self._get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        body = urllib.parse.urlencode({"user": user, "password": password, "csrf": csrf}).encode()
        self.opener.open(urllib.request.Request(self.url + "/login", body), timeout=10).read()
        self.csrf = re.search(r'<meta name="csrf" content="([^"]+)"', self._get("/")).group(1)

    def _get(self, path: str) -> str:
        return self.opener.open(self.url + path, timeout=10).read().decode()

    def post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, json.dumps(data).encode(),
                                     {"content-type": "application/json", "x-csrf-token": self.csrf})
        try:
            return json.loads(self.opener.open(req, timeout=30).read() or b"{}")
        except urllib.error.HTTPError as exc:
            return {"error": exc.read().decode(errors="replace")[:200], "status": exc.code}


class Staff(threading.Thread):
    """Performs the day's actions at their video time (``video_time()``) until :meth:`stop`."""

    def __init__(self, events: list[dict], page: KioskPage, video_time, device: str, camera: str) -> None:
        super().__init__(name="demo-staff", daemon=True)
        self.todo = sorted((e for e in events if "action" in e), key=lambda e: e["t"])
        self.restocks = [e for e in events if e.get("kind") == "restock"]
        self.page, self.video_time, self.device, self.camera = page, video_time, device, camera
        self.done: list[str] = []
        self.collecting = False
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        while self.todo and not self._stop_event.wait(0.2):
            now = self.video_time()
            if now is None or now < self.todo[0]["t"]:
                continue
            ev = self.todo.pop(0)
            try:
                self._act(ev, now)
            except OSError as exc:   # the kiosk went away: the demo is ending
                logger.warning("staff: %s %s: %s", ev["action"], ev["slot"], exc)

    def _act(self, ev: dict, now: float) -> None:
        if ev["action"] == "collect":
            self._collect(ev, now)
            return
        slot = ev["slot"]
        key = {"device": self.device, "camera": self.camera, "slot": slot}
        if ev["action"] == "mark_sold":
            self.page.post("/api/planogram", {**key, "expected": "sold"})
            self.done.append(f"{now:6.1f} s  marked {slot} sold")
            return
        reply = self.page.post(f"/api/cases/{self.device}/{self.camera}/enrol", {"slot": slot})
        if reply.get("refused") and ev.get("tries", 0) < RETRIES:
            self.todo.insert(0, {**ev, "t": now + RETRY_S, "tries": ev.get("tries", 0) + 1})
            return
        cls = next((r["class"] for r in reversed(self.restocks) if slot in r["slots"] and r["t"] <= ev["t"]), None)
        if cls is not None:
            self.page.post("/api/planogram", {**key, "expected": cls})
            if self.collecting:      # the re-enrolled slot's crops get its new class: press "Collect" again
                self.page.post(f"/api/cases/{self.device}/{self.camera}/collect", {"hours": COLLECT_HOURS})
        self.done.append(f"{now:6.1f} s  enrolled {slot}" + (f" ({cls})" if cls else "")
                         + (f": {reply.get('error') or reply.get('refused')}"
                            if reply.get("error") or reply.get("refused") else ""))


    def _collect(self, ev: dict, now: float) -> None:
        """"Collect training photos from this case" (``--learn``): refused until a slot is enrolled (the device
        enrols still slots by itself a few seconds into the day), so pressed again a little later."""
        reply = self.page.post(f"/api/cases/{self.device}/{self.camera}/collect", {"hours": COLLECT_HOURS})
        if reply.get("error") and ev.get("tries", 0) < 3 * RETRIES:
            self.todo.insert(0, {**ev, "t": now + RETRY_S, "tries": ev.get("tries", 0) + 1})
            return
        self.collecting = not reply.get("error")
        self.done.append(f"{now:6.1f} s  collect training photos: " + (
            f"on, {len(reply.get('sent') or {})} slot(s) labelled by the planogram" if self.collecting
            else f"refused: {reply['error']}"))


def load_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truth_lines(events: list[dict]) -> list[str]:
    """What the day really contains that a store must be told about: thefts, swaps, smash-and-grabs."""
    out = []
    for ev in events:
        if ev.get("kind") in ALARMS:
            slots = ", ".join(ev["slots"])
            what = {"theft": "piece taken and not returned", "swap": "piece replaced by another of its kind",
                    "smash": "smash-and-grab"}[ev["kind"]]
            out.append(f"{ev['t']:6.1f} s  {ev['kind']:<6} {slots}: {what}")
    quiet = {k: sum(1 for ev in events if ev.get("kind") == k) for k in ("hand_pass", "lift_return", "sale", "restock")}
    out.append("no incident: " + ", ".join(f"{n} {k.replace('_', ' ')}{'es' if k == 'hand_pass' and n != 1 else ''}"
                                           f"{'s' if k != 'hand_pass' and n != 1 else ''}" for k, n in quiet.items()))
    return out
