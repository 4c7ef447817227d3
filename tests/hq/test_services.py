"""The real broker and database the chain's tests stand on: TLS, passwords and the per-store ACL."""
from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import psycopg


def _client(broker, user: str, password: str, got: list | None = None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(broker.ca))
    connected = threading.Event()
    c.on_connect = lambda cl, ud, flags, rc, props: connected.set() if not rc.is_failure else None
    if got is not None:
        c.on_message = lambda cl, ud, m: got.append((m.topic, m.payload))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert connected.wait(5)
    return c


def test_a_store_cannot_publish_under_another_stores_prefix(broker):
    got: list = []
    hq = _client(broker, "hq", "hq-secret-1", got)
    hq.subscribe("gemsight/#", qos=1)
    store = _client(broker, "zrh-01", "zrh-01-secret")
    try:
        time.sleep(0.2)
        store.publish("gemsight/gva-02/incident", b"forged", qos=1).wait_for_publish(5)
        store.publish("gemsight/zrh-01/incident", b"own", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert got == [("gemsight/zrh-01/incident", b"own")]
    finally:
        for c in (hq, store):
            c.loop_stop()
            c.disconnect()


def test_wrong_password_is_refused(broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-bad", protocol=mqtt.MQTTv5)
    c.username_pw_set("zrh-01", "not-the-password")
    c.tls_set(ca_certs=str(broker.ca))
    codes = []
    c.on_connect = lambda cl, ud, flags, rc, props: codes.append(rc)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    assert codes and codes[0].is_failure


def test_postgres_answers(dsn):
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
