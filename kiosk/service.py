"""The running kiosk: the feed, the engine, the history and the live event hub, tied together.

Messages arrive on the feed thread, a ticker thread moves time on (graces, stale cameras, scheduled
counts, retention) and people act through the web handlers; all of them change the engine under one
lock, store what changed in the history and publish it to the :class:`~kiosk.hub.Hub` (server-sent
events) and the optional webhook (:mod:`kiosk.notify`).

The feed and ticker threads outlive any error in storing or serving: it is logged with its
traceback, kept in :attr:`Kiosk.faults`, and turns ``/healthz`` and the page's banner red
(:meth:`Kiosk.health`) for ``FAULT_HOLD_S``; a thread that stopped anyway does the same.
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import logging
import threading
import time
from collections import deque
from typing import Any, Callable
from zoneinfo import ZoneInfo

from kiosk.chain import Chain
from kiosk.config import EMPTY_LABELS, STATES, KioskConfig
from kiosk.counts import reconcile, slot_rows
from kiosk.engine import ActionError, Engine
from kiosk.evidence import EvidenceCollector
from kiosk.history import History, HistoryError
from kiosk.health import NOT_LIVE
from kiosk.hub import Hub
from kiosk.incident import Changes, Incident
from kiosk.layout import case_layout
from kiosk.notify import Notifier, load_secret
from kiosk.words import case_shape, slot_words, text_problem, when

logger = logging.getLogger(__name__)

TICK_S = 0.2                 # grace expiry and staleness are seen within this (the bench's latency floor)
PRUNE_EVERY_S = 6 * 3600.0
HEARTBEATS_EVERY_S = 2.0     # the page's "last heartbeat" ages: one small event for every device
SCHEDULE_SLACK_S = 300.0     # a scheduled count still runs if the kiosk was down for its minute
FAULT_HOLD_S = 600.0         # an error the kiosk could not handle keeps /healthz red this long


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
        self.timezone = config.hours.timezone if config.hours else None
        self.faults: deque[tuple[float, str]] = deque(maxlen=20)
        self.notifier: Notifier | None = None
        if config.webhook is not None:
            secret = load_secret(config.webhook.secret) if config.webhook.secret else None
            self.notifier = Notifier(config.webhook, config.store, secret, clock=clock, timezone=self.timezone,
                                     open_ids=[(i.id, i.kind, i.opened_at) for i in opened if i.id is not None])
        self._threads: list[threading.Thread] = []
        self._last_prune = self._last_beats = 0.0
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
        if self.notifier is not None:
            self._spawn(lambda: self.notifier.run(self._stop), "gemsight-kiosk-webhook")
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

    # -- health ------------------------------------------------------------------------------------
    def report_fault(self, where: str, exc: BaseException) -> None:
        """An error the kiosk could not handle: logged with its traceback, kept, and shown red."""
        text = (f"{where}: {type(exc).__name__}: {exc}".splitlines() or [where])[0][:300]
        self.faults.append((self.clock(), text))
        logger.error("%s", text, exc_info=exc)
        self.hub.publish("health", self.health())

    def health(self) -> dict[str, Any]:
        """``{"ok", "problems"}``: stopped threads and recent faults (``/healthz``, the page's banner)."""
        problems = []
        if not self._stop.is_set():
            threads = list(self._threads) + ([self.feed.thread] if self.feed is not None and self.feed.thread else [])
            problems += [f"thread {t.name} stopped" for t in threads if not t.is_alive()]
        now = self.clock()
        problems += [f"{when(ts, self.timezone)} {text}" for ts, text in list(self.faults)[-3:]
                     if now - ts < FAULT_HOLD_S]
        return {"ok": not problems, "problems": problems}

    # -- inputs (feed thread) ----------------------------------------------------------------------
    def on_message(self, kind: str, msg: dict[str, Any]) -> None:
        """A validated message from a device (never raises: the feed thread must go on)."""
        try:
            with self.lock:
                now = self.clock()
                if kind == "labels":
                    ch = self.engine.on_labels(msg, now)
                elif kind == "status":
                    ch = self.engine.on_status(msg, now)
                else:
                    ch = self.engine.on_heartbeat(msg, now)
                self._apply(ch)
        except Exception as exc:  # noqa: BLE001 - the thread boundary: anything else would stop the feed
            self.report_fault(f"{kind} message from {msg.get('device')}", exc)

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
            try:
                self.tick()
                if self.notifier is not None:
                    self.notifier.tick()
            except Exception as exc:  # noqa: BLE001 - the thread boundary: graces and staleness must go on
                self.report_fault("tick", exc)

    def _apply(self, ch: Changes) -> None:
        """Store and publish what changed (caller holds the lock); a storing error is a fault, not a stop."""
        if not ch:
            return
        try:
            self.history.add_slot_changes(ch.slot_rows)
        except HistoryError as exc:
            self.report_fault("storing slot changes", exc)
        for event, inc in ch.incidents:
            try:
                inc.id = self.history.save_incident(inc.to_dict())
            except HistoryError as exc:
                self.report_fault(f"storing incident {inc.id or '(new)'} ({event})", exc)
        self.evidence.on_incidents(ch.incidents)
        if self.chain:
            self.chain.incidents(ch.incidents)
        for event, inc in ch.incidents:
            data = {"event": event, **self.describe(inc.to_dict())}
            self.hub.publish("incident", data)
            if self.notifier is not None:
                self.notifier.incident(event, data)
        for slot in ch.slots:
            self.hub.publish("slot", slot)
        for cam in ch.cameras:
            self.hub.publish("camera", {**cam, "offline_text": self.offline_text(cam)})

    def _evidence_stored(self, incident_id: int, metas: list[dict[str, Any]]) -> None:
        self.hub.publish("evidence", {"incident": incident_id, "slots": metas})

    # -- people's actions (web handlers) -----------------------------------------------------------
    def acknowledge(self, incident_id: int, user: str, note: str) -> dict[str, Any]:
        """A manager acknowledges an incident (raises :class:`~kiosk.engine.ActionError`)."""
        problem = text_problem(note or "")
        if problem:
            raise ActionError(f"the note {problem}")
        with self.lock:
            now = self.clock()
            ch = self.engine.acknowledge(incident_id, user, note, now)
            self._apply(ch)
            self.history.audit(now, user, "acknowledge", {"incident": incident_id, "note": note.strip()})
            return ch.incidents[0][1].to_dict()

    def set_expected(self, key: tuple[str, str, str], value: str, user: str, *, suggested: bool = False
                     ) -> dict[str, Any]:
        """A manager changes one slot of the planogram (raises :class:`~kiosk.engine.ActionError`).

        ``value`` must be a planogram state or one of the classes the case's model reports (any case:
        stored as the model spells it); a near miss is named ("did you mean"). ``suggested``: an
        enrolment's reading, shown as a suggestion until a manager confirms or edits it.
        """
        with self.lock:
            value = self.check_class(key[:2], value)
            now = self.clock()
            old, ch = self.engine.set_expected(key, value, now, suggested=suggested)
            self.history.set_planogram(now, user, key, old, value, suggested=suggested)
            self.history.audit(now, user, "planogram", {"slot": "/".join(key), "old": old, "new": value,
                                                        **({"suggested": True} if suggested else {})})
            self._apply(ch)
            return self.engine.slot_dict(key)

    def classes(self, case: tuple[str, str]) -> list[str]:
        """The classes the case's model reports (from its last labels' counts); empty before any labels."""
        view = self.engine.cams.get(case)
        return sorted(c for c in (view.counts if view is not None else {}) if c not in EMPTY_LABELS)

    def check_class(self, case: tuple[str, str], value: str) -> str:
        """``value`` as the planogram stores it: a state, or a class of the case's model in its spelling.

        Raises:
            ActionError: not text, not a state nor a class of the model (with the nearest class), or
                no labels from the case yet (its classes are unknown).
        """
        value = (value or "").strip()
        problem = text_problem(value)
        if problem:
            raise ActionError(f"the planogram value {problem}")
        states = {s.lower(): s for s in STATES}
        if value.lower() in states:
            return states[value.lower()]
        title = self.engine.case_title(case) if case in self.engine.cases else "/".join(case)
        classes = self.classes(case)
        if not classes:
            raise ActionError(f"{title} has sent no labels yet, so its model's classes are unknown: "
                              f"{value!r} cannot be checked (try again once the camera is up)")
        spelled = {c.lower(): c for c in classes}
        if value.lower() in spelled:
            return spelled[value.lower()]
        near = difflib.get_close_matches(value.lower(), list(spelled), n=1, cutoff=0.6)
        hint = f" (did you mean {spelled[near[0]]!r}?)" if near else ""
        model = self.engine.models.get(case) or {}
        raise ActionError(f"{value!r} is not a class of the model {model.get('name', '?')} "
                          f"{model.get('version', '')} in {title}{hint}; its classes: {', '.join(classes)}, "
                          f"or a state: {', '.join(STATES)}")

    def offline_text(self, cam: dict[str, Any]) -> str:
        """"Camera offline since 13:40:02 (...)" for a stale or down camera, else ""."""
        if cam["health"] not in NOT_LIVE:
            return ""
        since = cam.get("last_heartbeat") or cam.get("since")
        return (f"Camera offline since {when(since, self.timezone)[11:]}" if since else "Camera offline") + \
            f" ({cam['reason']})"

    def describe(self, inc: dict[str, Any]) -> dict[str, Any]:
        """An incident for people: its place in words and its times written the page's one way."""
        where = self.engine.case_title((inc["device"], inc["camera"])) if inc.get("camera") else inc["device"]
        if inc.get("slot"):
            names = [k[2] for k in self.engine.slots if k[:2] == (inc["device"], inc["camera"])]
            where += ", " + slot_words(inc["slot"], *case_shape(names))
        tz = self.timezone
        return {**inc, "where": where, "opened_text": when(inc.get("opened_at"), tz),
                "updated_text": when(inc.get("updated_at"), tz), "resolved_text": when(inc.get("resolved_at"), tz),
                "ack_text": when(inc.get("ack_at"), tz)}

    def run_count(self, user: str, kind: str = "manual") -> int:
        """Count the store now: per class and per slot with the pieces' value, kept for review and then a
        signature (:meth:`sign_count`). Returns its id."""
        with self.lock:
            now = self.clock()
            e = self.engine
            labels = {k: sv.label for k, sv in e.slots.items()}
            titles = {c: e.case_title(c) for c in e.cases}
            where = {}
            for case in e.cases:
                names = [k[2] for k in e.slots if k[:2] == case]
                where.update({(*case, n): slot_words(n, *case_shape(names)) for n in names})
            report = reconcile(e.planogram, labels, titles)
            report.update(slot_rows(e.planogram, labels, titles, self.history.pieces(), where))
        count_id, digest = self.history.add_count(now, user, kind, report)
        self.history.audit(now, user, "count", {"count": count_id, "kind": kind, "sha256": digest,
                                                "totals": report["totals"], "value": report["value"]})
        if self.chain:
            self.chain.count(count_id, kind, user, now, report["totals"], digest)
        self.hub.publish("count", {"id": count_id, "kind": kind, "user": user, "ts": now, "totals": report["totals"]})
        logger.info("count %d (%s) by %s: %s", count_id, kind, user, report["totals"])
        return count_id

    def sign_count(self, count_id: int, user: str) -> dict[str, Any]:
        """A manager signs a count after reviewing it (raises :class:`~kiosk.engine.ActionError`)."""
        row = self.history.count(count_id)
        if row is None:
            raise ActionError(f"no count {count_id}")
        now = self.clock()
        if not self.history.sign_count(count_id, user, now):
            raise ActionError(f"count {count_id} was already signed by {row['signed_by']}")
        self.history.audit(now, user, "sign count", {"count": count_id, "sha256": row["digest"]})
        return self.history.count(count_id)

    def set_piece(self, key: tuple[str, str, str], expected: str, sku: str, price: float | None,
                  photo: tuple[bytes, str] | None, user: str) -> dict[str, Any]:
        """A manager sets a slot's piece: its class (checked as :meth:`set_expected`), SKU, price, photo."""
        if key[:2] not in self.engine.cases or (key not in self.engine.planogram and key not in self.engine.slots):
            raise ActionError(f"no slot {key[2]} in case {key[0]}/{key[1]}")
        slot = self.set_expected(key, expected, user) if expected != self.engine.planogram.get(key) else \
            self.engine.slot_dict(key)
        now = self.clock()
        self.history.set_piece(key, sku, price, photo[0] if photo else None, photo[1] if photo else None, now, user)
        self.history.audit(now, user, "piece", {"slot": "/".join(key), "sku": sku, "price": price,
                                                "photo": hashlib.sha256(photo[0]).hexdigest() if photo else None})
        return {**slot, "piece": self.history.piece(key)}

    # -- views -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything the store page shows (``/api/state``)."""
        with self.lock:
            now = self.clock()
            e = self.engine
            cases = []
            for case, plan in e.cases.items():
                names = [k[2] for k in e.slots if k[:2] == case]
                layout = case_layout(names, plan.columns)
                rows, cols = case_shape(names)
                health = e.camera_dict(case, now)
                slots = [{**e.slot_dict((*case, n)), "where": slot_words(n, rows, cols)} for n in layout["order"]]
                cases.append({"device": case[0], "camera": case[1], "title": e.case_title(case),
                              "columns": layout["columns"], "slots": slots, "camera_health": health,
                              "stale": health["health"] in NOT_LIVE, "classes": self.classes(case),
                              "offline_text": self.offline_text(health)})
            return {"store": self.config.store, "ts": now, "ts_text": when(now, self.timezone),
                    "open": e.store_open(now), "cases": cases, "health": self.health(),
                    "devices": [{"device": d, **info} for d, info in self.devices.items()],
                    "incidents": [self.describe(i.to_dict()) for i in e.incidents()]}

    def incidents(self) -> list[dict[str, Any]]:
        """Unresolved incidents (live view)."""
        with self.lock:
            return [self.describe(i.to_dict()) for i in self.engine.incidents()]

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
