"""The kiosk's feed on real sockets: snapshot on start and on a seq gap, bad messages, a silent device,
a device whose key does not match, and a restart with the history intact."""
from __future__ import annotations

import pytest
import zmq
import zmq.auth

from kiosk.config import parse_config
from kiosk.service import Kiosk

from .feeds import SimDevice, config_dict, wait_for

SLOTS = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch"}
FULL = dict(SLOTS)


@pytest.fixture
def device():
    dev = SimDevice()
    yield dev
    dev.close()


def start(tmp_path, devices, **top) -> Kiosk:
    top.setdefault("policies", {"empty_grace_s": 0, "snapshot_timeout_s": 0.5})
    return Kiosk(parse_config(config_dict(tmp_path, devices=devices, **top))).start()


def in_sync(kiosk: Kiosk, dev: SimDevice) -> None:
    """ZeroMQ's slow joiner: heartbeat until the kiosk hears one."""
    def heard():
        dev.heartbeat()
        return dev.device in kiosk.engine.last_heartbeat
    wait_for(heard)


def label(kiosk, slot, device="case-01", camera="cam0"):
    return kiosk.engine.slots[(device, camera, slot)].label


def test_snapshot_on_start_live_updates_and_gap(tmp_path, device):
    device.labels("cam0", FULL)                       # before the kiosk exists: only a snapshot can tell it
    kiosk = start(tmp_path, [device.entry({"cam0": {"slots": SLOTS}})])
    try:
        wait_for(lambda: label(kiosk, "r0c0") == "ring")
        assert device.snapshots_served == 1
        in_sync(kiosk, device)
        device.labels("cam0", {**FULL, "r0c1": "empty"})
        inc = wait_for(lambda: kiosk.engine.open.get(("slot", "case-01", "cam0", "r0c1")))
        # The engine opens it, then the feed's thread stores it (under the service's lock, which this
        # test thread does not take): wait for the store rather than race it.
        wait_for(lambda: inc.id is not None)
        assert kiosk.history.incidents(open_only=True)[0]["slot"] == "r0c1"
        # Three messages lost on the way: the next one reveals the gap and a snapshot follows.
        device.labels("cam0", FULL, skip=3)
        wait_for(lambda: device.snapshots_served == 2)
        info = kiosk.feed.devices["case-01"].info
        assert info["gaps"] == 1 and info["bad"] == 0 and info["link"] == "up"
        wait_for(lambda: inc.state == "resolved")
        assert [r["label"] for r in kiosk.history.slot_changes(device="case-01")][:2] == ["ring", "empty"]
    finally:
        kiosk.stop()


def test_bad_messages_are_counted_and_skipped(tmp_path, device, caplog):
    kiosk = start(tmp_path, [device.entry({"cam0": {"slots": SLOTS}})],
                  policies={"empty_grace_s": 0, "heartbeat_s": 0.2, "stale_heartbeats": 2})
    try:
        in_sync(kiosk, device)
        good = device.labels("cam0", FULL)
        t = b"gemsight/case-01/cam0/labels"
        device.raw(t, b"{not json")
        device.raw(t, b"[" * 3000)
        device.raw(t, b'{"kind": "labels"}')
        device.raw(b"gemsight/case-01/cam9/labels", __import__("json").dumps(good).encode())   # topic lies
        device.raw(t, b"{}", b"extra frame")
        device.raw(b"gemsight/case-01/_/heartbeat", b'{"kind":"heartbeat","cameras":[1,2]}')
        device.raw(t, b"x" * (2 << 20))
        info = kiosk.feed.devices["case-01"].info
        wait_for(lambda: info["bad"] == 7)
        assert "bad message #1 skipped: message is not valid JSON" in caplog.text
        assert "labels message invalid at (message): 'schema_version' is a required property" in caplog.text
        assert "nested too deeply" in caplog.text and "arrived on topic gemsight/case-01/cam9/labels" in caplog.text
        assert "bad message #" not in caplog.text.split("#5")[-1]     # past the first five: every 100th
        # Over the hard limit: libzmq cuts the connection for good; the silence makes the kiosk reconnect.
        device.raw(t, b"x" * (17 << 20))
        device.labels("cam0", {**FULL, "r0c0": "empty"})
        wait_for(lambda: (device.heartbeat(), label(kiosk, "r0c0") == "empty")[1])
        assert kiosk.engine.open.get(("slot", "case-01", "cam0", "r0c0")) is not None
        assert info["reconnects"] == 1 and info["bad"] == 7
    finally:
        kiosk.stop()


def test_a_device_that_never_answers(tmp_path, device):
    silent = SimDevice("case-02", answer=False)
    try:
        kiosk = start(tmp_path, [device.entry({"cam0": {"slots": SLOTS}}), silent.entry({"cam0": {"slots": SLOTS}})])
        try:
            info = kiosk.feed.devices["case-02"].info
            wait_for(lambda: info["error"])
            assert info["error"] == f"snapshot endpoint {silent.snapshot_endpoint} did not answer within 0.5 s"
            assert kiosk.devices["case-02"]["error"] == info["error"]
            in_sync(kiosk, device)                     # the other device is served all along
            device.labels("cam0", FULL)
            wait_for(lambda: label(kiosk, "r1c0") == "watch")
        finally:
            kiosk.stop()
    finally:
        silent.close()


def test_a_device_whose_key_does_not_match(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    dev_pub, dev_sec = zmq.auth.create_certificates(keys, "device")
    other_pub, _ = zmq.auth.create_certificates(keys, "impostor")
    _, kiosk_sec = zmq.auth.create_certificates(keys, "kiosk")
    server = zmq.auth.load_certificate(dev_sec)
    device = SimDevice(curve=server)
    try:
        entry = device.entry({"cam0": {"slots": SLOTS}}, server_key=str(other_pub))   # pins the wrong key
        kiosk = start(tmp_path, [entry], curve={"client_secret_key": str(kiosk_sec)})
        try:
            info = kiosk.feed.devices["case-01"].info
            wait_for(lambda: info["link"] == "refused")
            assert "case-01 at tcp://127.0.0.1:" in info["error"]
            assert "the pinned server key does not match the device" in info["error"]
            assert label(kiosk, "r0c0") is None
        finally:
            kiosk.stop()
        # The right key: the same device is heard.
        kiosk = start(tmp_path, [{**entry, "server_key": str(dev_pub)}], curve={"client_secret_key": str(kiosk_sec)})
        try:
            device.labels("cam0", FULL)
            wait_for(lambda: label(kiosk, "r0c0") == "ring")
            assert kiosk.feed.devices["case-01"].info["link"] == "up"
        finally:
            kiosk.stop()
    finally:
        device.close()


def test_restart_keeps_incidents_planogram_and_counts(tmp_path, device):
    cfg = parse_config(config_dict(tmp_path, devices=[device.entry({"cam0": {"slots": SLOTS}})],
                                   policies={"empty_grace_s": 0}))
    kiosk = Kiosk(cfg, feed=False)
    kiosk.on_message("labels", device.labels("cam0", FULL))
    kiosk.on_message("labels", device.labels("cam0", {**FULL, "r1c0": "empty"}))
    kiosk.set_expected(("case-01", "cam0", "r0c0"), "repair", "mia")
    count_id = kiosk.run_count("mia")
    kiosk.stop()
    again = Kiosk(cfg, feed=False)
    try:
        assert [i.slot for i in again.engine.incidents()] == ["r1c0"]
        assert again.engine.planogram[("case-01", "cam0", "r0c0")] == "repair"
        assert again.history.count(count_id)["report"]["totals"]["missing"] == 1
        assert again.history.verify_audit() == 2
        assert [r["action"] for r in again.history.audit_rows()] == ["count", "planogram"]
    finally:
        again.stop()


def test_a_device_whose_allow_list_lacks_the_kiosk(tmp_path):
    """A real edge Publisher with CURVE and an allow-list: an unknown kiosk key is refused with the reason."""
    from edge.config.publish import CurveConfig
    from edge.link.keys import allow, create_key_pair
    from edge.link.publisher import Publisher

    server_pub, server_sec = create_key_pair(tmp_path / "device", "server")
    _, kiosk_sec = create_key_pair(tmp_path / "kiosk", "kiosk")
    other_pub, _ = create_key_pair(tmp_path / "other", "other")
    allowed = tmp_path / "clients"
    allowed.mkdir()
    allow(other_pub, allowed)
    pub = Publisher("case-01", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*",
                    curve=CurveConfig(server_secret_key=str(server_sec), allowed_clients=str(allowed)))
    try:
        entry = {"id": "case-01", "labels": pub.endpoint, "snapshot": pub.snapshot_endpoint,
                 "server_key": str(server_pub), "cameras": {"cam0": {"slots": SLOTS}}}
        kiosk = start(tmp_path, [entry], curve={"client_secret_key": str(kiosk_sec)})
        try:
            info = kiosk.feed.devices["case-01"].info
            # Refusal is declared after two refused handshakes, paced by libzmq's reconnect interval:
            # a few seconds on a loaded 2-core CI machine (5 s timed out there once).
            wait_for(lambda: info["link"] == "refused", timeout=20.0)
            assert "this client's key is not in its allow-list" in info["error"]
            assert kiosk.devices["case-01"]["link"] == "refused"
        finally:
            kiosk.stop()
    finally:
        pub.close()


def test_webhook_and_scheduled_counts(tmp_path, device):
    """Incident changes are POSTed to the webhook; counts run once at opening and once at closing."""
    import datetime as dt
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    posts = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            posts.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    now = [dt.datetime(2026, 12, 2, 8, 59, 30, tzinfo=dt.timezone.utc).timestamp()]   # a Wednesday
    cfg = parse_config(config_dict(tmp_path, devices=[device.entry({"cam0": {"slots": SLOTS}})],
                                   policies={"empty_grace_s": 0},
                                   hours={"open": "09:00", "close": "18:00", "timezone": "UTC"},
                                   webhook={"url": f"http://127.0.0.1:{server.server_port}/hook"}))
    kiosk = Kiosk(cfg, clock=lambda: now[0], feed=False).start()
    try:
        kiosk.on_message("labels", device.labels("cam0", FULL))
        kiosk.on_message("labels", device.labels("cam0", {**FULL, "r0c0": "empty"}))   # before opening: at once
        wait_for(lambda: posts)
        inc = posts[0]["incident"]
        assert (posts[0]["event"], inc["kind"], inc["slot"], posts[0]["store"]) == ("open", "missing", "r0c0",
                                                                                    "Test store")
        kiosk.tick()
        assert kiosk.history.counts() == []
        base = dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc).timestamp()
        for hhmmss in ((9, 0, 30), (9, 0, 31), (18, 0, 35), (18, 0, 36)):
            now[0] = base + hhmmss[0] * 3600 + hhmmss[1] * 60 + hhmmss[2]
            kiosk.tick()
        assert [(c["kind"], c["user"]) for c in kiosk.history.counts()] == [("closing", "schedule"),
                                                                            ("opening", "schedule")]
        kiosk.on_message("labels", device.labels("cam0", FULL))
        wait_for(lambda: [p for p in posts if p["event"] == "resolve"])
    finally:
        kiosk.stop()
        server.shutdown()
