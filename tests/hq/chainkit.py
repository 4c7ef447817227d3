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


STORES = [{"id": "zrh-01", "name": "Zürich", "region": "east"}, {"id": "gva-02", "name": "Genève", "region": "west"},
          {"id": "bsl-03", "name": "Basel", "region": "east"}]


def hq_config_dict(tmp_path, broker, dsn: str, **top) -> dict:
    """An hq.yaml for the session's broker and a database (``ghost-9`` has a broker login but is no store)."""
    (tmp_path / "hq.password").write_text("hq-secret-1\n")
    (tmp_path / "db.dsn").write_text(dsn + "\n")
    return {"state_dir": str(tmp_path / "hq-state"), "database_file": str(tmp_path / "db.dsn"),
            "broker": {"url": broker.url, "password_file": str(tmp_path / "hq.password"), "ca_file": str(broker.ca),
                       "client_id": f"hq-{tmp_path.name[-20:]}"},
            "stores": STORES, **top}


def wait_sql(dsn: str, sql: str, want, timeout: float = 10.0, params=()):
    """Poll a query until its first row equals ``want`` (returned) or fail with what it last was."""
    import psycopg

    deadline, got = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(dsn) as conn:
                got = conn.execute(sql, params).fetchone()
        except psycopg.Error as exc:     # e.g. a table not made yet, the database restarting
            got = exc
        if got == want:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{sql!r} gave {got}, not {want}, after {timeout} s")


def publish_raw(broker, store: str, topic: str, payload: bytes, *, plain: bool = False) -> None:
    """Publish one message as ``store`` (TLS, its own password), QoS 1: returns once the broker has it."""
    from paho.mqtt import publish

    from .conftest import PASSWORDS

    publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=broker.plain_port if plain else broker.port,
                   client_id=f"raw-{store}", auth={"username": store, "password": PASSWORDS[store]},
                   tls=None if plain else {"ca_certs": str(broker.ca)})


class Served:
    """An ASGI app served by uvicorn on a free loopback port in this process (``url``; ``close()``)."""

    def __init__(self, app) -> None:
        import socket

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)


NOW = 1_800_000_000.0   # the chain page's clock in the web tests


def incident_message(store: str, n: int, seq: int, opened_at: float) -> dict:
    return {"schema_version": 1, "kind": "incident", "id": f"{store}-{seq}".ljust(32, "0")[:32], "seq": seq,
            "store": store, "ts": opened_at, "event": "opened",
            "incident": {"id": n, "kind": "missing", "device": "case-01", "camera": "cam0", "slot": f"r0c{n}",
                         "state": "open", "opened_at": opened_at, "updated_at": opened_at,
                         "reason": f"{store} slot r0c{n} should hold ring", "evidence_sha256": "0" * 64}}


def health_message(store: str, seq: int, up: bool, version: str) -> dict:
    return {"schema_version": 1, "kind": "health", "id": f"h{store}{seq}".ljust(32, "0")[:32], "seq": seq,
            "store": store, "ts": NOW - 30, "devices": [{"device": "case-01", "link": "up" if up else "refused",
                                                          "up": up, "cameras": [{"camera": "cam0", "health": "up",
                                                                                 "model": {"name": "m", "version": version}}]}]}


def browser(tmp_path):
    """Headless Chromium through Selenium (Debian's chromium + chromium-driver, as the kiosk's browser test);
    skipped when missing, failed in CI (``make test`` installs them)."""
    import os

    import pytest

    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not os.path.exists(p)]
    if missing:
        msg = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (make test does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def csrf_of(page: str) -> str:
    """The CSRF token of a page's form."""
    return page.split('name="csrf" value="')[1].split('"')[0]


def log_in(client, name: str, password: str = "correct horse"):
    """Log ``client`` (httpx) in through the login form; returns the login's response."""
    return client.post("/login", data={"user": name, "password": password, "csrf": csrf_of(client.get("/login").text)})
