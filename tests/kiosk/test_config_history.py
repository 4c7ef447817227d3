"""Kiosk config (every bad field named) and the SQLite history (WAL, audit chain, retention, restart)."""
from __future__ import annotations

import sqlite3

import pytest
import yaml

from edge.errors import ConfigError
from kiosk.config import load_config, parse_config
from kiosk.example import EXAMPLE
from kiosk.history import History, HistoryError

from .feeds import config_dict


def test_example_config_is_valid(tmp_path):
    (tmp_path / "kiosk.yaml").write_text(EXAMPLE)
    cfg = load_config(tmp_path / "kiosk.yaml")
    assert cfg.web.host == "127.0.0.1" and cfg.policies.empty_grace_s == 600 and cfg.policies.burst_slots == 2
    assert cfg.policies.stale_heartbeats == 3 and cfg.retention_days == 400
    assert cfg.devices[0].server_key == "case-01.key"                      # a credential name stays a name
    assert cfg.curve.client_secret_key == "kiosk.key_secret"               # a credential name stays a name


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(stroe="x"), "stroe: unknown field"),
    (lambda d: d.pop("curve"), "curve: Field required"),
    (lambda d: d["devices"][0].update(id="bad/id"), "devices.0.id: String should match"),
    (lambda d: d["devices"][0].update(labels="http://x"), "devices.0.labels: 'http://x' is not a ZeroMQ endpoint"),
    (lambda d: d["devices"][0].update(snapshot="tcp://127.0.0.1"), "devices.0.snapshot: 'tcp://127.0.0.1' is not a"),
    (lambda d: d["devices"][0]["cameras"]["cam0"]["slots"].update(r0c0="sould"), None),
    (lambda d: d["devices"][0]["cameras"]["cam0"]["slots"].update(r0c0="empty"), "devices.0.cameras.cam0.slots: slot r0c0: planogram value 'empty'"),
    (lambda d: d["devices"][0].update(labels="tcp://10.0.0.5:5555"), "devices.0.labels: plaintext (curve: null) is refused"),
    (lambda d: d.update(curve={"client_secret_key": "k"}), "devices.0.server_key: required with CURVE"),
    (lambda d: d.update(devices=[d["devices"][0], d["devices"][0]]), "devices: device ids repeat: ['case-01']"),
    (lambda d: d.update(policies={"empty_grace_s": -1}), "policies.empty_grace_s: Input should be greater"),
    (lambda d: d.update(hours={"open": "19:00", "close": "09:00"}), "hours: open 19:00 must be before close 09:00"),
    (lambda d: d.update(hours={"open": "9", "close": "18:00"}), "hours.open: '9' is not a time"),
    (lambda d: d.update(hours={"open": "09:00", "close": "18:00", "timezone": "Mars/Base"}), "hours.timezone: unknown time zone"),
    (lambda d: d.update(web={"host": "kiosk.local"}), "web.host: 'kiosk.local' is not an IP address"),
    (lambda d: d.update(webhook={"url": "ftp://x"}), "webhook.url: 'ftp://x' is not an http(s) URL"),
    (lambda d: d.update(state_dir="/tmp/a\x00b"), "state_dir: contains a NUL character"),
    (lambda d: d["devices"][0]["cameras"]["cam0"].update(title="\ud800"),
     "devices.0.cameras.cam0.title: contains a lone surrogate"),
])
def test_bad_config_names_the_field(tmp_path, change, message):
    data = config_dict(tmp_path)
    change(data)
    if message is None:   # a class name the models do not know is allowed (models may add classes)
        parse_config(data)
        return
    with pytest.raises(ConfigError) as err:
        parse_config(data, "kiosk.yaml")
    assert f"kiosk.yaml: {message}" in str(err.value)


def test_bad_files(tmp_path):
    p = tmp_path / "kiosk.yaml"
    with pytest.raises(ConfigError, match="kiosk config not found"):
        load_config(p)
    p.write_bytes(b"store: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)
    p.write_text("store: [\n")
    with pytest.raises(ConfigError, match="line 2: not valid YAML"):
        load_config(p)
    p.write_text("[" * 5000)
    with pytest.raises(ConfigError, match="kiosk.yaml"):
        load_config(p)
    p.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(p)
    p.write_text(yaml.safe_dump(config_dict(tmp_path)))
    assert load_config(p).store == "Test store"


def test_history_audit_chain_detects_edits(tmp_path):
    h = History(tmp_path)
    assert h._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for i in range(3):
        h.audit(100.0 + i, "mia", "ack", {"incident": i, "note": "ok"})
    assert h.verify_audit() == 3
    with pytest.raises(HistoryError, match="append-only"):
        h.audit_rows()  # reads are fine
        h._exec("UPDATE audit SET user = 'eve' WHERE id = 2")
    h.close()
    # Someone with the file drops the triggers and edits a row: verify names the row.
    db = sqlite3.connect(tmp_path / "kiosk.sqlite3")
    db.executescript("DROP TRIGGER audit_no_update; UPDATE audit SET detail = '{}' WHERE id = 2;")
    db.close()
    with pytest.raises(HistoryError, match="row 2: its content does not match"):
        History(tmp_path, readonly=True).verify_audit()


def test_history_keeps_state_and_prunes(tmp_path):
    h = History(tmp_path)
    h.add_slot_changes([(1.0, "d", "c", "s", "empty", 0.9, 4), (5e6, "d", "c", "s", "ring", 0.9, 5)])
    iid = h.save_incident({"kind": "missing", "device": "d", "camera": "c", "slot": "s", "state": "open",
                           "opened_at": 1.0, "updated_at": 1.0, "reason": "r", "evidence": {"seq_first": 4}})
    h.set_planogram(2.0, "mia", ("d", "c", "s"), "ring", "sold")
    h.close()
    h = History(tmp_path)                                  # a restart finds everything
    assert h.incidents(open_only=True)[0]["id"] == iid and h.incidents()[0]["evidence"] == {"seq_first": 4}
    assert h.planogram_overrides() == {("d", "c", "s"): "sold"}
    assert h.prune(now=5e6 + 86400, retention_days=2) == 2  # the old slot change and the planogram edit
    assert [r["label"] for r in h.slot_changes()] == ["ring"]
    assert h.planogram_overrides() == {("d", "c", "s"): "sold"}   # the current planogram stays


def test_history_refuses_a_missing_database_readonly(tmp_path):
    with pytest.raises(HistoryError, match="no kiosk history database"):
        History(tmp_path / "nowhere", readonly=True)


def test_slot_changes_gain_a_state_and_older_histories_keep_their_rows(tmp_path):
    import sqlite3
    db = sqlite3.connect(tmp_path / "kiosk.sqlite3")      # a history from before slot states
    db.executescript("CREATE TABLE slot_changes (id INTEGER PRIMARY KEY, ts REAL NOT NULL, device TEXT NOT NULL, "
                     "camera TEXT NOT NULL, slot TEXT NOT NULL, label TEXT NOT NULL, score REAL, seq INTEGER);"
                     "INSERT INTO slot_changes (ts, device, camera, slot, label, score, seq) "
                     "VALUES (1.0, 'd', 'c', 's', 'ring', 0.9, 4);")
    db.close()
    h = History(tmp_path)
    h.add_slot_changes([(2.0, "d", "c", "s", "ring", 0.8, 5, "empty")])
    assert [(r["label"], r["state"]) for r in h.slot_changes()] == [("ring", "empty"), ("ring", None)]
