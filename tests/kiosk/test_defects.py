"""The defects found by trying the kiosk as a store manager and as an attacker (issue 31), one test each,
driven below the web layer (engine, service, history, config). The web ones are in test_web_defects.py."""
from __future__ import annotations

import datetime as dt

from kiosk.config import parse_config
from kiosk.engine import Engine
from tests.helpers import labels_message as labels

from .feeds import config_dict, heartbeat

FULL = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "empty"}
T0 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc).timestamp()   # a Wednesday, noon UTC


def engine(tmp_path, **top):
    return Engine(parse_config(config_dict(tmp_path, **top)), now=T0)


def test_defect2_smash_and_grab_of_slots_read_wrong(tmp_path):
    """Three pieces read as another class, taken within 3 s: an immediate smash alarm, not silence."""
    e = engine(tmp_path, policies={"empty_grace_s": 600, "burst_slots": 2, "burst_window_s": 10})
    wrong = {"r0c0": "necklace", "r0c1": "necklace", "r1c0": "ring", "r1c1": "empty"}
    e.on_labels(labels(wrong, seq=0), T0)
    taken = dict(wrong)
    kinds = []
    for i, slot in enumerate(("r0c0", "r0c1", "r1c0")):
        taken[slot] = "empty"
        ch = e.on_labels(labels(taken, seq=1 + i), T0 + 1 + i)
        kinds += [inc.kind for ev, inc in ch.incidents if ev == "opened"]
    assert "smash" in kinds and ("smash", "case-01", "cam0") in e.open


def test_defect10_seq_range_after_an_edge_restart(tmp_path):
    """A slot missing since seq 1835, then the edge restarts (seq from 0): no 'seq 1835-195' range."""
    e = engine(tmp_path, policies={"empty_grace_s": 0})
    e.on_labels(labels(FULL, seq=1834), T0)
    e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=1835), T0 + 1)
    e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=195), T0 + 60)
    inc = e.open[("slot", "case-01", "cam0", "r0c0")]
    ev = inc.evidence
    assert ev["seq_first"] <= ev["seq_last"] == 195, ev


def _audited(tmp_path, rows: int = 4):
    from kiosk.history import History

    h = History(tmp_path)
    for i in range(rows):
        h.audit(100.0 + i, "mia", "count", {"count": i})
    h.close()
    return tmp_path / "kiosk.sqlite3"


def test_defect8_audit_truncation_is_caught(tmp_path):
    import sqlite3

    import pytest

    from kiosk.history import History, HistoryError

    db = sqlite3.connect(_audited(tmp_path))
    db.executescript("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id > 2;")
    db.close()
    with pytest.raises(HistoryError, match="audit log truncated: the checkpoint records row 3"):
        History(tmp_path, readonly=True).verify_audit()


def test_defect8_audit_recomputed_with_plain_sha256_is_caught(tmp_path):
    import hashlib
    import json
    import sqlite3

    import pytest

    from kiosk.history import GENESIS, History, HistoryError

    db = sqlite3.connect(_audited(tmp_path))
    db.executescript("DROP TRIGGER audit_no_update; UPDATE audit SET user = 'eve' WHERE id = 2;")
    prev = GENESIS
    for rid, ts, user, action, detail in db.execute("SELECT id, ts, user, action, detail FROM audit ORDER BY id"):
        body = json.dumps([prev, repr(float(ts)), user, action, detail], separators=(",", ":"))
        digest = hashlib.sha256(body.encode()).hexdigest()
        db.execute("UPDATE audit SET prev = ?, hash = ? WHERE id = ?", (prev, digest, rid))
        prev = digest
    db.commit()
    db.close()
    with pytest.raises(HistoryError, match="audit log broken at row 1: its content does not match its hash"):
        History(tmp_path, readonly=True).verify_audit()


def test_defect8_acknowledgement_edits_are_caught(tmp_path):
    import sqlite3

    import pytest

    from kiosk.history import History, HistoryError
    from kiosk.service import Kiosk

    k = Kiosk(parse_config(config_dict(tmp_path, policies={"empty_grace_s": 0})), feed=False, clock=lambda: T0)
    k.on_message("labels", labels({**FULL, "r0c0": "empty"}, seq=0))
    inc, = k.incidents()
    k.acknowledge(inc["id"], "mia", "shown to a customer")
    assert k.history.verify_audit() == 1
    k.stop()
    db = sqlite3.connect(tmp_path / "state" / "kiosk.sqlite3")
    db.execute("UPDATE incidents SET ack_note = 'nothing to see', ack_by = 'leo'")
    db.commit()
    db.close()
    with pytest.raises(HistoryError, match=f"incident {inc['id']}: its acknowledgement \\(by leo\\) is not the one"):
        History(tmp_path / "state", readonly=True).verify_audit()


def test_defect7_off_loopback_needs_tls_or_insecure(tmp_path, capsys, caplog):
    import yaml

    from kiosk.cli import exposure, main

    path = tmp_path / "kiosk.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path, web={"host": "0.0.0.0", "port": 0})))
    assert main(["run", "--config", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "gemsight-kiosk: error: web.host 0.0.0.0 is not loopback: set web.tls_cert and web.tls_key to serve HTTPS, "
        "or pass --insecure to send passwords and session cookies in clear")
    cfg = parse_config(config_dict(tmp_path, web={"host": "0.0.0.0"}))
    assert exposure(cfg, insecure=True) == {} and "INSECURE: serving plain HTTP on 0.0.0.0" in caplog.text
    (tmp_path / "c.pem").write_text("cert")
    cfg = parse_config(config_dict(tmp_path, web={"host": "0.0.0.0", "tls_cert": "./c.pem", "tls_key": "./k.pem"}),
                       base_dir=tmp_path)
    import pytest

    from edge.errors import ConfigError
    with pytest.raises(ConfigError, match=f"web.tls_key: cannot read {tmp_path}/k.pem"):
        exposure(cfg, insecure=False)
    (tmp_path / "k.pem").write_text("key")
    assert exposure(cfg, insecure=False) == {"ssl_certfile": str(tmp_path / "c.pem"), "ssl_keyfile": str(tmp_path / "k.pem")}


def test_defect10_a_stale_cameras_grid_is_greyed(tmp_path):
    from kiosk.service import Kiosk

    now = [T0]
    k = Kiosk(parse_config(config_dict(tmp_path, policies={"empty_grace_s": 600})), feed=False, clock=lambda: now[0])
    try:
        k.on_message("heartbeat", heartbeat({"cam0": 0}))
        k.on_message("labels", labels(FULL, seq=0))
        case, = k.state()["cases"]
        assert case["stale"] is False and case["slots"][0]["cond"] == "ok"
        now[0] += 10                                   # no heartbeat for 10 s (3 x 1 s allowed)
        k.tick()
        case, = k.state()["cases"]
        assert case["stale"] is True and "no heartbeat from device case-01" in case["camera_health"]["reason"]
        from kiosk.words import when
        assert case["offline_text"].startswith(f"Camera offline since {when(T0)[11:]} (no heartbeat from device")
        assert [s["where"] for s in case["slots"]] == ["top row, leftmost", "top row, rightmost",
                                                       "bottom row, leftmost", "bottom row, rightmost"]
    finally:
        k.stop()


def test_defect10_user_has_every_verb(tmp_path, capsys, monkeypatch):
    import io

    import yaml

    from kiosk.cli import main
    from kiosk.history import History

    path = tmp_path / "kiosk.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path)))
    cfg = str(path)
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["user", "add", "mia", "--role", "admin", "--password-stdin", "--config", cfg]) == 0
    h = History(tmp_path / "state")
    h.add_session("tok", "mia", "csrf", T0, T0 + 3600, "127.0.0.1")
    h.close()
    assert main(["user", "list", "--config", cfg]) == 0
    assert "mia                  admin    active   1 session(s)\n1 user(s)" in capsys.readouterr().out
    assert main(["user", "disable", "mia", "--config", cfg]) == 0
    assert main(["user", "list", "--config", cfg]) == 0
    assert "disabled 0 session(s)" in capsys.readouterr().out
    assert main(["user", "enable", "mia", "--config", cfg]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("battery staple\n"))
    assert main(["user", "passwd", "mia", "--password-stdin", "--config", cfg]) == 0
    assert main(["user", "end-sessions", "mia", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "password of mia reset" in out and "user mia: 0 session(s) ended" in out
    assert main(["user", "disable", "nobody", "--config", cfg]) == 2
    assert capsys.readouterr().err.strip() == "gemsight-kiosk: error: no user 'nobody'"
    assert main(["audit", "verify", "--config", cfg]) == 0


def test_a_non_ascii_csrf_token_is_wrong_not_an_error():
    """Found by fuzzing the HTTP routes: hmac.compare_digest raised TypeError on a non-ASCII token (500)."""
    from kiosk.auth import csrf_ok

    assert csrf_ok("token", "token") and not csrf_ok("token", "tökén") and not csrf_ok("token", "\ud800")
    assert not csrf_ok(None, "x") and not csrf_ok("x", "")
