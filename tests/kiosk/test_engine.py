"""The incident engine, driven by hand with a fake clock: missing, wrong, smash, camera, model, hours."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from edge.link import messages
from kiosk.config import parse_config
from kiosk.engine import ActionError, Engine
from kiosk.incident import Cond, Incident, incident_key, slot_incident_key
from tests.helpers import labels_message as labels

from .feeds import config_dict, heartbeat, status

FULL = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "empty"}
T0 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc).timestamp()   # a Wednesday, noon UTC


def engine(tmp_path, now=T0, **top):
    return Engine(parse_config(config_dict(tmp_path, **top)), now=now)


def opened(ch, cameras=False):
    """Incidents opened by ``ch`` (camera ones only if asked: these tests send no heartbeats)."""
    return [inc for ev, inc in ch.incidents if ev == "opened" and (cameras or inc.kind != "camera")]


def test_feed_messages_are_schema_valid():
    for msg in (labels(FULL), status("down"), heartbeat({"cam0": 3})):
        messages.validate(msg, None)


def test_missing_after_grace_then_resolves(tmp_path):
    e = engine(tmp_path, policies={"empty_grace_s": 60})
    assert not opened(e.on_labels(labels(FULL, seq=0), T0))
    ch = e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=1), T0 + 1)
    assert not opened(ch) and ch.slot_rows[0][1:5] == ("case-01", "cam0", "r0c0", "empty")
    assert ch.slots[0]["cond"] == "missing" and not ch.slots[0]["alarm"]
    assert not opened(e.tick(T0 + 60))                  # 59 s: within the grace
    inc, = opened(e.tick(T0 + 61.5))
    assert (inc.kind, inc.slot) == ("missing", "r0c0")
    assert "should hold ring" in inc.reason and "since seq 1" in inc.reason
    assert inc.evidence["counts_before"]["ring"] == 2 and inc.evidence["counts_after"]["ring"] == 1
    # The same state again: updated in place (seq_last), no new incident, no event.
    ch = e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=2), T0 + 62)
    assert not ch.incidents and inc.evidence["seq_last"] == 2
    # Unknown instead of empty: the same incident, updated.
    ch = e.on_labels(labels({**FULL, "r0c0": "unknown"}, seq=3), T0 + 63)
    assert [ev for ev, _ in ch.incidents] == ["updated"] and ch.incidents[0][1] is inc
    ch = e.on_labels(labels(FULL, seq=4), T0 + 70)
    assert ch.incidents == [("resolved", inc)] and inc.resolved_at == T0 + 70 and inc.key not in e.open


def test_wrong_class_shares_the_slot_incident(tmp_path):
    e = engine(tmp_path, policies={"empty_grace_s": 0})
    e.on_labels(labels(FULL, seq=0), T0)
    inc, = opened(e.on_labels(labels({**FULL, "r1c0": "ring"}, seq=1), T0 + 1))
    assert inc.kind == "wrong" and "shows ring" in inc.reason
    ch = e.on_labels(labels({**FULL, "r1c0": "empty"}, seq=2), T0 + 2)
    assert ch.incidents == [("updated", inc)] and inc.kind == "missing" and len(e.open) == 1


def test_planogram_states_never_alarm(tmp_path):
    e = engine(tmp_path, policies={"empty_grace_s": 0})
    ch = e.on_labels(labels({**FULL, "r1c1": "empty"}, seq=0), T0)
    assert not ch.incidents and e.slot_dict(("case-01", "cam0", "r1c1"))["cond"] == "state"
    e.on_labels(labels({**FULL, "r1c1": "brooch"}, seq=1), T0 + 1)
    assert e.slot_dict(("case-01", "cam0", "r1c1"))["cond"] == "extra" and not e.open


def test_smash_and_grab_is_immediate(tmp_path):
    e = engine(tmp_path, policies={"smash_slots_at_once": True})   # 10 min grace, burst 2 within 10 s
    e.on_labels(labels(FULL, seq=0), T0)
    assert not opened(e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=1), T0 + 1))
    assert not opened(e.on_labels(labels({**FULL, "r0c0": "empty", "r0c1": "empty"}, seq=2), T0 + 2))
    ch = e.on_labels(labels({"r0c0": "empty", "r0c1": "empty", "r1c0": "empty", "r1c1": "empty"}, seq=3), T0 + 3)
    kinds = sorted((i.kind, i.slot or "") for i in opened(ch))
    assert kinds == [("missing", "r0c0"), ("missing", "r0c1"), ("missing", "r1c0"), ("smash", "")]
    smash = e.open[("smash", "case-01", "cam0")]
    assert "3 slots" in smash.reason and "r1c0" in smash.reason
    e.on_labels(labels(FULL, seq=4), T0 + 30)
    ch = e.tick(T0 + 31)
    assert ("resolved", smash) in ch.incidents and set(e.open) == {("camera", "case-01", "cam0")}


def test_slow_removals_are_not_a_burst(tmp_path):
    e = engine(tmp_path)
    e.on_labels(labels(FULL, seq=0), T0)
    for i, slot in enumerate(("r0c0", "r0c1", "r1c0")):
        state = {**FULL, **{s: "empty" for s in ("r0c0", "r0c1", "r1c0")[:i + 1]}}
        assert not opened(e.on_labels(labels(state, seq=i + 1), T0 + 20 * (i + 1)))


def test_outside_hours_every_removal_alarms_at_once(tmp_path):
    hours = {"open": "09:00", "close": "18:00", "timezone": "UTC"}
    e = engine(tmp_path, hours=hours)
    night = T0 + 10 * 3600                              # 22:00 UTC
    e.on_labels(labels(FULL, seq=0), night)
    inc, = opened(e.on_labels(labels({**FULL, "r0c1": "empty"}, seq=1), night + 1))
    assert inc.slot == "r0c1"
    e2 = engine(tmp_path, hours=hours)                  # noon: the 10-minute grace holds
    e2.on_labels(labels(FULL, seq=0), T0)
    assert not opened(e2.on_labels(labels({**FULL, "r0c1": "empty"}, seq=1), T0 + 1))


def test_camera_down_stale_and_frozen(tmp_path):
    e = engine(tmp_path)                                # heartbeat 1 s, 3 missed -> stale
    assert not e.tick(T0 + 2).incidents
    inc, = opened(e.tick(T0 + 3.5), cameras=True)
    assert inc.kind == "camera" and "no contact" in inc.reason
    ch = e.on_heartbeat(heartbeat({"cam0": 5}), T0 + 4)
    assert ("resolved", inc) in ch.incidents and ch.cameras[0]["health"] == "up"
    inc, = opened(e.on_status(status("down", detail="stalled"), T0 + 5), cameras=True)
    assert "down: stalled" in inc.reason
    assert ("resolved", inc) in e.on_status(status("up"), T0 + 6).incidents
    for i in range(3):                                  # the seq stops moving while the camera says up
        ch = e.on_heartbeat(heartbeat({"cam0": 9}), T0 + 7 + i)
    assert not opened(ch, cameras=True)
    inc, = opened(e.on_heartbeat(heartbeat({"cam0": 9}), T0 + 10), cameras=True)
    assert "frozen at 9" in inc.reason
    assert not e.tick(T0 + 10.5).incidents              # nothing new while it lasts
    assert ("resolved", inc) in e.on_heartbeat(heartbeat({"cam0": 10}), T0 + 11).incidents
    inc, = opened(e.tick(T0 + 15), cameras=True)
    assert "no heartbeat from device case-01" in inc.reason


def test_model_change_resolves_on_acknowledge(tmp_path):
    e = engine(tmp_path)
    e.on_labels(labels(FULL, seq=0), T0)
    inc, = opened(e.on_labels(labels(FULL, seq=1, model={**labels(FULL)["model"], "version": "2.0.0"}), T0 + 1))
    assert inc.kind == "model" and "1.0.0" in inc.reason and "2.0.0" in inc.reason
    inc.id = 7
    ch = e.acknowledge(7, "mia", "new model flashed on purpose", T0 + 2)
    assert [ev for ev, _ in ch.incidents] == ["acknowledged", "resolved"] and inc.ack_by == "mia"


def test_acknowledge_refusals(tmp_path):
    e = engine(tmp_path, policies={"empty_grace_s": 0})
    e.on_labels(labels(FULL, seq=0), T0)
    inc, = opened(e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=1), T0 + 1))
    inc.id = 1
    with pytest.raises(ActionError, match="note is required"):
        e.acknowledge(1, "mia", "  ", T0)
    with pytest.raises(ActionError, match="at most 500"):
        e.acknowledge(1, "mia", "x" * 501, T0)
    with pytest.raises(ActionError, match="incident 2 is not open"):
        e.acknowledge(2, "mia", "ok", T0)
    e.acknowledge(1, "mia", "customer is trying it on", T0 + 2)
    assert inc.state == "acknowledged"
    with pytest.raises(ActionError, match="already acknowledged by mia"):
        e.acknowledge(1, "leo", "me too", T0 + 3)
    # Acknowledged incidents still resolve by themselves.
    assert ("resolved", inc) in e.on_labels(labels(FULL, seq=2), T0 + 4).incidents


def test_planogram_edit_resolves_and_refuses_bad_values(tmp_path):
    e = engine(tmp_path, policies={"empty_grace_s": 0})
    e.on_labels(labels(FULL, seq=0), T0)
    inc, = opened(e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=1), T0 + 1))
    old, ch = e.set_expected(("case-01", "cam0", "r0c0"), "sold", T0 + 2)
    assert old == "ring" and ("resolved", inc) in ch.incidents
    for key, value, msg in ((("case-01", "cam9", "r0c0"), "ring", "no case case-01/cam9"),
                            (("case-01", "cam0", "zz"), "ring", "no slot zz"),
                            (("case-01", "cam0", "r0c0"), "empty", "must be a class name"),
                            (("case-01", "cam0", "r0c0"), "<script>", "must be a class name")):
        with pytest.raises(ActionError, match=msg):
            e.set_expected(key, value, T0)


def test_restart_keeps_open_incidents(tmp_path):
    e = engine(tmp_path, policies={"empty_grace_s": 0})
    e.on_labels(labels(FULL, seq=0), T0)
    inc, = opened(e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=1), T0 + 1))
    inc.id = 3
    again = Engine(e.config, incidents=[Incident.from_row(inc.to_dict())], now=T0 + 5)
    assert again.find(3) is not None
    ch = again.on_labels(labels(FULL, seq=2), T0 + 6)   # the piece is back after the restart
    assert [(ev, i.id) for ev, i in ch.incidents] == [("resolved", 3)]


def test_a_camera_outside_the_planogram_is_shown_but_never_alarms(tmp_path):
    e = engine(tmp_path, policies={"empty_grace_s": 0})
    e.on_heartbeat(heartbeat({"cam0": 1, "cam9": 1}), T0)
    ch = e.on_labels(labels({"x": "empty"}, camera="cam9", seq=2), T0 + 1)
    assert not ch.incidents and e.slot_dict(("case-01", "cam9", "x"))["cond"] == "unplanned"
    ch = e.on_status(status("down", camera="cam9"), T0 + 2)
    assert ch.cameras[0]["health"] == "down" and not ch.incidents


def test_planogram_slots_the_camera_does_not_report_are_logged(tmp_path, caplog):
    e = engine(tmp_path)
    e.on_labels(labels({"r0c0": "ring", "r0c1": "ring"}, seq=0), T0)
    assert "case-01/cam0: planogram slots the camera does not report (never checked): ['r1c0', 'r1c1']" in caplog.text


def test_a_slots_condition_is_a_state_that_serialises_as_its_value(tmp_path):
    """``SlotView.cond`` is a :class:`~kiosk.incident.Cond`; the page and the API get its plain value, and the
    slot's incident is found under the one key :func:`~kiosk.incident.incident_key` gives every slot kind."""
    e = engine(tmp_path, policies={"empty_grace_s": 60})
    e.on_labels(labels(FULL, seq=0), T0)
    e.on_labels(labels({**FULL, "r0c0": "empty"}, seq=1), T0 + 1)
    inc, = opened(e.tick(T0 + 61.5))
    sv = e.slots[("case-01", "cam0", "r0c0")]
    assert sv.cond is Cond.MISSING
    cell = json.loads(json.dumps(e.slot_dict(("case-01", "cam0", "r0c0"))))
    assert (cell["cond"], cell["alarm"]) == ("missing", True)
    assert incident_key(Cond.MISSING, "case-01", "cam0", "r0c0") == incident_key("swapped", "case-01", "cam0", "r0c0")
    assert e.open[slot_incident_key(("case-01", "cam0", "r0c0"))] is inc and inc.key == ("slot", "case-01", "cam0", "r0c0")


def test_a_video_file_that_ended_is_shown_as_ended_never_as_an_incident(tmp_path):
    """``eos`` comes only from a file source that does not loop (a recording played to its end: the demo, a
    benchmark): the case is greyed out as ended, and no camera incident opens, even as heartbeats stop."""
    e = engine(tmp_path)
    e.on_heartbeat(heartbeat({"cam0": 5}), T0 + 1)
    ch = e.on_status(status("eos", detail="end of file"), T0 + 2)
    assert ch.cameras[0]["health"] == "ended" and "run ended (end of file)" in ch.cameras[0]["reason"]
    assert not opened(ch, cameras=True)
    assert not opened(e.tick(T0 + 60), cameras=True)     # the device stopped too: still no incident
    inc, = opened(e.on_status(status("down", detail="stalled"), T0 + 61), cameras=True)   # a real failure is one
    assert "down: stalled" in inc.reason


def test_a_device_back_after_a_pause_says_up_before_its_first_heartbeat_and_opens_nothing(tmp_path):
    """The demo's fine-tune: the day's video ended, 80 s pass without a heartbeat, and the restarted device's "up"
    comes before its first heartbeat. A status is contact: judged by the heartbeat before the pause, the camera
    would open a "no heartbeat for 80 s" incident at the moment it came back."""
    e = engine(tmp_path)
    e.on_heartbeat(heartbeat({"cam0": 5}), T0 + 1)
    e.on_status(status("eos", detail="end of file"), T0 + 2)
    assert not opened(e.tick(T0 + 60), cameras=True)
    ch = e.on_status(status("up"), T0 + 82)
    assert ch.cameras[0]["health"] == "up" and not opened(ch, cameras=True)
    assert not opened(e.on_heartbeat(heartbeat({"cam0": 0}), T0 + 83), cameras=True)
    inc, = opened(e.tick(T0 + 120), cameras=True)   # and silence after it is still an incident
    assert "no heartbeat" in inc.reason
