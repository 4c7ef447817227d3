"""'Collect training photos from this case' on the page and the API, on a real server with a device's REP endpoint
on loopback (as 'Enrol this case' is tested): the request carries the planogram's confirmed classes, the device's
refusal (nothing enrolled) reaches the manager, viewers and unknown cases are refused, each request is audited."""
from __future__ import annotations

import pytest

from kiosk.config import STATES

from .states_device import StatesDevice
from .states_feeds import PLAN, served_states
from .test_web import login

#: The planogram: r0c0 sold (a state), r1c1 a class; r0c1's value an enrolment suggested and nobody confirmed.
TYPED = {**PLAN, "r0c0": "sold"}


class CollectingDevice(StatesDevice):
    """The states device, answering collect requests too (refusing while ``enrolled`` is false)."""

    enrolled = True

    def answer(self, req):
        if req.get("kind") != "collect":
            return super().answer(req)
        if not self.enrolled:
            return {"error": "camera cam0 has no enrolled slot: enrol the case first (the kiosk's \"Enrol this "
                             "case\" or gemsight-edge enrol); crops are labelled by the enrolment", "status": 409}
        labels = req.get("labels") or {}
        classes = {s: labels.get(s, "ring") for s in ("r0c1", "r1c1")}
        return {"kind": "collect", "camera": "cam0", "on": req["on"], "until": 1.7e9 if req["on"] else None,
                "classes": classes, "today": {"r1c1": 2}, "stopped": None, "duplicates": 0, "written": 2,
                "dir": "/var/lib/gemsight/edge/collect"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web-collect")
    device = CollectingDevice()
    served = served_states(tmp, device, TYPED)
    served.kiosk.engine.suggested.add(("case-01", "cam0", "r0c1"))
    yield served, device
    served.close()
    device.close()


def test_collect_sends_the_confirmed_classes_and_shows_what_the_case_keeps(site):
    served, device = site
    c, token = login(site, "mia")
    page = c.get("/").text
    assert 'action="/cases/case-01/cam0/collect"' in page and "Collect training photos from this case" in page
    r = c.post("/api/cases/case-01/cam0/collect", json={"hours": 24}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200, r.text
    sent = device.requests[-1]
    expected = {s: v for s, v in TYPED.items() if s != "r0c1" and v not in (*STATES, "empty", "unknown")}
    assert "r0c0" not in expected and len(expected) >= 2
    assert sent == {"kind": "collect", "camera": "cam0", "on": True, "hours": 24.0, "labels": expected}
    out = r.json()
    assert out["on"] and out["classes"]["r1c1"] == TYPED["r1c1"] and out["sent"] == expected
    html = c.post("/cases/case-01/cam0/collect", data={"csrf": token, "hours": "8"})
    assert html.status_code == 200 and "The case keeps photos of its enrolled pieces" in html.text
    assert "<b>r0c1</b>: ring (as enrolled)" in html.text and ", 2 today" in html.text
    assert device.requests[-1]["hours"] == 8.0
    r = c.post("/api/cases/case-01/cam0/collect", json={"on": False}, headers={"X-CSRF-Token": token})
    assert r.json()["on"] is False and device.requests[-1] == {"kind": "collect", "camera": "cam0", "on": False,
                                                                "hours": None, "labels": None}
    actions = [(a["action"], a["detail"]) for a in served.kiosk.history.audit_rows(5)]
    assert [a for a, _ in actions[:3]] == ["collect"] * 3 and '"on":false' in actions[0][1]


def test_collect_refusals_reach_the_manager(site):
    served, device = site
    c, token = login(site, "leo")
    r = c.post("/api/cases/case-01/cam0/collect", json={}, headers={"X-CSRF-Token": token})
    assert (r.status_code, r.json()) == (403, {"error": "the manager role is needed to collect training photos"})
    c, token = login(site, "mia")
    r = c.post("/api/cases/case-01/cam0/collect", json={})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = c.post("/api/cases/case-01/cam9/collect", json={}, headers={"X-CSRF-Token": token})
    assert (r.status_code, r.json()) == (404, {"error": "no case case-01/cam9 in this store"})
    for hours in ("many", 0, 10000):
        r = c.post("/api/cases/case-01/cam0/collect", json={"hours": hours}, headers={"X-CSRF-Token": token})
        assert r.status_code == 400 and "hours" in r.json()["error"], hours
    device.enrolled = False
    try:
        r = c.post("/api/cases/case-01/cam0/collect", json={}, headers={"X-CSRF-Token": token})
        assert r.status_code == 409 and "case-01: camera cam0 has no enrolled slot: enrol the case first" in r.json()["error"]
    finally:
        device.enrolled = True
    assert '"error":"case-01: camera cam0 has no enrolled slot' in served.kiosk.history.audit_rows(1)[0]["detail"]
