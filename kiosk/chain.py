"""The kiosk's link to headquarters: incidents, counts, device health and model versions, over MQTT.

The kiosk stays the store's source of truth; headquarters gets a copy through the chain's broker
(Mosquitto), which ``gemsight-hq`` consumes into PostgreSQL.

* **Topics** ``gemsight/<store>/<kind>`` with kind ``incident``, ``count`` or ``health``; payloads
  are JSON, one schema each (``edge/schemas/chain-<kind>.schema.json``). Every message carries a
  unique ``id`` (headquarters applies each id once) and the store's ``seq`` (its order: a later seq
  wins at headquarters, so a resent message never undoes a newer one).
* **Outbox**: every message is first written to the ``chain_outbox`` table of the kiosk's SQLite
  database (its own connection), then published with QoS 1; a row is deleted only when the broker
  acknowledges it. A store offline for hours keeps its messages and sends them, oldest first, when
  the broker is back; so does a kiosk restarted in the meantime.
* **Never blocking**: the kiosk's threads only insert a row; one sender thread talks to the broker
  (paho-mqtt's network loop), at most ``WINDOW`` messages in flight. With the broker down the
  store page works as before.
* **Transport**: TLS (``mqtts://``) with the store's own user name and password; the broker's ACL
  lets the store write only under its own prefix. Plaintext (``mqtt://``) is refused unless
  ``insecure: true``, and then logged loudly.
* **Evidence** travels as the SHA-256 of the incident's evidence, never pictures.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.config import credentials
from edge.contracts import ID_PATTERN
from edge.errors import ConfigError
from edge.validation import Strict

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KINDS = ("incident", "count", "health")
WINDOW = 100                 # messages handed to the MQTT client and not yet acknowledged
HEALTH_EVERY_S = 60.0
TLS_PORT, PLAIN_PORT = 8883, 1883
OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS chain_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL,
    payload TEXT NOT NULL, created REAL NOT NULL);
"""
INCIDENT_FIELDS = ("id", "kind", "device", "camera", "slot", "state", "opened_at", "updated_at", "resolved_at",
                   "reason", "ack_by", "ack_at", "ack_note")


def check_broker_url(url: str) -> str:
    """Return ``url`` if it is ``mqtt(s)://host[:port]``, else raise ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"{url!r} is not a broker URL like mqtts://broker.example:8883")
    return url


class ChainConfig(Strict):
    """The ``chain:`` section of ``kiosk.yaml``: where headquarters' broker is and who this store is."""

    url: str = Field(description="The broker, mqtts://host:8883 (mqtt:// plaintext only with insecure: true).")
    store_id: str = Field(pattern=ID_PATTERN, description="This store's id at headquarters: its broker user name "
                                                          "and its topic prefix gemsight/<store_id>/.")
    password_file: str = Field(description="File holding the store's broker password (a bare name is read from "
                                           "$CREDENTIALS_DIRECTORY).")
    ca_file: str | None = Field(None, description="CA certificate of the broker (default: the system's CAs).")
    insecure: bool = Field(False, description="Allow plaintext mqtt:// (for a broker on loopback only).")
    health_every_s: float = Field(HEALTH_EVERY_S, gt=0, description="Device health is sent on every change "
                                                                     "and at least this often.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_broker_url(v)

    @model_validator(mode="after")
    def _plaintext(self) -> "ChainConfig":
        if urlsplit(self.url).scheme == "mqtt" and not self.insecure:
            raise ValueError(f"plaintext {self.url} is refused: use mqtts:// (or insecure: true on loopback)")
        return self


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict:
    """The JSON Schema of one chain message kind (``edge/schemas/chain-<kind>.schema.json``)."""
    if kind not in KINDS:
        raise ValueError(f"chain message kind {kind!r} is not one of {list(KINDS)}")
    return json.loads((resources.files("edge") / "schemas" / f"chain-{kind}.schema.json").read_text("utf-8"))


def broker_address(url: str, insecure: bool = False) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of a broker URL.

    Raises:
        ConfigError: not an ``mqtt(s)://`` URL, or plaintext without ``insecure``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"{url!r} is not a broker URL like mqtts://broker.example:8883")
    tls = parts.scheme == "mqtts"
    if not tls and not insecure:
        raise ConfigError(f"plaintext {url} is refused: use mqtts:// (or --insecure for a broker on loopback)")
    try:
        port = parts.port or (TLS_PORT if tls else PLAIN_PORT)
    except ValueError:
        raise ConfigError(f"{url!r}: the port is not a number from 0 to 65535") from None
    return parts.hostname, port, tls


def read_password(ref: str, what: str) -> str:
    """The first line of a password file (a credential reference)."""
    path = credentials.resolve(ref, what)
    try:
        text = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({getattr(exc, 'strerror', None) or exc})") from None
    if not text or not text[0].strip():
        raise ConfigError(f"{path}: the {what} file is empty")
    return text[0].strip()


def evidence_digest(evidence: Any) -> str:
    """SHA-256 of the evidence as canonical JSON (what headquarters can match against the store's history)."""
    body = json.dumps(evidence or {}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class Outbox:
    """The ``chain_outbox`` table: messages not yet acknowledged by the broker, in order."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(OUTBOX_SCHEMA)
        self._lock = threading.Lock()

    def add(self, topic: str, message: dict[str, Any]) -> dict[str, Any]:
        """Store one message; fills in its ``id`` and ``seq`` and returns it."""
        with self._lock:
            message["id"] = uuid.uuid4().hex
            self._db.execute("BEGIN IMMEDIATE")     # the row and its payload (which holds its seq) together
            try:
                cur = self._db.execute("INSERT INTO chain_outbox (id, topic, payload, created) VALUES (?, ?, '', ?)",
                                       [message["id"], topic, message.get("ts", time.time())])
                message["seq"] = int(cur.lastrowid)
                self._db.execute("UPDATE chain_outbox SET payload = ? WHERE seq = ?",
                                 [json.dumps(message, separators=(",", ":"), default=str), message["seq"]])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return message

    def pending(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` unacknowledged ``(seq, topic, payload)`` after ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload FROM chain_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                    [after, limit]).fetchall()
        return [(s, t, p.encode()) for s, t, p in rows]

    def done(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM chain_outbox WHERE seq = ?", [seq])

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM chain_outbox").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Chain:
    """One store's publisher to the chain's broker (see the module docstring).

    Args:
        store_id: The store's id (broker user name, topic prefix).
        url: ``mqtts://host:port`` (or ``mqtt://`` with ``insecure``).
        password: The store's broker password.
        outbox: Path of the SQLite database that holds the outbox (the kiosk's history database).
        ca_file: CA of the broker's certificate (None: the system's).
        clock: Wall time; the bench passes a simulated one.
    """

    def __init__(self, store_id: str, url: str, password: str, outbox: str | Path, *, ca_file: str | None = None,
                 insecure: bool = False, clock: Callable[[], float] = time.time,
                 health_every_s: float = HEALTH_EVERY_S, window: int = WINDOW) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415 - only kiosks that report to a chain need it

        self.store_id, self.clock, self.window = store_id, clock, window
        self.host, self.port, tls = broker_address(url, insecure)
        if not tls:
            logger.warning("PLAINTEXT to the chain's broker %s: store %s's password and data are readable on the "
                           "network", url, store_id)
        self.outbox = Outbox(outbox)
        self.health_every_s = health_every_s
        self.connected = threading.Event()
        self.sent = self.acked = self.refused = self.dropped = 0
        self._inflight: dict[int, int] = {}        # mid -> outbox seq
        self._early: dict[int, Any] = {}           # mid -> reason, acknowledged before _fill recorded it
        self._cursor = 0                           # last seq handed to the client
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_health: tuple[float, str] | None = None
        self._last_error: str | None = None
        self._mqtt = mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gemsight-kiosk-{store_id}",
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(store_id, password)
        if tls:
            c.tls_set(ca_certs=ca_file)
        c.max_inflight_messages_set(0)   # our window bounds it (paho 2.2 may never resend what its own limit queued)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.5, 30)
        c.on_connect, c.on_disconnect, c.on_publish = self._on_connect, self._on_disconnect, self._on_publish
        c.on_connect_fail = self._on_connect_fail
        self.client = c

    @classmethod
    def from_config(cls, cfg: ChainConfig, outbox: str | Path, clock: Callable[[], float] = time.time) -> "Chain":
        return cls(cfg.store_id, cfg.url, read_password(cfg.password_file, "broker password"), outbox,
                   ca_file=cfg.ca_file, insecure=cfg.insecure, clock=clock, health_every_s=cfg.health_every_s)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Chain":
        """Connect in the background (never blocks) and start sending the outbox."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._send_loop, name="gemsight-kiosk-chain", daemon=True)
        self._thread.start()
        logger.info("chain: store %s reports to %s:%d (%d messages waiting in the outbox)", self.store_id,
                    self.host, self.port, len(self.outbox))
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()
        self.outbox.close()

    # -- what the kiosk reports (any thread; only an SQLite insert) --------------------------------
    def send(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Queue one message of ``kind`` (``incident``/``count``/``health``); returns it with its id and seq."""
        message = {"schema_version": SCHEMA_VERSION, "kind": kind, "store": self.store_id, "ts": self.clock(), **data}
        try:
            message = self.outbox.add(f"gemsight/{self.store_id}/{kind}", message)
        except sqlite3.Error as exc:      # the store's own work goes on; headquarters misses this one
            self.dropped += 1
            logger.error("chain: %s message not queued, the outbox cannot be written: %s", kind, exc)
            return message
        self._wake.set()
        return message

    def incidents(self, changes: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """The incident events of one kiosk change (``(event, Incident)`` pairs); returns the messages."""
        out = []
        for event, inc in changes:
            d = inc.to_dict() if hasattr(inc, "to_dict") else dict(inc)
            out.append(self.send("incident", {"event": event, "incident": {
                **{k: d.get(k) for k in INCIDENT_FIELDS}, "evidence_sha256": evidence_digest(d.get("evidence"))}}))
        return out

    def count(self, count_id: int, kind: str, user: str, ts: float, totals: dict[str, int], digest: str) -> None:
        """A count report (opening, closing or manual): its totals and the digest of the full report."""
        self.send("count", {"count": {"id": count_id, "kind": kind, "user": user, "ts": ts, "totals": totals,
                                      "sha256": digest}})

    def health(self, devices: list[dict[str, Any]], now: float, force: bool = False) -> bool:
        """Device health and model versions: sent when it changed or ``health_every_s`` passed; True if sent."""
        key = json.dumps(devices, sort_keys=True, default=str)
        last = self._last_health
        if not force and last is not None and last[1] == key and now - last[0] < self.health_every_s:
            return False
        self._last_health = (now, key)
        self.send("health", {"devices": devices})
        return True

    def tick(self, kiosk: Any, now: float) -> None:
        """The kiosk's ticker: report device health when it changed (reads the kiosk under its lock)."""
        with kiosk.lock:
            e = kiosk.engine
            devices = []
            for dev, info in kiosk.devices.items():
                cams = [{"camera": cam, "health": e.cams[case].health,
                         "model": {k: (e.models.get(case) or {}).get(k) for k in ("name", "version", "precision",
                                                                                 "backend")}}
                        for case in sorted(c for c in e.cams if c[0] == dev) for cam in [case[1]]]
                devices.append({"device": dev, "link": str(info.get("link")),
                                "up": info.get("link") == "up" and all(c["health"] == "up" for c in cams),
                                "cameras": cams})
        # last heartbeat ages would make every tick a change: health is the state, not the clock
        self.health(devices, now)

    # -- the sender --------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self.connected.is_set():
                self._fill()

    def _fill(self) -> None:
        # Never call paho under self._lock: paho calls _on_publish holding its own lock (a lock-order deadlock).
        with self._lock:
            room = self.window - len(self._inflight)
        if room <= 0:
            return
        for seq, topic, payload in self.outbox.pending(self._cursor, room):
            info = self.client.publish(topic, payload, qos=1)
            # Also when the link dropped meanwhile (MQTT_ERR_NO_CONN): paho keeps it and sends it on reconnect.
            with self._lock:
                early = self._early.pop(info.mid, None)
                if early is None:
                    self._inflight[info.mid] = seq
            self._cursor = seq
            self.sent += 1
            if early is not None:
                self._done(seq, early)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._once(f"chain: broker {self.host}:{self.port} refused store {self.store_id}: {reason}")
            return
        self._last_error = None
        logger.info("chain: connected to %s:%d as %s (%d waiting)", self.host, self.port, self.store_id,
                    len(self.outbox))
        self.connected.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._once(f"chain: cannot reach the broker {self.host}:{self.port} (down, or TLS refused); "
                   f"retrying, {len(self.outbox)} messages kept in the outbox")

    def _once(self, text: str) -> None:
        """Log an error once until the next successful connection (a down broker is not news every second)."""
        if text.split(";")[0] != (self._last_error or "").split(";")[0]:
            logger.error("%s", text)
        self._last_error = text

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self.connected.is_set() and not self._stop.is_set():
            logger.warning("chain: lost the broker %s:%d (%s); the outbox keeps what is not sent", self.host,
                           self.port, reason)
        self.connected.clear()

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is None:             # acknowledged before _fill recorded it
                self._early[mid] = reason
                return
        self._done(seq, reason)

    def _done(self, seq: int, reason: Any) -> None:
        if reason.is_failure:
            # The broker will never take it (e.g. not authorised): keeping it would only grow the outbox.
            self.refused += 1
            logger.error("chain: broker refused message seq %d of store %s: %s", seq, self.store_id, reason)
        else:
            self.acked += 1
        self.outbox.done(seq)
        self._wake.set()
