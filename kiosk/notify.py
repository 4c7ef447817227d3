"""Incident notifications: a webhook POST per incident when it opens, escalates and resolves; no more.

* **Deduplicated**: each incident sends at most one ``open``, one ``escalate`` (still not acknowledged
  ``escalate_after_min`` after it opened) and one ``resolve`` (only if its ``open`` went out). Updates
  and acknowledgements send nothing.
* **Quiet hours**: inside ``quiet_hours`` only smash-and-grab and camera alarms go out; the others
  wait, and are dropped if their incident resolved meanwhile.
* **Signed**: with a ``secret``, every POST carries ``X-Gemsight-Timestamp`` and
  ``X-Gemsight-Signature: sha256=<hex>``, the HMAC-SHA256 of ``<timestamp>.<body>``; a receiver
  recomputes it and refuses old timestamps. ``X-Gemsight-Delivery`` (``<incident>-<event>``) lets it
  drop a retried delivery it already has.
* **Retried** with doubling back-off (``backoff_s``, ``retries``) from one sender thread; a delivery
  that still fails is logged and dropped, never retried forever.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from typing import Any, Callable
from zoneinfo import ZoneInfo

from edge.backoff import Backoff
from edge.config.credentials import resolve
from edge.errors import ConfigError
from kiosk.config_web import WebhookConfig

logger = logging.getLogger(__name__)

URGENT = ("smash", "camera")      # sent in quiet hours too
QUEUE_MAX = 1000
MIN_SECRET_BYTES = 16


def load_secret(ref: str) -> bytes:
    """The webhook's HMAC key from a file (a bare name from ``$CREDENTIALS_DIRECTORY``).

    Raises:
        ConfigError: missing, unreadable or shorter than ``MIN_SECRET_BYTES``.
    """
    path = resolve(ref, "webhook.secret")
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"webhook.secret: cannot read {path} ({exc.strerror or exc})") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(f"webhook.secret: {path} holds {len(key)} bytes; at least {MIN_SECRET_BYTES}")
    return key


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Gemsight-Signature`` value of a POST."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Notifier:
    """Sends one store's incident notifications.

    Args:
        config: The ``webhook`` config.
        store: The store's name (in every body).
        secret: HMAC key (``None``: unsigned, logged once as a warning).
        clock: Wall time; ``timezone``: the store's (quiet hours).
        open_ids: Incidents already open at start (their ``open`` went out before a restart).
    """

    def __init__(self, config: WebhookConfig, store: str, secret: bytes | None, *, clock: Callable[[], float],
                 timezone: str | None = None, open_ids: list[tuple[int, str, float]] | None = None) -> None:
        self.config, self.store, self.secret, self.clock = config, store, secret, clock
        self.tz = ZoneInfo(timezone) if timezone else None
        self.sent: set[tuple[int, str]] = set()
        self.tracked: dict[int, dict[str, Any]] = {}     # open incidents: escalation and quiet-hour waits
        for inc_id, kind, opened_at in open_ids or []:
            self.sent.add((inc_id, "open"))
            self.tracked[inc_id] = {"id": inc_id, "kind": kind, "opened_at": opened_at, "state": "open"}
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_MAX)
        self._lock = threading.Lock()
        self.delivered = self.failed = 0
        if secret is None:
            logger.warning("webhook %s: no secret, notifications are not signed", config.url)

    def quiet(self, now: float) -> bool:
        """Whether ``now`` falls in the quiet hours."""
        q = self.config.quiet_hours
        if q is None:
            return False
        local = dt.datetime.fromtimestamp(now, self.tz) if self.tz else dt.datetime.fromtimestamp(now)
        return q.covers(local.strftime("%H:%M"))

    def incident(self, event: str, inc: dict[str, Any]) -> None:
        """An incident changed (``opened``, ``updated``, ``acknowledged``, ``resolved``)."""
        inc_id = inc.get("id")
        if inc_id is None:
            return
        with self._lock:
            if event == "opened":
                self.tracked[inc_id] = dict(inc)
                self._send(inc_id, "open", inc)
            elif event in ("updated", "acknowledged") and inc_id in self.tracked:
                self.tracked[inc_id] = dict(inc)
            elif event == "resolved":
                self.tracked.pop(inc_id, None)
                if (inc_id, "open") in self.sent:
                    self._send(inc_id, "resolve", inc, force=True)

    def tick(self) -> None:
        """Escalations that came due, and notifications held back by quiet hours."""
        now = self.clock()
        after = self.config.escalate_after_min
        with self._lock:
            for inc_id, inc in list(self.tracked.items()):
                if (inc_id, "open") not in self.sent:
                    self._send(inc_id, "open", inc)
                elif (after is not None and inc.get("state") == "open" and (inc_id, "escalate") not in self.sent
                      and now - float(inc.get("opened_at") or now) >= after * 60):
                    self._send(inc_id, "escalate", inc)

    def _send(self, inc_id: int, event: str, inc: dict[str, Any], force: bool = False) -> None:
        if (inc_id, event) in self.sent:
            return
        if not force and inc.get("kind") not in URGENT and self.quiet(self.clock()):
            return                          # tick() sends it once the quiet hours end
        self.sent.add((inc_id, event))
        body = json.dumps({"store": self.store, "event": event, "incident": inc}, default=str,
                          separators=(",", ":")).encode()
        try:
            self._queue.put_nowait((f"{inc_id}-{event}", event, body))
        except queue.Full:
            self.failed += 1
            logger.warning("webhook queue full: incident %s %s not sent", inc_id, event)

    # -- the sender thread ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set (the service's sender thread)."""
        while not stop.is_set():
            try:
                delivery = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._deliver(*delivery, stop=stop)

    def _deliver(self, delivery: str, event: str, body: bytes, *, stop: threading.Event) -> None:
        backoff = Backoff(self.config.backoff_s)
        for attempt in range(self.config.retries + 1):
            ts = str(int(self.clock()))
            headers = {"Content-Type": "application/json", "X-Gemsight-Event": event,
                       "X-Gemsight-Delivery": delivery, "X-Gemsight-Timestamp": ts}
            if self.secret is not None:
                headers["X-Gemsight-Signature"] = signature(self.secret, ts, body)
            req = urllib.request.Request(self.config.url, data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                    resp.read(1024)
                self.delivered += 1
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = exc
            if attempt < self.config.retries:
                wait = backoff.failed()
                logger.info("webhook %s: %s failed (%s), again in %.1f s", self.config.url, delivery, error, wait)
                if stop.wait(wait):
                    return
        self.failed += 1
        logger.warning("webhook %s: %s not delivered after %d attempts: %s", self.config.url, delivery,
                       self.config.retries + 1, error)
