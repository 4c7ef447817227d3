"""Slot states end to end on loopback: a real edge Publisher with CURVE and an allow-list, its request
handlers (edge.loop.device_requests) over a tracker double, and a real kiosk (feed, engine, SQLite, web):
schema-2 labels become a missing incident, the evidence crops come back over the authenticated link,
enrolment names the refused slot, an unknown slot's evidence is the device's 404."""
from __future__ import annotations

import pytest

from deploy.demo import make_link_keys
from edge.config.publish import CurveConfig
from edge.link.publisher import Publisher
from edge.loop.device_requests import handlers
from edge.loop.slot_states import OCCLUDED_REASON, UnknownSlot
from kiosk.config import parse_config
from kiosk.device_requests import DeviceRequestError, request_evidence

from .feeds import Served, add_users, wait_for
from .states_device import jpeg
from .states_feeds import ENROLMENT, PLAN, SEEN, state_labels, states_config
from .test_web import login


class Tracker:
    """What edge.loop.device_requests asks of a camera's slot tracker: enrol and evidence (a test double)."""

    def __init__(self) -> None:
        self.occluded = {"r1c0"}
        self.faint = {"r0c2"}     # a piece the model reads empty
        self.pieces: list[str] | None = None

    def _check(self, slot: str) -> None:
        if slot not in SEEN:
            raise UnknownSlot(f"unknown slot '{slot}' of camera cam0 (slots: {', '.join(SEEN)})")

    def enrol(self, slots, pieces=()):
        names = slots or list(SEEN)
        for n in [*names, *pieces]:
            self._check(n)
        self.pieces = list(pieces)
        seen = {n: "empty" if n in self.faint else label for n, label in SEEN.items()}
        refused = {n: OCCLUDED_REASON for n in names if n in self.occluded}
        refused.update({n: "empty: nothing to enrol" for n in names if seen[n] == "empty" and n not in pieces})
        enrolled = [n for n in names if n not in refused]
        return {"kind": "enrol", "camera": "cam0", "enrolled": enrolled, "refused": refused,
                "labels": {n: seen[n] for n in enrolled}, "unseen": [n for n in enrolled if seen[n] == "empty"],
                "enrolment": ENROLMENT}

    def evidence(self, slot):
        self._check(slot)
        return {"camera": "cam0", "slot": slot, "ts": 5.0, "state": "empty", "current": jpeg(60),
                "reference": jpeg(200), "enrolment": ENROLMENT}


@pytest.fixture()
def linked(tmp_path):
    keys = make_link_keys(tmp_path / "device", tmp_path)
    pub = Publisher("case-01", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", heartbeat_s=0.2,
                    curve=CurveConfig(server_secret_key=str(keys["server_secret"]),
                                      allowed_clients=str(keys["allowed_clients"])),
                    handlers=handlers({"cam0": (tracker := Tracker())}))
    pub.tracker = tracker
    cfg = states_config(tmp_path, curve={"client_secret_key": str(keys["client_secret"])},
                        devices=[{"id": "case-01", "labels": pub.endpoint, "snapshot": pub.snapshot_endpoint,
                                  "server_key": str(keys["server_public"]), "cameras": {"cam0": {"slots": dict(PLAN)}}}],
                        policies={"empty_grace_s": 0})
    served = Served(parse_config(cfg))
    add_users(served.kiosk.history)
    yield served, pub
    served.close()
    pub.close()


def publish_until(pub, states, done, timeout=10.0):
    def step():
        pub.publish_labels("cam0", state_labels(states))
        pub.maybe_heartbeat({"cam0": {"fps": 5.0}})
        return done()
    return wait_for(step, timeout, step=0.1)


def test_states_over_curve_from_labels_to_evidence_and_enrolment(linked):
    served, pub = linked
    kiosk = served.kiosk
    publish_until(pub, None, lambda: kiosk.engine.slots[("case-01", "cam0", "r0c1")].state == "present")
    inc = publish_until(pub, {"r0c1": "empty"}, lambda: next(iter(kiosk.incidents()), None))
    assert (inc["kind"], inc["slot"]) == ("missing", "r0c1") and inc["evidence"]["enrolment"] == ENROLMENT
    path = wait_for(lambda: kiosk.evidence.store.file(inc["id"], "cam0", "r0c1", "reference"))
    assert path.read_bytes() == jpeg(200)
    c, token = login((served, None), "mia")
    assert c.get(f"/evidence/{inc['id']}/cam0/r0c1/current.jpg").content == jpeg(60)
    r = c.post("/api/cases/case-01/cam0/enrol", json={}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["refused"] == {"r1c0": OCCLUDED_REASON, "r1c2": "empty: nothing to enrol"}
    # The planogram's pieces went with the request (not r1c2: sold), so the faint necklace the model reads
    # empty is enrolled on the store's word, said so on the page and in the audit.
    assert served.kiosk.engine.planogram[("case-01", "cam0", "r0c2")] == "necklace"
    assert pub.tracker.pieces == ["r0c0", "r0c1", "r0c2", "r1c0", "r1c1"]
    assert r.json()["unseen"] == ["r0c2"] and "r0c2" in r.json()["enrolled"]
    html = c.post("/cases/case-01/cam0/enrol", data={"csrf": token})
    assert "<h2>Enrolled on the planogram's word</h2>" in html.text
    assert '<ul id="unseen"><li><b>r0c2</b></li></ul>' in html.text
    assert '"unseen":["r0c2"]' in kiosk.history.audit_rows(1)[0]["detail"]
    with pytest.raises(DeviceRequestError, match=r"^case-01: unknown slot 'zz' of camera cam0") as exc:
        request_evidence(kiosk.config, "case-01", "cam0", "zz")
    assert exc.value.status == 404
    with pytest.raises(DeviceRequestError, match=r"^case-01: unknown camera 'cam9' \(cameras: cam0\)$") as exc:
        request_evidence(kiosk.config, "case-01", "cam9", "r0c1")
    assert exc.value.status == 404
