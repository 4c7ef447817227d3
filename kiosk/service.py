"""The running kiosk: the feed, the engine, the history and the live event hub, tied together.

Messages arrive on the feed thread, a ticker thread moves time on (graces, stale cameras, scheduled
counts, retention) and people act through the web handlers; all of them change the engine under one
lock, store what changed in the history and publish it to the :class:`~kiosk.hub.Hub` (server-sent
events) and the optional webhook.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable
from zoneinfo import ZoneInfo

from kiosk.chain import Chain
from kiosk.config import KioskConfig
from kiosk.counts import reconcile
from kiosk.engine import Engine
from kiosk.evidence import EvidenceCollector
from kiosk.history import History
from kiosk.hub import Hub
from kiosk.incident import Changes, Incident
from kiosk.layout import case_layout

logger = logging.getLogger(__name__)

TICK_S = 0.2                 # grace expiry and staleness are seen within this (the bench's latency floor)
PRUNE_EVERY_S = 6 * 3600.0
HEARTBEATS_EVERY_S = 2.0     # the page's "last heartbeat" ages: one small event for every device
SCHEDULE_SLACK_S = 300.0     # a scheduled count still runs if the kiosk was down for its minute


class Kiosk:
    """One store's kiosk.

    Args:
        config: The validated config.
        clock: Wall time (Unix seconds); tests pass their own.
        feed: Start the device feed (``False`` in tests that push messages themselves).
    """

    def __init__(self, config: KioskConfig, *, clock: Callable[[], float] = time.time, feed: bool = True) -> None:
        self.config = config
        self.clock = clock
        self.history = History(config.state_dir)
        opened = [Incident.from_row(r) for r in self.history.incidents(open_only=True, limit=100_000)]
        self.lock = threading.RLock()
        self.engine = Engine(config, self.history.planogram_overrides(), opened, now=clock(),
                             suggested=self.history.planogram_suggested())
        self.evidence = EvidenceCollector(config, clock=clock, on_stored=self._evidence_stored)
        self.hub = Hub()
        self.devices: dict[str, dict[str, Any]] = {d.id: {"link": "connecting", "error": None} for d in config.devices}
        self._stop = threading.Event()
        self._webhook: queue.Queue | None = queue.Queue(maxsize=1000) if config.webhook else None
        self._threads: list[threading.Thread] = []
        self._last_prune = 0.0
        self._last_beats = 0.0
        self._scheduled = self._last_scheduled()
        self.chain = Chain.from_config(config.chain, self.history.path, clock) if config.chain else None
        self.feed = None
        if feed:
            from kiosk.subscriber import Feed  # noqa: PLC0415 - tests without sockets skip zmq set-up

            self.feed = Feed(config, self)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Kiosk":
        """Start the feed, the ticker and the webhook sender."""
        if self.feed is not None:
            self.feed.start()
        if self.chain:
            self.chain.start()
        self._spawn(self._tick_loop, "gemsight-kiosk-tick")
        self.evidence.start()
        if self._webhook is not None:
            self._spawn(self._webhook_loop, "gemsight-kiosk-webhook")
        logger.info("kiosk for %s: %d devices, %d cases, %d slots, %d open incidents", self.config.store,
                    len(self.config.devices), len(self.engine.cases), len(self.engine.planogram),
                    len(self.engine.open))
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Stop every thread and close the history (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self.feed is not None:
            self.feed.stop()
        for t in self._threads:
            t.join(timeout=5)
        self.evidence.stop()
        if self.chain:
            self.chain.stop()
        self.history.close()
        logger.info("kiosk stopped")

    # -- inputs (feed thread) ----------------------------------------------------------------------
    def on_message(self, kind: str, msg: dict[str, Any]) -> None:
        """A validated message from a device."""
        with self.lock:
            now = self.clock()
            if kind == "labels":
                ch = self.engine.on_labels(msg, now)
            elif kind == "status":
                ch = self.engine.on_status(msg, now)
            else:
                ch = self.engine.on_heartbeat(msg, now)
            self._apply(ch)

    def on_device(self, device: str, info: dict[str, Any]) -> None:
        """A device's link changed (up, refused, snapshot failing)."""
        with self.lock:
            self.devices[device] = info
        self.hub.publish("device", {"device": device, **info})

    def tick(self) -> None:
        """Move time on once (the ticker calls this every ``TICK_S``)."""
        with self.lock:
            now = self.clock()
            self._apply(self.engine.tick(now))
        self._schedule(now)
        if self.chain:
            self.chain.tick(self, now)
        if now - self._last_beats >= HEARTBEATS_EVERY_S:
            self._last_beats = now
            with self.lock:
                last = dict(self.engine.last_heartbeat)
            self.hub.publish("heartbeats", {"now": now, "last": last})
        if now - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = now
            self.history.prune(now, self.config.retention_days)
            self.evidence.store.prune(now)

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_S):
            self.tick()

    def _apply(self, ch: Changes) -> None:
        """Store and publish what changed (caller holds the lock)."""
        if not ch:
            return
        self.history.add_slot_changes(ch.slot_rows)
        for event, inc in ch.incidents:
            inc.id = self.history.save_incident(inc.to_dict())
        self.evidence.on_incidents(ch.incidents)
        if self.chain:
            self.chain.incidents(ch.incidents)
        for event, inc in ch.incidents:
            data = {"event": event, **inc.to_dict()}
            self.hub.publish("incident", data)
            if self._webhook is not None:
                try:
                    self._webhook.put_nowait(data)
                except queue.Full:
                    logger.warning("webhook queue full: incident %s %s not sent", inc.id, event)
        for slot in ch.slots:
            self.hub.publish("slot", slot)
        for cam in ch.cameras:
            self.hub.publish("camera", cam)

    def _evidence_stored(self, incident_id: int, metas: list[dict[str, Any]]) -> None:
        self.hub.publish("evidence", {"incident": incident_id, "slots": metas})

    # -- people's actions (web handlers) -----------------------------------------------------------
    def acknowledge(self, incident_id: int, user: str, note: str) -> dict[str, Any]:
        """A manager acknowledges an incident (raises :class:`~kiosk.engine.ActionError`)."""
        with self.lock:
            now = self.clock()
            ch = self.engine.acknowledge(incident_id, user, note, now)
            self._apply(ch)
            self.history.audit(now, user, "acknowledge", {"incident": incident_id, "note": note.strip()})
            return ch.incidents[0][1].to_dict()

    def set_expected(self, key: tuple[str, str, str], value: str, user: str, *, suggested: bool = False
                     ) -> dict[str, Any]:
        """A manager changes one slot of the planogram (raises :class:`~kiosk.engine.ActionError`);
        ``suggested``: an enrolment's reading, shown as a suggestion until a manager confirms or edits it."""
        with self.lock:
            now = self.clock()
            old, ch = self.engine.set_expected(key, value, now, suggested=suggested)
            self.history.set_planogram(now, user, key, old, value, suggested=suggested)
            self.history.audit(now, user, "planogram", {"slot": "/".join(key), "old": old, "new": value,
                                                        **({"suggested": True} if suggested else {})})
            self._apply(ch)
            return self.engine.slot_dict(key)

    def run_count(self, user: str, kind: str = "manual") -> int:
        """Count the store now; the report is kept, signed off by ``user`` in the audit log. Returns its id."""
        with self.lock:
            now = self.clock()
            labels = {k: sv.label for k, sv in self.engine.slots.items()}
            titles = {c: self.engine.case_title(c) for c in self.engine.cases}
            report = reconcile(self.engine.planogram, labels, titles)
        count_id, digest = self.history.add_count(now, user, kind, report)
        self.history.audit(now, user, "count", {"count": count_id, "kind": kind, "sha256": digest,
                                                "totals": report["totals"]})
        if self.chain:
            self.chain.count(count_id, kind, user, now, report["totals"], digest)
        self.hub.publish("count", {"id": count_id, "kind": kind, "user": user, "ts": now, "totals": report["totals"]})
        logger.info("count %d (%s) by %s: %s", count_id, kind, user, report["totals"])
        return count_id

    # -- views -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything the store page shows (``/api/state``)."""
        with self.lock:
            now = self.clock()
            e = self.engine
            cases = []
            for case, plan in e.cases.items():
                layout = case_layout([k[2] for k in e.slots if k[:2] == case], plan.columns)
                cases.append({"device": case[0], "camera": case[1], "title": e.case_title(case),
                              "columns": layout["columns"],
                              "slots": [e.slot_dict((*case, name)) for name in layout["order"]],
                              "camera_health": e.camera_dict(case, now)})
            return {"store": self.config.store, "ts": now, "open": e.store_open(now), "cases": cases,
                    "devices": [{"device": d, **info} for d, info in self.devices.items()],
                    "incidents": [i.to_dict() for i in e.incidents()]}

    def incidents(self) -> list[dict[str, Any]]:
        """Unresolved incidents (live view)."""
        with self.lock:
            return [i.to_dict() for i in self.engine.incidents()]

    # -- scheduled counts and the webhook ----------------------------------------------------------
    def _last_scheduled(self) -> dict[str, str]:
        done: dict[str, str] = {}
        hours = self.config.hours
        if hours is None:
            return done
        for row in self.history.counts(limit=50):
            if row["kind"] in ("opening", "closing") and row["kind"] not in done:
                done[row["kind"]] = dt.datetime.fromtimestamp(row["ts"], ZoneInfo(hours.timezone)).date().isoformat()
        return done

    def _schedule(self, now: float) -> None:
        hours = self.config.hours
        if hours is None:
            return
        local = dt.datetime.fromtimestamp(now, ZoneInfo(hours.timezone))
        if ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()] not in hours.days:
            return
        today = local.date().isoformat()
        for kind, at, wanted in (("opening", hours.open, hours.count_at_open), ("closing", hours.close,
                                                                                 hours.count_at_close)):
            hh, mm = (int(x) for x in at.split(":"))
            due = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
            if wanted and self._scheduled.get(kind) != today and 0 <= (local - due).total_seconds() < SCHEDULE_SLACK_S:
                self._scheduled[kind] = today
                self.run_count("schedule", kind)

    def _webhook_loop(self) -> None:
        hook = self.config.webhook
        while not self._stop.is_set():
            try:
                data = self._webhook.get(timeout=0.5)
            except queue.Empty:
                continue
            body = json.dumps({"store": self.config.store, **data}, default=str).encode()
            req = urllib.request.Request(hook.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=hook.timeout_s) as resp:
                    resp.read(1024)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                logger.warning("webhook %s: incident %s %s not delivered: %s", hook.url, data.get("id"),
                               data.get("event"), exc)
