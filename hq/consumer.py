"""The broker into PostgreSQL: every store's messages checked, applied once, acknowledged after commit.

* **Subscription**: ``gemsight/+/+`` with QoS 1 on a persistent session (``clean_session`` off, a
  fixed client id): the broker keeps what arrives while headquarters is down.
* **Acknowledged after commit** (paho's manual acks): a message is acknowledged to the broker only
  once its transaction is committed, so a crash or a database restart loses nothing; the broker
  sends it again and its id makes it a no-op (:mod:`hq.store`).
* **Refused**: a topic of a store that is not in ``stores:`` (counted in ``intake`` as
  ``unknown store``); a payload that is not JSON, fails its schema (``edge/schemas/chain-*.json``)
  or names another store or kind than its topic (``malformed``: logged in one line and skipped).
  Both are acknowledged: sending them again would not make them better.
* **The database away**: the batch is kept and retried with backoff on a new connection; the broker
  holds the rest (its in-flight window), nothing is dropped.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from functools import lru_cache
from typing import Any

import psycopg

from edge.errors import GemsightError
from hq import store as db
from hq.migrations import migrate
from kiosk.chain import KINDS, broker_address, load_schema

logger = logging.getLogger(__name__)

TOPIC = "gemsight/+/+"
BATCH = 200
MAX_PAYLOAD = 256 * 1024
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class Refused(GemsightError):
    """A message headquarters will not apply: ``reason`` is ``unknown store`` or ``malformed``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@lru_cache(maxsize=None)
def _validator(kind: str) -> Any:
    import jsonschema  # noqa: PLC0415

    schema = load_schema(kind)
    return jsonschema.validators.validator_for(schema)(schema)


def check(topic: str, payload: bytes, known: set[str] | frozenset[str]) -> dict[str, Any]:
    """The message of one ``(topic, payload)``, or :class:`Refused` with a one-line reason."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "gemsight" or parts[2] not in KINDS:
        raise Refused("malformed", f"topic {topic!r} is not gemsight/<store>/{{{','.join(KINDS)}}}")
    store, kind = parts[1], parts[2]
    if store not in known:
        raise Refused("unknown store", f"store {store!r} is not one of the chain's stores")
    if len(payload) > MAX_PAYLOAD:
        raise Refused("malformed", f"{len(payload)} bytes is over the {MAX_PAYLOAD} byte limit")
    if b"\\u0000" in payload:
        raise Refused("malformed", "contains a NUL character (\\u0000), which no database text can hold")
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused("malformed", f"not JSON ({exc})") from None
    error = next(iter(sorted(_validator(kind).iter_errors(msg), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise Refused("malformed", f"{where}: {error.message[:200]}")
    if msg["store"] != store:
        raise Refused("malformed", f"payload names store {msg['store']!r}, its topic {store!r}")
    return msg


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class Consumer:
    """Headquarters' intake: broker → checks → PostgreSQL.

    Args:
        url: The broker (``mqtts://``; ``mqtt://`` only with ``insecure``).
        user, password, ca_file, client_id: headquarters' broker login.
        dsn: The PostgreSQL DSN.
        stores: The chain's stores (``StoreEntry``: id, name, region).
    """

    def __init__(self, url: str, user: str, password: str, dsn: str, stores: Any, *, ca_file: str | None = None,
                 client_id: str = "gemsight-hq", insecure: bool = False) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415

        self.host, self.port, tls = broker_address(url, insecure)
        if not tls:
            logger.warning("PLAINTEXT to the chain's broker %s (--insecure): passwords and reports are readable", url)
        self.dsn, self.stores = dsn, tuple(stores)
        self.known = frozenset(s.id for s in self.stores)
        self.stats: Counter = Counter()
        self.queue: queue.Queue = queue.Queue()
        self.conn: psycopg.Connection | None = None
        self.connected = threading.Event()
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged_unknown: set[str] = set()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.username_pw_set(user, password)
        if tls:
            c.tls_set(ca_certs=ca_file)
        c.manual_ack_set(True)
        c.reconnect_delay_set(0.2, 10)
        c.on_connect, c.on_disconnect, c.on_message = self._on_connect, self._on_disconnect, self._on_message
        self.client = c

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Consumer":
        """Connect the database (migrations, stores), then the broker; both in the background after that."""
        self._db()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._work, name="gemsight-hq-intake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        if self._thread is not None:
            self._thread.join(10)
        if self.conn is not None:
            self.conn.close()

    def _db(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, connect_timeout=5)
            migrate(self.conn)
            db.sync_stores(self.conn, self.stores)
        return self.conn

    # -- broker callbacks (paho's thread) ----------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            logger.error("hq: broker %s:%d refused headquarters: %s", self.host, self.port, reason)
            return
        self._generation += 1
        client.subscribe(TOPIC, qos=1)
        self.connected.set()
        logger.info("hq: consuming %s from %s:%d", TOPIC, self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            logger.warning("hq: lost the broker (%s); reconnecting", reason)

    def _on_message(self, client, userdata, m) -> None:
        self.queue.put((self._generation, m.mid, m.qos, m.topic, m.payload, time.time()))

    # -- the intake thread -------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self.queue.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[tuple]) -> None:
        """Apply a batch in one transaction, retrying on a new connection until it commits; then ack it."""
        for attempt in range(10**9):
            if self._stop.is_set():
                return
            try:
                conn = self._db()
                with conn.transaction():
                    outcomes = [self._one(conn, topic, payload, received)
                                for gen, mid, qos, topic, payload, received in batch]
                self.stats.update(outcomes)          # counted once committed (a retried batch counts once)
                break
            except psycopg.OperationalError as exc:
                wait = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                if attempt == 0:
                    logger.error("hq: database unavailable (%s); %d messages held, retrying", one_line(exc),
                                 len(batch))
                if self.conn is not None:
                    self.conn.close()
                self._stop.wait(wait)
            except psycopg.Error as exc:     # a value the schema let through but PostgreSQL refuses: one by one
                logger.warning("hq: batch refused by the database (%s); applying one by one", one_line(exc))
                try:
                    self._one_by_one(batch)
                except psycopg.OperationalError:
                    continue                 # the database went away meanwhile: the whole batch again (ids dedupe)
                break
        for gen, mid, qos, *_ in batch:
            if gen == self._generation and qos > 0:   # an older connection's: the broker sends it again
                self.client.ack(mid, qos)

    def _one_by_one(self, batch: list[tuple]) -> None:
        conn = self._db()
        for gen, mid, qos, topic, payload, received in batch:
            try:
                with conn.transaction():
                    outcome = self._one(conn, topic, payload, received)
                self.stats[outcome] += 1
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                self.stats["malformed"] += 1
                logger.warning("hq: malformed message on %s skipped: %s", one_line(topic)[:200], one_line(exc))
                with conn.transaction():
                    db.count_intake(conn, "malformed", f"{one_line(topic)[:200]}: {one_line(exc)}")

    def _one(self, conn, topic: str, payload: bytes, received: float) -> str:
        """Check and apply one message in the caller's transaction; returns what became of it."""
        try:
            msg = check(topic, payload, self.known)
        except Refused as exc:
            store = topic.split("/")[1] if topic.count("/") >= 1 else "?"
            if exc.reason == "malformed":
                logger.warning("hq: malformed message on %s skipped: %s", one_line(topic)[:200], one_line(exc))
            elif store not in self._logged_unknown:
                self._logged_unknown.add(store)
                logger.warning("hq: refused message from unknown store %r on %s (counted; logged once per store)",
                               store[:64], one_line(topic)[:200])
            db.count_intake(conn, exc.reason, f"{one_line(topic)[:200]}: {one_line(exc)}")
            return exc.reason
        return "applied" if db.apply(conn, msg, received) else "duplicates"
