"""The real broker and database the chain's tests stand on: TLS, passwords and the per-store ACL."""
from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import psycopg

from .chainkit import Collector, publish_raw


def test_a_store_cannot_publish_under_another_stores_prefix(broker):
    hq = Collector(broker, client_id="acl-check")
    try:
        publish_raw(broker, "zrh-01", "gemsight/gva-02/incident", b'"forged"')
        publish_raw(broker, "zrh-01", "gemsight/zrh-01/incident", b'"own"')
        hq.wait(1)
        time.sleep(0.3)             # the forged one, had it passed, was sent first and would be here
        assert hq.got == [("gemsight/zrh-01/incident", "own")]
    finally:
        hq.close()


def test_wrong_password_is_refused(broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-bad", protocol=mqtt.MQTTv5)
    c.username_pw_set("zrh-01", "not-the-password")
    c.tls_set(ca_certs=str(broker.ca))
    codes, done = [], threading.Event()
    c.on_connect = lambda cl, ud, flags, rc, props: (codes.append(rc), done.set())
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        assert done.wait(5) and codes[0].is_failure
    finally:
        c.disconnect()
        c.loop_stop()


def test_postgres_answers(dsn):
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
