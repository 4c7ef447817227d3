"""The web app and API on a real server: login, roles, CSRF, rate limit, incidents, planogram, counts,
CSV, server-sent events; refusals are one clear line and the kiosk keeps serving."""
from __future__ import annotations

import csv
import io
import json
import re

import httpx
import pytest

from kiosk.config import parse_config

from .feeds import Served, SimDevice, add_users, config_dict, wait_for

SLOTS = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "sold"}
FULL = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "empty"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    device = SimDevice()
    cfg = parse_config(config_dict(tmp, devices=[device.entry({"cam0": {"slots": SLOTS, "title": "Window <left>"}})],
                                   policies={"empty_grace_s": 0}, web={"login_attempts": 3, "screen": []}))
    served = Served(cfg)
    add_users(served.kiosk.history)
    device.labels("cam0", FULL)
    wait_for(lambda: (device.heartbeat(), served.kiosk.engine.slots[("case-01", "cam0", "r0c0")].label)[1])
    yield served, device
    served.close()
    device.close()


def client(site) -> httpx.Client:
    return httpx.Client(base_url=site[0].url, follow_redirects=False, timeout=5)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" (?:value|content)="([^"]+)"', html).group(1)


def login(site, name: str, password: str = "correct horse") -> tuple[httpx.Client, str]:
    c = client(site)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"user": name, "password": password, "csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    page = c.get("/")
    return c, csrf_of(page.text)


def test_everything_but_healthz_needs_a_login(site):
    c = client(site)
    assert c.get("/healthz").json()["ok"] is True
    assert c.get("/").headers["location"] == "/login"
    for path in ("/api/state", "/api/incidents", "/api/counts", "/api/events", "/api/counts/1.csv"):
        r = c.get(path)
        assert (r.status_code, r.json()) == (401, {"error": "login required"}), path
    r = c.post("/api/counts", json={})
    assert r.status_code == 401
    csp = c.get("/login").headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_login_refusals(site):
    c = client(site)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"user": "mia", "password": "correct horse"})
    assert r.status_code == 403 and "missing or wrong CSRF token" in r.text
    r = c.post("/login", data={"user": "mia", "password": "wrong", "csrf": token})
    assert r.status_code == 401 and "wrong user name or password" in r.text
    r = c.post("/login", data={"user": "nobody", "password": "wrong", "csrf": token})
    assert r.status_code == 401 and "wrong user name or password" in r.text   # no hint that the name is unknown


def test_viewer_looks_but_cannot_act(site):
    c, token = login(site, "leo")
    state = c.get("/api/state").json()
    case, = state["cases"]
    assert case["title"] == "Window <left>" and [s["slot"] for s in case["slots"]] == ["r0c0", "r0c1", "r1c0", "r1c1"]
    assert "Window &lt;left&gt;" in c.get("/").text                            # escaped in the page
    for path, body in (("/api/incidents/1/ack", {"note": "x"}), ("/api/counts", {}),
                       ("/api/planogram", {"device": "case-01", "camera": "cam0", "slot": "r0c0", "expected": "sold"})):
        r = c.post(path, json=body)
        assert (r.status_code, r.json()["error"]) == (403, "missing or wrong CSRF token (reload the page)"), path
        r = c.post(path, json=body, headers={"X-CSRF-Token": token})
        assert r.status_code == 403 and r.json()["error"].startswith("the manager role is needed to"), path
    r = c.post("/counts", data={"csrf": token})
    assert r.status_code == 403 and "the manager role is needed to run a count" in r.text
    r = c.post("/api/counts", content=b"x" * 70_000, headers={"X-CSRF-Token": token, "content-type": "text/plain"})
    assert (r.status_code, r.json()["error"]) == (413, "request body over 65536 bytes")


def test_manager_acknowledges_edits_and_counts(site):
    served, device = site
    c, token = login(site, "mia")
    h = {"X-CSRF-Token": token}
    device.labels("cam0", {**FULL, "r0c1": "empty"})
    inc = wait_for(lambda: [i for i in c.get("/api/incidents").json()["open"] if i["slot"] == "r0c1"])[0]
    assert inc["kind"] == "missing" and inc["evidence"]["counts_before"]["ring"] == 2
    for body, error in (({"note": ""}, "a note is required"), ({"note": "x" * 600}, "at most 500"),
                        ("[1]", "request body must be a JSON object")):
        r = c.post(f"/api/incidents/{inc['id']}/ack", json=body, headers=h)
        assert r.status_code == 400 and error in r.json()["error"]
    r = c.post("/api/incidents/99999/ack", json={"note": "x"}, headers=h)
    assert r.status_code == 400 and r.json()["error"] == "incident 99999 is not open (unknown or already resolved)"
    r = c.post(f"/api/incidents/{inc['id']}/ack", json={"note": "shown to a customer"}, headers=h)
    assert r.json()["state"] == "acknowledged" and r.json()["ack_by"] == "mia"
    r = c.post("/api/planogram", json={"device": "case-01", "camera": "cam0", "slot": "r0c1", "expected": "<b>"},
               headers=h)
    assert r.status_code == 400 and "is not a class of the model m 1.0.0" in r.json()["error"]
    r = c.post("/api/planogram", json={"device": "case-01", "camera": "cam0", "slot": "r0c1",
                                       "expected": "out for showing"}, headers=h)
    assert r.json()["cond"] == "state"
    wait_for(lambda: not c.get("/api/incidents").json()["open"] or
             all(i["slot"] != "r0c1" for i in c.get("/api/incidents").json()["open"]))
    count = c.post("/api/counts", json={}, headers=h).json()
    assert count["user"] == "mia" and count["report"]["totals"]["expected"] == 2   # r0c1 is out for showing
    text = c.get(f"/api/counts/{count['id']}.csv").text
    rows = list(csv.DictReader(io.StringIO("\n".join(line for line in text.splitlines() if not line.startswith("#")))))
    assert [r["class"] for r in rows] == ["ring", "watch", ""] and rows[-1]["case"] == "TOTAL"
    assert f"# sha256: {count['digest']}" in text
    actions = [a["action"] for a in served.kiosk.history.audit_rows()]
    assert actions[:3] == ["count", "planogram", "acknowledge"]
    assert served.kiosk.history.verify_audit() >= 5       # two users, logins, the actions above
    for path in ("/counts", f"/counts/{count['id']}", "/history", "/incidents"):
        assert c.get(path).status_code == 200, path


def test_server_sent_events(site):
    served, device = site
    c, _ = login(site, "leo")
    with c.stream("GET", "/api/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "event: hello"
        device.labels("cam0", {**FULL, "r1c0": "ring"})
        events, event = {}, None
        for line in lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and '"slot":"r1c0"' in line:
                events[event] = json.loads(line[6:])
                if {"slot", "incident"} <= set(events):
                    break
        assert events["slot"]["label"] == "ring" and events["slot"]["cond"] == "wrong"
        assert events["incident"]["event"] == "opened" and events["incident"]["kind"] == "wrong"


def test_a_removed_user_loses_the_session(site):
    served, _ = site
    from kiosk.auth import add_user
    add_user(served.kiosk.history, "tmp", "manager", "correct horse", 0.0)
    c, _ = login(site, "tmp")
    assert c.get("/api/state").status_code == 200
    served.kiosk.history._exec("DELETE FROM users WHERE name = 'tmp'")
    assert c.get("/api/state").status_code == 401


def test_login_rate_limit(site):
    """Last: it locks 127.0.0.1 out for the rest of the module."""
    c = client(site)
    token = csrf_of(c.get("/login").text)
    codes = [c.post("/login", data={"user": "leo", "password": "nope", "csrf": token}).status_code for _ in range(4)]
    assert codes[0] == 401 and codes[-1] == 429    # 3 failures of leo from this address
    r = c.post("/login", data={"user": "leo", "password": "correct horse", "csrf": token})
    assert r.status_code == 429 and "too many failed logins; try again in" in r.text
    assert int(r.headers["retry-after"]) > 0
    assert c.get("/healthz").status_code == 200                   # and the kiosk keeps serving
