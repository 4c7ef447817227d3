"""Chain test helpers: a subscriber that collects what reaches the broker, kiosk configs that report to it."""
from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

from tests.kiosk.feeds import config_dict


class Collector:
    """An ``hq`` client subscribed to ``gemsight/#`` (QoS 1) that keeps ``(topic, message)`` pairs.

    Args:
        persistent: A persistent session (messages queued by the broker while this client is away).
    """

    def __init__(self, broker, password: str = "hq-secret-1", *, persistent: bool = False,
                 client_id: str = "collector") -> None:
        self.got: list[tuple[str, dict]] = []
        self._connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        c.username_pw_set("hq", password)
        c.tls_set(ca_certs=str(broker.ca))
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda cl, ud, mid, codes, props: self._connected.set()
        c.on_message = lambda cl, ud, m: self.got.append((m.topic, json.loads(m.payload)))
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        assert self._connected.wait(5), "collector did not connect"
        self.client = c

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure:
            client.subscribe("gemsight/#", qos=1)   # ready once the broker acknowledges the subscription

    def wait(self, n: int, timeout: float = 10.0) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.got) >= n, f"{len(self.got)} of {n} messages arrived: {[t for t, _ in self.got]}"
        return self.got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def chain_kiosk_config(tmp_path, broker, creds, store: str = "zrh-01", **chain) -> dict:
    """A kiosk config (one device, four slots, no grace) that reports to ``broker`` as ``store``."""
    section = {"url": broker.url, "store_id": store, "password_file": str(creds.files[store]),
               "ca_file": str(creds.ca), **chain}
    return config_dict(tmp_path, policies={"empty_grace_s": 0}, chain=section)
