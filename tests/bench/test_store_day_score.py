"""The store-day scorer: each matching rule on hand-made truth and incidents."""
from __future__ import annotations

import json

import pytest

from bench.store_day_score import format_table, load_events, score, score_cases

GRACE = 30.0


def _ev(kind, t, slots, **kw):
    return {"t": t, "kind": kind, "slots": slots, **kw}


def _inc(kind, slot, t, camera="cam0"):
    return {"kind": kind, "camera": camera, "slot": slot, "opened_t": t}


EVENTS = [
    {"t": 0.0, "kind": "day", "seconds": 3600.0, "grace_s": GRACE},
    _ev("stock", 0.0, ["r0c0"], **{"class": "ring", "piece": "p000"}),
    _ev("theft", 100.0, ["r0c0"], hands=[[98.5, 101.5]]),
    _ev("theft", 200.0, ["r0c1"], hands=[[198.5, 201.5]]),
    _ev("swap", 300.0, ["r1c0"], t_end=301.0, hands=[[298.0, 302.5]]),
    _ev("swap", 400.0, ["r1c1"], t_end=401.0, hands=[[398.0, 402.5]]),
    _ev("smash", 500.0, ["r2c0", "r2c1", "r2c2"], t_end=506.0,
        removals={"r2c0": 500.0, "r2c1": 503.0, "r2c2": 506.0}),
    _ev("sale", 600.0, ["r0c2"], hands=[[598.0, 601.5]]),
    {"t": 605.0, "action": "mark_sold", "slot": "r0c2"},
    _ev("lift_return", 700.0, ["r0c3"], t_end=715.0, hands=[[698.0, 702.0], [713.0, 717.0]]),
    _ev("hand_pass", 800.0, ["r1c2", "r1c3"], t_end=802.0, target="r1c3"),
    {"t": 1000.0, "kind": "lighting", "t_end": 1600.0},
    {"t": 1700.0, "kind": "flicker", "t_end": 1702.0},
    {"t": 1800.0, "kind": "nudge", "dx": 3, "dy": -2},
    _ev("glare", 1900.0, ["r1c2"], t_end=1910.0),
]

INCIDENTS = [
    _inc("missing", "r0c0", 131.0),     # theft seen 31 s after the removal
    _inc("missing", "r0c1", 241.5),     # past grace + 10 s: the theft is missed, and this one is false
    _inc("swapped", "r1c0", 305.0),     # swap seen 4 s after the other piece lay there
    _inc("missing", "r1c1", 432.0),     # a swap called missing
    _inc("smash", None, 507.0),         # the smash-and-grab, case-level
    _inc("missing", "r2c0", 531.0),     # its slots' missing incidents belong to it
    _inc("missing", "r2c1", 534.0),
    _inc("missing", "r0c2", 630.0),     # raised for a sold piece: false
    _inc("swapped", "r0c3", 716.0),     # a lift-and-return: false
    _inc("missing", "r1c3", 801.0),     # a hand pass: false
    _inc("missing", "r0c3", 1200.0),    # in the lighting ramp: false
    _inc("camera", None, 1801.0),       # the nudge: false
    _inc("wrong", "r1c2", 1905.0),      # glare: false
    _inc("missing", "r2c3", 3500.0),    # nothing near: false
]


def test_each_rule():
    r = score(EVENTS, INCIDENTS, grace_s=GRACE, video_seconds=3600.0)
    assert r["theft"] == {"n": 2, "detected": 1, "recall": 0.5, "tta_p50_s": 31.0, "tta_p95_s": 31.0,
                          "tta_max_s": 31.0}
    assert (r["swap"]["n"], r["swap"]["detected"], r["swap"]["miscalled"]) == (2, 1, 1)
    assert r["swap"]["tta_p50_s"] == 4.0
    assert (r["smash"]["n"], r["smash"]["detected"], r["smash"]["tta_p50_s"]) == (1, 1, 7.0)
    causes = {(f["slot"], f["opened_t"]): f["cause"] for f in r["false"]["items"]}
    assert causes == {("r0c1", 241.5): "theft", ("r0c2", 630.0): "sale", ("r0c3", 716.0): "lift_return",
                      ("r1c3", 801.0): "hand_pass", ("r0c3", 1200.0): "lighting", (None, 1801.0): "nudge",
                      ("r1c2", 1905.0): "glare", ("r2c3", 3500.0): "none"}
    assert r["false"]["total"] == 8 and r["false"]["per_case_hour"] == 8.0
    assert r["false"]["by_kind"] == {"missing": 5, "swapped": 1, "camera": 1, "wrong": 1}
    assert r["quiet"] == {"hand_pass": 1, "lift_return": 1, "lighting": 1, "nudge": 1, "ok": False}
    assert {(m["kind"], m["t"]) for m in r["missed"]} == {("theft", 200.0), ("swap", 400.0)}


def test_no_incidents_means_nothing_detected_and_nothing_false():
    r = score(EVENTS, [], grace_s=GRACE, video_seconds=3600.0)
    assert r["false"]["total"] == 0 and r["quiet"]["ok"]
    assert r["theft"]["recall"] == 0.0 and r["theft"]["tta_p50_s"] is None
    assert r["smash"]["detected"] == 0


def test_theft_by_smash_incident_and_smash_on_a_slot():
    events = [_ev("theft", 100.0, ["a"]), _ev("smash", 200.0, ["b", "c", "d"], t_end=204.0,
                                             removals={"b": 200.0, "c": 202.0, "d": 204.0})]
    incidents = [_inc("smash", "a", 120.0), _inc("smash", "c", 210.0), _inc("smash", None, 215.0)]
    r = score(events, incidents, grace_s=GRACE, video_seconds=600.0)
    assert r["theft"]["detected"] == 1 and r["smash"]["detected"] == 1
    # 215 s is past the last removal + 10 s and not on a smashed slot: a false smash alarm.
    assert [(f["kind"], f["opened_t"]) for f in r["false"]["items"]] == [("smash", 215.0)]


def test_alarm_before_the_removal_is_false():
    events = [_ev("theft", 100.0, ["a"])]
    r = score(events, [_inc("missing", "a", 99.0)], grace_s=GRACE, video_seconds=600.0)
    assert r["theft"]["detected"] == 0 and r["false"]["total"] == 1


def test_cases_pool_and_read_their_length(tmp_path):
    day = {"t": 0.0, "kind": "day", "seconds": 1800.0}
    a = ([day, _ev("theft", 100.0, ["a"])], [_inc("missing", "a", 110.0)])
    b = ([day, _ev("theft", 100.0, ["a"])], [_inc("missing", "a", 135.0), _inc("missing", "b", 900.0)])
    r = score_cases([a, b], grace_s=GRACE)
    assert r["cases"] == 2 and r["case_hours"] == 1.0
    assert r["theft"]["recall"] == 1.0 and r["theft"]["tta_p50_s"] == 22.5 and r["theft"]["tta_max_s"] == 35.0
    assert r["false"]["per_case_hour"] == 1.0 and r["false"]["items"][0]["case"] == 1
    r2 = score_cases([a, b], grace_s=GRACE, video_seconds=[3600.0, 3600.0])
    assert r2["case_hours"] == 2.0
    path = tmp_path / "day.events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in a[0]))
    assert load_events(path) == a[0]


def test_no_day_line_and_no_length_is_an_error():
    with pytest.raises(ValueError, match="video_seconds"):
        score_cases([([_ev("theft", 1.0, ["a"])], [])], grace_s=GRACE)


@pytest.mark.parametrize("bad, field", [
    ({"kind": "missing", "slot": "a"}, "opened_t"),
    ({"kind": "missing", "slot": "a", "opened_t": "soon"}, "opened_t"),
    ({"kind": "missing", "slot": 3, "opened_t": 1.0}, "slot"),
    ({"slot": "a", "opened_t": 1.0}, "kind"),
])
def test_bad_incidents_name_the_field(bad, field):
    with pytest.raises(ValueError, match=f"incident 0: '{field}'"):
        score([], [bad], grace_s=GRACE, video_seconds=60.0)


def test_table_has_a_column_per_result():
    r = score(EVENTS, INCIDENTS, grace_s=GRACE, video_seconds=3600.0)
    quiet = score(EVENTS, [INCIDENTS[i] for i in (0, 2, 3, 4, 5, 6)], grace_s=GRACE, video_seconds=3600.0)
    text = format_table({"categories": r, "states": quiet})
    lines = text.splitlines()
    assert "categories" in lines[0] and "states" in lines[0]
    row = next(line for line in lines if line.startswith("false per case-hour"))
    assert row.split()[-2:] == ["8", "0"]
    assert any(line.startswith("theft recall") and "(1/2)" in line for line in lines)
    assert lines[-1].split()[-2:] == ["NO", "yes"]


def test_decision_delays_count_from_the_hand_that_took_the_piece():
    from bench.store_day_score import decision_delays

    frames = [(t / 2, {"r0c0": "occluded" if t / 2 < 102.0 else "empty",     # theft: hand out at 101.5
                       "r1c0": "changed" if t / 2 >= 305.0 else "present",    # swap: hand out at 302.5
                       "r2c0": "empty" if t / 2 >= 501.0 else "present",      # smash: no hands, from removal
                       "r2c1": "empty" if t / 2 >= 509.0 else "present"})
              for t in range(0, 2 * 1000)]
    d = decision_delays(EVENTS, frames)
    assert d["n"] == 8 and d["undecided"] == 4           # r0c1, r1c1, r2c2, the sale's r0c2 never decided
    assert d["by_kind"]["theft"] == [0.5] and d["by_kind"]["swap"] == [2.5] and d["by_kind"]["smash"] == [1.0, 6.0]
    assert d["max_s"] == 6.0 and d["slowest"][0] == {"kind": "smash", "slot": "r2c1", "t": 503.0, "delay_s": 6.0}
