"""The demo's kiosk against a real edge Publisher with CURVE and an allow-list: it starts, is let in,
sees a smash-and-grab, and the demo's summary lists the incidents."""
from __future__ import annotations

import json
import socket
import sqlite3
import time

from deploy.demo import make_link_keys
from deploy.demo_kiosk import start_kiosk, stop_kiosk
from edge.config.publish import CurveConfig
from edge.link.publisher import Publisher
from tests.helpers import labels_message as labels

FULL = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "brooch", "r1c2": "empty"}


def _two_free_ports() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise AssertionError("no two consecutive free ports")


def test_demo_kiosk_sees_the_device_over_curve(tmp_path, capsys):
    root, workdir = tmp_path / "device", tmp_path / "demo"
    workdir.mkdir()
    keys = make_link_keys(root, workdir)
    truth = workdir / "case.truth.jsonl"
    truth.write_text(json.dumps({"frame": 0, "slots": FULL, "hand": []}) + "\n")
    port = _two_free_ports()
    kiosk = pub = None
    try:
        kiosk = start_kiosk(workdir, keys, port, truth)     # as in the demo: before the edge loop binds
        pub = Publisher("demo-case", f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}", heartbeat_s=0.2,
                        curve=CurveConfig(server_secret_key=str(keys["server_secret"]),
                                          allowed_clients=str(keys["allowed_clients"])))
        assert "gemsight kiosk: http://127.0.0.1:" in capsys.readouterr().out
        assert (keys["allowed_clients"] / "demo-kiosk.key").is_file()
        state = FULL

        def publish_until(done, timeout=10):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                pub.publish_labels("cam0", labels(state, device="demo-case", camera="cam0"))
                pub.maybe_heartbeat({"cam0": {"fps": 10.0}})
                if done():
                    return
                time.sleep(0.1)
            raise AssertionError("timed out")

        db = workdir / "kiosk" / "state" / "kiosk.sqlite3"
        publish_until(lambda: db.is_file())
        time.sleep(1.0)                                   # connected, in sync, planogram full
        state = {**FULL, "r0c0": "empty", "r0c1": "empty", "r1c0": "empty"}   # three pieces at once

        def opened(kind):
            with sqlite3.connect(db) as con:
                return con.execute("SELECT COUNT(*) FROM incidents WHERE kind = ?", (kind,)).fetchone()[0]
        publish_until(lambda: opened("smash"))
        assert not opened("missing")                      # the case's alarm at once; each slot keeps its grace
        publish_until(lambda: opened("missing") == 3)     # ... of 3 s here
    finally:
        stop_kiosk(kiosk, workdir)
        if pub is not None:
            pub.close()
    out = capsys.readouterr().out
    assert "Incidents the kiosk saw (gemsight-kiosk incidents):" in out
    assert "smash" in out and "3 slots of Demo case emptied" in out
    assert "Demo case slot r0c0 should hold ring but is empty" in out


def test_demo_staff_acts_on_the_kiosks_page_and_the_truth_is_listed(tmp_path):
    """The demo's staff logs in to the demo kiosk like a manager and marks a sold piece sold through the
    page's API; the summary lists what the day really contains."""
    from deploy.demo_staff import KioskPage, Staff, truth_lines

    root, workdir = tmp_path / "device", tmp_path / "demo"
    workdir.mkdir()
    keys = make_link_keys(root, workdir)
    day = [{"t": 0.0, "kind": "day", "fps": 5.0, "grace_s": 30.0},
           *({"t": 0.0, "kind": "stock", "slots": [s], "class": c, "piece": f"p{i}"} for i, (s, c) in
             enumerate(FULL.items()) if c != "empty"),
           {"t": 12.0, "kind": "sale", "slots": ["r0c1"]}, {"t": 15.0, "action": "mark_sold", "slot": "r0c1"},
           {"t": 20.0, "kind": "theft", "slots": ["r1c0"]}, {"t": 30.0, "kind": "hand_pass", "slots": ["r0c0"]}]
    events = workdir / "case.events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in day))
    port = _two_free_ports()
    kiosk = pub = None
    try:
        kiosk = start_kiosk(workdir, keys, port, events, speed=3.0)
        pub = Publisher("demo-case", f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}", heartbeat_s=0.2,
                        curve=CurveConfig(server_secret_key=str(keys["server_secret"]),
                                          allowed_clients=str(keys["allowed_clients"])))
        db = workdir / "kiosk" / "state" / "kiosk.sqlite3"
        deadline = time.monotonic() + 10
        while not db.is_file() and time.monotonic() < deadline:
            pub.publish_labels("cam0", labels(FULL, device="demo-case", camera="cam0"))
            time.sleep(0.1)
        clock = [0.0]
        staff = Staff(day, KioskPage(kiosk.url, "demo", "gemsight-demo"), lambda: clock[0], "demo-case", "cam0")
        staff.start()
        clock[0] = 16.0
        deadline = time.monotonic() + 10
        while not staff.done and time.monotonic() < deadline:
            time.sleep(0.1)
        staff.stop()
    finally:
        stop_kiosk(kiosk, workdir)
        if pub is not None:
            pub.close()
    assert staff.done and "marked r0c1 sold" in staff.done[0]
    with sqlite3.connect(workdir / "kiosk" / "state" / "kiosk.sqlite3") as con:
        assert ("sold",) in con.execute("SELECT expected FROM planogram WHERE slot = 'r0c1'").fetchall()
    lines = truth_lines(day)
    assert lines[0].endswith("theft  r1c0: piece taken and not returned")
    assert lines[-1] == "no incident: 1 hand pass, 0 lift returns, 1 sale, 0 restocks"
