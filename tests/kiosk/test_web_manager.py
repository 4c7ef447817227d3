"""The manager's pages on a real server: a slot's piece (class, SKU, price, photo), a count per slot with
its value, reviewed and then signed, printable; bad input refused in one line and nothing stored."""
from __future__ import annotations

import pytest

from kiosk.config import parse_config

from .feeds import Served, SimDevice, add_users, config_dict, wait_for
from .test_web_defects import FULL, SLOTS, client, csrf_of, login

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("manager")
    device = SimDevice()
    cfg = parse_config(config_dict(tmp, devices=[device.entry({"cam0": {"slots": SLOTS, "title": "Window"}})],
                                   policies={"empty_grace_s": 0}, web={"screen": []}))
    served = Served(cfg)
    add_users(served.kiosk.history)
    device.labels("cam0", FULL)
    wait_for(lambda: (device.heartbeat(), served.kiosk.engine.slots[("case-01", "cam0", "r0c0")].label)[1])
    yield served, device
    served.close()
    device.close()


def test_a_slots_piece_from_its_page(site):
    served, _ = site
    c, token = login(site, "mia")
    page = c.get("/slots/case-01/cam0/r0c1").text
    assert "<h1>Window, top row, rightmost</h1>" in page and "<option selected>ring</option>" in page
    r = c.post("/slots/case-01/cam0/r0c1", data={"csrf": token, "expected": "Ring", "sku": "R-1042",
                                                   "price": "1'250.50"}, files={"photo": ("p.png", PNG, "image/png")})
    assert r.status_code == 303
    piece = served.kiosk.history.piece(("case-01", "cam0", "r0c1"))
    assert (piece["sku"], piece["price"], piece["has_photo"]) == ("R-1042", 1250.5, 1)
    photo = c.get("/slots/case-01/cam0/r0c1/photo")
    assert photo.headers["content-type"] == "image/png" and photo.content == PNG
    h = {"X-CSRF-Token": token}
    for data, files, error in (({"expected": "rnig"}, None, "did you mean 'ring'?"),
                               ({"expected": "ring", "price": "cheap"}, None, "price 'cheap' is not a number"),
                               ({"expected": "ring", "price": "-1"}, None, "must be between 0 and"),
                               ({"expected": "ring", "sku": "x" * 65}, None, "SKU is 65 characters; at most 64"),
                               ({"expected": "ring"}, {"photo": ("p.exe", b"MZ\x90\x00", "image/png")},
                                "photo is not a JPEG, PNG or WebP picture")):
        r = c.post("/api/slots/case-01/cam0/r0c1", data=data, files=files, headers=h)
        assert r.status_code == 400 and error in r.json()["error"], (data, r.text)
    assert served.kiosk.history.piece(("case-01", "cam0", "r0c1"))["sku"] == "R-1042"   # nothing stored
    assert c.get("/slots/case-01/cam0/nope").status_code == 404
    viewer, vt = login(site, "leo")
    r = viewer.post("/api/slots/case-01/cam0/r0c1", data={"expected": "ring"}, headers={"X-CSRF-Token": vt})
    assert r.status_code == 403 and r.json()["error"] == "the manager role is needed to set a slot's piece"


def test_a_count_per_slot_with_value_reviewed_then_signed(site):
    served, device = site
    c, token = login(site, "mia")
    h = {"X-CSRF-Token": token}
    c.post("/api/slots/case-01/cam0/r0c0", data={"expected": "ring", "sku": "R-1", "price": "100"}, headers=h)
    c.post("/api/slots/case-01/cam0/r1c0", data={"expected": "watch", "sku": "W-9", "price": "900"}, headers=h)
    device.labels("cam0", {**FULL, "r1c0": "empty"})
    wait_for(lambda: served.kiosk.engine.slots[("case-01", "cam0", "r1c0")].label == "empty")
    count = c.post("/api/counts", json={}, headers=h).json()
    assert count["signed_by"] is None
    rows = {s["slot"]: s for s in count["report"]["slots"]}
    assert rows["r1c0"]["status"] == "missing" and rows["r1c0"]["where"] == "bottom row, leftmost"
    assert rows["r1c1"]["status"] == "state" and rows["r0c0"]["status"] == "ok"
    assert count["report"]["value"]["missing"] == 900 and count["report"]["value"]["present"] >= 100
    page = c.get(f"/counts/{count['id']}").text
    assert "Not signed yet" in page and 'id="sign-form"' in page and "@media print" in c.get("/static/kiosk.css").text
    r = c.post(f"/api/counts/{count['id']}/sign", json={}, headers=h)
    assert (r.status_code, r.json()["error"]) == (400, "tick that you reviewed every row before signing")
    r = c.post(f"/api/counts/{count['id']}/sign", json={"reviewed": True}, headers=h)
    assert r.json()["signed_by"] == "mia"
    r = c.post(f"/api/counts/{count['id']}/sign", json={"reviewed": True}, headers=h)
    assert r.status_code == 400 and "already signed by mia" in r.json()["error"]
    assert served.kiosk.history.audit_rows(1)[0]["action"] == "sign count"
    assert served.kiosk.history.verify_audit() > 3
    device.labels("cam0", FULL)


def test_the_users_page_is_for_admins(site):
    served, _ = site
    from kiosk.auth import add_user
    add_user(served.kiosk.history, "root", "admin", "correct horse", 0.0)
    c, token = login(site, "root")
    assert 'data-user="mia"' in c.get("/users").text
    r = c.post("/users", data={"csrf": token, "name": "nia", "role": "viewer", "password": "short"})
    assert r.status_code == 400 and "the password must have at least 8 characters" in r.text
    r = c.post("/users", data={"csrf": token, "name": "nia", "role": "viewer", "password": "long enough"})
    assert r.status_code == 303 and served.kiosk.history.user("nia")["role"] == "viewer"
    r = c.post("/api/users/root/disable", json={}, headers={"X-CSRF-Token": token})
    assert (r.status_code, r.json()["error"]) == (400, "you cannot disable yourself")
    leo, _ = login(site, "leo")
    assert leo.get("/users").status_code == 403
    anon = client(site)
    assert anon.get("/users").headers["location"] == "/login" and csrf_of(anon.get("/login").text)
