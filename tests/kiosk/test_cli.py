"""gemsight-kiosk: example-config, user add, audit verify, check against a live and a silent device."""
from __future__ import annotations

import io
import sqlite3

import yaml

from kiosk.cli import main

from .feeds import SimDevice, config_dict


def write_config(tmp_path, devices=None, **top):
    path = tmp_path / "kiosk.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path, devices=devices, **top)))
    return str(path)


def test_example_config_user_add_and_audit(tmp_path, capsys, monkeypatch):
    assert main(["example-config"]) == 0
    assert "planogram" not in capsys.readouterr().err
    cfg = write_config(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["user", "add", "mia", "--role", "manager", "--password-stdin", "--config", cfg]) == 0
    assert "user mia (manager) saved" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "add", "leo", "--role", "viewer", "--password-stdin", "--config", cfg]) == 2
    assert capsys.readouterr().err.strip() == "gemsight-kiosk: error: the password must have at least 8 characters"
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["user", "add", "bad/name", "--role", "viewer", "--password-stdin", "--config", cfg]) == 2
    assert "user name 'bad/name' is not valid" in capsys.readouterr().err
    assert main(["audit", "verify", "--config", cfg]) == 0
    assert "1 rows, hash chain intact" in capsys.readouterr().out
    assert main(["incidents", "--config", cfg]) == 0
    assert capsys.readouterr().out == "0 incident(s)\n"
    from kiosk.history import History
    h = History(tmp_path / "state")
    h.save_incident({"kind": "missing", "device": "case-01", "camera": "cam0", "slot": "r0c0", "state": "resolved",
                     "opened_at": 1.0, "updated_at": 2.0, "resolved_at": 2.0, "reason": "r0c0 should hold ring",
                     "evidence": {"resolution": "slot r0c0 shows ring again"}, "ack_by": "mia", "ack_note": "seen"})
    h.close()
    assert main(["incidents", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "#1 missing  resolved" in out and "r0c0 should hold ring; acknowledged by mia: seen" in out
    assert "(resolved: slot r0c0 shows ring again)" in out and out.endswith("1 incident(s)\n")
    db = sqlite3.connect(tmp_path / "state" / "kiosk.sqlite3")
    db.executescript("DROP TRIGGER audit_no_update; UPDATE audit SET user = 'eve';")
    db.close()
    assert main(["audit", "verify", "--config", cfg]) == 2
    assert "audit log broken at row 1: its content does not match its hash" in capsys.readouterr().err


def test_bad_config_is_one_line_per_problem(tmp_path, capsys):
    cfg = write_config(tmp_path, policies={"burst_slots": 0}, stroe="x")
    assert main(["check", "--config", cfg]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("gemsight-kiosk: error: ") and any("stroe: unknown field" in line for line in err)
    assert any("policies.burst_slots: Input should be greater than or equal to 1" in line for line in err)


def test_check_reaches_every_device(tmp_path, capsys):
    live, silent = SimDevice("case-01"), SimDevice("case-02", answer=False)
    try:
        live.labels("cam0", {"r0c0": "ring"})
        cams = {"cam0": {"slots": {"r0c0": "ring"}}}
        cfg = write_config(tmp_path, devices=[live.entry({"cam0": {"slots": {"r0c0": "ring", "r9c9": "ring"}}}),
                                              silent.entry(cams)])
        assert main(["check", "--config", cfg, "--timeout", "0.5"]) == 1
        out = capsys.readouterr().out
        assert "case-01: ok (plaintext, snapshot with 1 camera(s); cam0: planogram slots the camera does not " \
               "report: ['r9c9'])" in out
        assert f"case-02: FAILED: case-02: snapshot endpoint {silent.snapshot_endpoint} did not answer within 0.5 s" in out
    finally:
        live.close()
        silent.close()


def test_run_serves_notifies_systemd_and_stops_on_sigterm(tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    device = SimDevice()
    try:
        cfg = write_config(tmp_path, devices=[device.entry({"cam0": {"slots": {"r0c0": "ring"}}})], web={"port": 0})
        proc = subprocess.Popen([sys.executable, "-m", "kiosk", "run", "--config", cfg], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**__import__("os").environ,
                                                                        "NOTIFY_SOCKET": str(tmp_path / "notify")})
        try:
            line = proc.stdout.readline()
            assert line.startswith("gemsight kiosk: http://127.0.0.1:"), proc.stderr.read() if not line else line
            url = line.split(": ", 1)[1].strip()
            assert b"READY=1" in notify.recv(4096)
            with urllib.request.urlopen(url + "healthz", timeout=5) as r:
                assert r.status == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) in (0, -signal.SIGTERM)    # uvicorn re-raises SIGTERM once it shut down
            err = proc.stderr.read()
            assert "no users yet: add one with `gemsight-kiosk user add" in err and "kiosk stopped" in err
            assert "Traceback" not in err
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        device.close()
        notify.close()


def test_run_refuses_a_busy_port_and_a_missing_key(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cfg = write_config(tmp_path, web={"port": busy.getsockname()[1]})
        assert main(["run", "--config", cfg]) == 2
        assert f"web: cannot listen on 127.0.0.1:{busy.getsockname()[1]} (Address already in use)" in \
            capsys.readouterr().err
    cams = {"cam0": {"slots": {"r0c0": "ring"}}}
    cfg = write_config(tmp_path, devices=[{"id": "case-01", "labels": "tcp://127.0.0.1:1", "server_key": "./nope.key",
                                           "cameras": cams}], curve={"client_secret_key": "./kiosk.key_secret"})
    assert main(["check", "--config", cfg]) == 1
    assert f"case-01: FAILED: CURVE server key file (--curve-server-key) '{tmp_path}/nope.key' does not exist" in \
        capsys.readouterr().out
