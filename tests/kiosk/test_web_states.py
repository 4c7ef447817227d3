"""Slot states on the page and the API, on a real server with a device's REP endpoint on loopback:
evidence pictures (and the 404s of unknown camera/slot), "Enrol this case" naming refused slots,
planogram suggestions and their confirmation, the incidents CLI listing evidence files."""
from __future__ import annotations

import httpx
import pytest

from kiosk.cli import main

from .feeds import heartbeat, wait_for
from .states_device import StatesDevice, jpeg
from .states_feeds import PLAN, served_states, state_labels
from .test_web import login

#: The planogram the store typed: r0c0 not filled in yet (sold), r1c1 mistyped as bracelet.
TYPED = {**PLAN, "r0c0": "sold", "r1c1": "bracelet"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web-states")
    device = StatesDevice()
    served = served_states(tmp, device, TYPED)
    yield served, device, tmp / "kiosk.yaml"
    served.close()
    device.close()


def open_missing(site, slot: str, seq: int) -> dict:
    kiosk = site[0].kiosk
    kiosk.on_message("heartbeat", heartbeat({"cam0": seq}))
    kiosk.on_message("labels", state_labels({slot: "empty"}, seq=seq))
    inc = next(i for i in kiosk.incidents() if i["slot"] == slot)
    # The store writes current.jpg, reference.jpg, then meta.json: wait for the last (the CLI lists metas).
    wait_for(lambda: any(len(m["files"]) == 2 for m in kiosk.evidence.store.items(inc["id"])))
    return inc


def test_incident_evidence_is_shown_and_served_to_logged_in_users(site):
    inc = open_missing(site, "r0c1", 1)
    assert inc["kind"] == "missing" and "top row, second from left (r0c1) is missing" in inc["reason"]
    c, _ = login(site, "leo")
    url = f"/evidence/{inc['id']}/cam0/r0c1/reference.jpg"
    r = c.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content == jpeg(200)
    assert c.get(url.replace("reference", "current")).content == jpeg(60)
    listed = c.get(f"/api/incidents/{inc['id']}/evidence").json()["slots"]
    assert listed[0]["urls"] == {"current": url.replace("reference", "current"), "reference": url}
    page = c.get("/incidents").text
    assert f'<img src="{url}"' in page
    history = c.get("/history?device=case-01").text    # the record says what the piece did, and the category
    assert "r0c1</td><td>empty · read as empty</td>" in history and "r0c0</td><td>present · read as ring" in history
    r = httpx.Client(base_url=site[0].url, follow_redirects=False).get(url)
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    r = httpx.Client(base_url=site[0].url).get(f"/api/incidents/{inc['id']}/evidence")
    assert (r.status_code, r.json()) == (401, {"error": "login required"})


def test_evidence_for_an_unknown_camera_or_slot_is_404(site):
    inc = open_missing(site, "r0c2", 2)
    c, _ = login(site, "leo")
    n = inc["id"]
    for path, message in ((f"/evidence/{n}/cam9/r0c2/current.jpg", "unknown camera 'cam9' (cameras: cam0)"),
                          (f"/evidence/{n}/cam0/zz/current.jpg", "unknown slot 'zz' of camera cam0"),
                          (f"/evidence/{n}/cam0/r0c2/other.jpg", "no picture 'other' (reference or current)"),
                          ("/evidence/999/cam0/r0c2/current.jpg", "no current picture of cam0/r0c2 for incident 999")):
        r = c.get(path, headers={"accept": "application/json"})
        assert (r.status_code, r.json()) == (404, {"error": message}), path


def test_enrol_with_a_slot_refused_names_it_and_fills_suggestions(site):
    served, device, _ = site
    device.states = {"r1c2": "empty", "r1c0": "occluded"}
    c, token = login(site, "mia")
    r = c.post("/api/cases/case-01/cam0/enrol", json={}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["refused"] == {"r1c0": "occluded (a hand or motion over it): enrol it when it is still",
                              "r1c2": "empty: nothing to enrol"}
    assert out["suggested"] == {"r0c0": {"old": "sold", "new": "ring"}, "r1c1": {"old": "bracelet", "new": "earring"}}
    cells = {s["slot"]: s for s in c.get("/api/state").json()["cases"][0]["slots"]}
    assert cells["r0c0"]["suggested"] and cells["r0c0"]["expected"] == "ring" and not cells["r0c1"]["suggested"]
    page = c.get("/").text
    assert 'data-confirm="case-01/cam0/r0c0"' in page and "slot c-" in page and " suggested" in page
    html = c.post("/cases/case-01/cam0/enrol", data={"csrf": token})
    assert html.status_code == 200 and "<b>r1c0</b>: occluded (a hand or motion over it)" in html.text
    # Confirm one as it is, correct the other; a slot without a suggestion is refused.
    r = c.post("/api/planogram/confirm", json={"device": "case-01", "camera": "cam0", "slot": "r0c0"},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["suggested"] is False and r.json()["expected"] == "ring"
    r = c.post("/api/planogram/confirm", json={"device": "case-01", "camera": "cam0", "slot": "r1c1",
                                               "expected": "pendant"}, headers={"X-CSRF-Token": token})
    assert r.json()["expected"] == "pendant" and not served.kiosk.engine.suggested
    r = c.post("/api/planogram/confirm", json={"device": "case-01", "camera": "cam0", "slot": "r0c1"},
               headers={"X-CSRF-Token": token})
    assert (r.status_code, r.json()) == (400, {"error": "slot case-01/cam0/r0c1 has no suggestion to confirm"})
    actions = [(a["action"], a["detail"]) for a in served.kiosk.history.audit_rows(20)]
    assert [a for a, _ in actions[:6]] == ["planogram", "planogram", "enrol", "enrol", "planogram", "planogram"]
    assert '"suggested":true' in actions[4][1] and '"refused":{"r1c0"' in actions[3][1]
    assert served.kiosk.history.planogram_suggested() == set()
    device.states = {"r1c2": "empty"}


def test_enrol_refusals(site):
    c, token = login(site, "leo")
    r = c.post("/api/cases/case-01/cam0/enrol", json={}, headers={"X-CSRF-Token": token})
    assert (r.status_code, r.json()) == (403, {"error": "the manager role is needed to enrol a case"})
    c, token = login(site, "mia")
    r = c.post("/api/cases/case-01/cam0/enrol", json={})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = c.post("/api/cases/case-01/cam9/enrol", json={}, headers={"X-CSRF-Token": token})
    assert (r.status_code, r.json()) == (404, {"error": "no case case-01/cam9 in this store"})


def test_incidents_cli_lists_places_and_evidence_files(site, capsys):
    inc = open_missing(site, "r1c1", 3)
    assert main(["incidents", "--config", str(site[2])]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith(f"#{inc['id']} "))
    assert "missing" in line and "case-01/cam0/r1c1" in line
    assert f"evidence/{inc['id']}/cam0/r1c1/current.jpg" in out and f"evidence/{inc['id']}/cam0/r1c1/reference.jpg" in out
