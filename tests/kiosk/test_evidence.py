"""Evidence pictures: the JPEG check, the store and its retention, the device requests against a REP
responder on loopback, and the collector that ties them to new incidents."""
from __future__ import annotations

import logging
import os

import pytest

from kiosk.config import parse_config
from kiosk.device_requests import DeviceRequestError, request_enrol, request_evidence
from kiosk.evidence import JPEG_MAX_BYTES, EvidenceCollector, EvidenceError, EvidenceStore, check_jpeg
from kiosk.incident import Incident

from .states_device import StatesDevice, jpeg
from .states_feeds import PLAN, states_config


@pytest.fixture()
def device():
    d = StatesDevice()
    yield d
    d.close()


def config(tmp_path, device, **policies):
    return parse_config(states_config(tmp_path, devices=[device.entry({"cam0": {"slots": dict(PLAN)}})],
                                      policies={"snapshot_timeout_s": 2, **policies}))


def test_check_jpeg_refuses_what_is_not_a_jpeg():
    good = jpeg()
    assert check_jpeg(good, "x") == good
    with pytest.raises(EvidenceError, match=r"^crop: not a JPEG \(starts with 89504e47, not ffd8ff\)$"):
        check_jpeg(b"\x89PNG\r\n\x1a\n" + b"0" * 20, "crop")
    with pytest.raises(EvidenceError, match="a JPEG cut short"):
        check_jpeg(good[:-10], "crop")
    with pytest.raises(EvidenceError, match=f"over the {JPEG_MAX_BYTES} bytes allowed"):
        check_jpeg(good[:3] + b"\0" * JPEG_MAX_BYTES + good[-2:], "crop")
    with pytest.raises(EvidenceError, match="no picture data"):
        check_jpeg(b"", "crop")


def test_store_keeps_both_crops_and_a_bad_jpeg_writes_nothing(tmp_path):
    store = EvidenceStore(tmp_path, max_days=1, max_mb=10)
    meta = store.save(7, "case-01", "cam0", "r0c1", current=jpeg(60), reference=jpeg(200), ts=5.0, now=10.0,
                      state="empty")
    assert set(meta["files"]) == {"reference", "current"} and meta["state"] == "empty"
    assert store.file(7, "cam0", "r0c1", "reference").read_bytes() == jpeg(200)
    assert store.file(7, "cam0", "r0c9", "current") is None and store.file(7, "..", "r0c1", "current") is None
    with pytest.raises(EvidenceError, match="incident 8 case-01/cam0/r0c1: reference crop: not a JPEG"):
        store.save(8, "case-01", "cam0", "r0c1", current=jpeg(), reference=b"<html>", ts=5.0, now=10.0)
    assert store.items(8) == [] and not (tmp_path / "evidence" / "8").exists()
    [item] = store.items(7)
    assert item["slot"] == "r0c1" and item["files"]["current"].endswith("evidence/7/cam0/r0c1/current.jpg")


def test_retention_prunes_the_oldest_by_days_then_by_size(tmp_path):
    store = EvidenceStore(tmp_path, max_days=2, max_mb=1)
    big = jpeg(size=32)[:3] + os.urandom(300_000) + b"\xff\xd9"          # 300 kB crops, valid by their bytes
    day = 86400.0
    for i, age in enumerate((10, 1.5, 1.2, 1.1, 0.5)):                    # saved this many days before day 100
        store.save(i + 1, "case-01", "cam0", "r0c0", current=big, reference=None, ts=0, now=(100 - age) * day)
    # Saving 2 dropped 1 (over 2 days old); saving 5 made 1.2 MB, over 1 MB: 2 went, the oldest left.
    assert sorted(int(p.name) for p in (tmp_path / "evidence").iterdir()) == [3, 4, 5]
    assert store.prune(100.85 * day) == 1                                 # 3 is 2.05 days old now
    assert sorted(int(p.name) for p in (tmp_path / "evidence").iterdir()) == [4, 5]


def test_requests_against_a_rep_responder_on_loopback(tmp_path, device):
    cfg = config(tmp_path, device)
    got = request_evidence(cfg, "case-01", "cam0", "r0c1")
    assert got["current"] == jpeg(60) and got["reference"] == jpeg(200) and got["ts"] == 1234.5
    device.states["r0c2"] = "occluded"
    reply = request_enrol(cfg, "case-01", "cam0", None)
    assert reply["refused"] == {"r0c2": "occluded (a hand or motion over it): enrol it when it is still",
                                "r1c2": "empty: nothing to enrol"}
    assert reply["labels"]["r0c0"] == "ring" and "r0c2" not in reply["enrolled"]
    assert device.requests[0] == {"kind": "evidence", "camera": "cam0", "slot": "r0c1"}
    assert device.requests[1] == {"kind": "enrol", "camera": "cam0", "slots": None}


def test_evidence_for_an_unknown_camera_or_slot_is_the_devices_404(tmp_path, device):
    cfg = config(tmp_path, device)
    with pytest.raises(DeviceRequestError, match=r"^case-01: unknown camera 'cam9' \(cameras: cam0\)$") as exc:
        request_evidence(cfg, "case-01", "cam9", "r0c1")
    assert exc.value.status == 404
    with pytest.raises(DeviceRequestError, match="unknown slot 'zz' of camera cam0") as exc:
        request_evidence(cfg, "case-01", "cam0", "zz")
    assert exc.value.status == 404


def test_a_device_that_does_not_answer_is_a_504(tmp_path):
    import zmq
    rep = zmq.Context.instance().socket(zmq.REP)
    rep.bind("tcp://127.0.0.1:*")
    try:
        silent = {"id": "case-01", "labels": "tcp://127.0.0.1:1", "snapshot": rep.getsockopt(zmq.LAST_ENDPOINT).decode(),
                  "cameras": {"cam0": {"slots": dict(PLAN)}}}
        cfg = parse_config(states_config(tmp_path, devices=[silent]))
        with pytest.raises(DeviceRequestError, match=r"did not answer the evidence request within 0.3 s") as exc:
            request_evidence(cfg, "case-01", "cam0", "r0c1", timeout_s=0.3)
        assert exc.value.status == 504
    finally:
        rep.close(linger=0)


def test_evidence_held_back_by_a_waiting_enrolment_is_asked_for_once_more(tmp_path, device, caplog):
    """The device answers one request at a time; an enrolment waiting for its slot to settle holds the evidence
    request past its timeout. The collector asks once more, as long as an enrolment may take."""
    cfg = config(tmp_path, device, snapshot_timeout_s=0.3, enrol_timeout_s=3)
    col = EvidenceCollector(cfg, clock=lambda: 50.0)
    device.busy_s = 0.8
    with caplog.at_level(logging.INFO, logger="kiosk.evidence"):
        [meta] = col.collect(11, "case-01", "cam0", ["r0c1"])
    assert set(meta["files"]) == {"reference", "current"} and not meta.get("error")
    assert "no answer in time; asking once more" in caplog.text
    assert [r["kind"] for r in device.requests] == ["evidence", "evidence"]
    device.busy_s = 5.0                                     # longer than both: the reason is kept
    [meta] = col.collect(12, "case-01", "cam0", ["r0c1"])
    assert meta["files"] == {} and "did not answer the evidence request within 3 s" in meta["error"]


def test_collector_keeps_pictures_of_state_incidents_and_the_reason_when_there_are_none(tmp_path, device):
    cfg = config(tmp_path, device)
    stored = []
    col = EvidenceCollector(cfg, clock=lambda: 50.0, on_stored=lambda i, m: stored.append((i, m)))
    inc = Incident("missing", "case-01", "cam0", "r0c1", 1.0, 1.0, "gone", {"states": True}, id=3)
    old = Incident("missing", "case-01", "cam0", "r0c0", 1.0, 1.0, "gone", {}, id=4)   # schema 1: no request
    smash = Incident("smash", "case-01", "cam0", None, 1.0, 1.0, "smash",
                     {"states": True, "slots": ["r0c0", "r0c2"]}, id=5)
    col.on_incidents([("opened", inc), ("opened", old), ("updated", inc), ("opened", smash)])
    assert col._queue.qsize() == 2
    col.start()
    try:
        import time
        deadline = time.monotonic() + 5
        while col.done < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        col.stop()
    assert [i for i, _ in stored] == [3, 5]
    assert [m["slot"] for m in col.store.items(5)] == ["r0c0", "r0c2"]
    device.current = b"GIF89a not a jpeg"
    [meta] = col.collect(6, "case-01", "cam0", ["r0c1"])
    assert meta["files"] == {} and "current crop: not a JPEG" in meta["error"]
    [meta] = col.collect(9, "case-01", "cam0", ["zz"])
    assert meta["error"] == "case-01: unknown slot 'zz' of camera cam0"


def test_a_device_without_slot_states_is_named(tmp_path):
    from .feeds import SimDevice                 # answers every request with a snapshot, as old devices do
    old = SimDevice()
    try:
        cfg = parse_config(states_config(tmp_path, devices=[old.entry({"cam0": {"slots": dict(PLAN)}})]))
        with pytest.raises(DeviceRequestError, match=r"the reply to the enrol request is of kind None "
                                                     r"\(a device without slot states\?\)") as exc:
            request_enrol(cfg, "case-01", "cam0", None)
        assert exc.value.status == 502
    finally:
        old.close()


def test_a_failed_enrolment_changes_nothing_and_is_audited(tmp_path):
    from kiosk.enrolment import enrol_case
    from kiosk.service import Kiosk

    kiosk = Kiosk(parse_config(states_config(tmp_path)), feed=False)
    try:
        def down(*_, **__):
            raise DeviceRequestError("case-01 (tcp://127.0.0.1:2) did not answer the enrol request within 10 s", 504)
        before = dict(kiosk.engine.planogram)
        with pytest.raises(DeviceRequestError, match="did not answer the enrol request") as exc:
            enrol_case(kiosk, "case-01", "cam0", "mia", request=down)
        assert exc.value.status == 504 and kiosk.engine.planogram == before and not kiosk.engine.suggested
        row = kiosk.history.audit_rows(1)[0]
        assert row["action"] == "enrol" and "did not answer" in row["detail"]
    finally:
        kiosk.stop()
