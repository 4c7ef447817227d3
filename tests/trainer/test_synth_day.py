"""``gemsight-synth day``: a store day's video, slot map and truth, drawn or from product photos."""
from __future__ import annotations

import collections
import json
import math

import cv2
import numpy as np
import pytest
import yaml

from trainer.synth.cli import main
from trainer.synth.day import DRAWN_CLASSES, make_day
from trainer.synth.day_film import PAD, _Film
from trainer.synth.day_plan import PER_HOUR, SEPARATION_S, plan_day
from trainer.synth.items import DRAWERS
from trainer.synth.paint import Painter
from trainer.synth.photos import key_photo, load_photos
from trainer.synth.pieces import drawn_piece, slot_lining
from trainer.synth.video import slot_layout

GRACE = 30.0
KINDS = ("stock", "hand_pass", "lift_return", "sale", "theft", "swap", "smash", "restock", "lighting", "flicker",
         "nudge", "glare")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _frames(path, times, fps):
    want = {int(round(t * fps)): t for t in times}
    cap = cv2.VideoCapture(str(path))
    out, i = {}, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i in want:
            out[want[i]] = frame
        i += 1
    cap.release()
    return out


def _drawn_photo(cls: str, seed: int, size: int = 160) -> np.ndarray:
    """A product shot made here: an item drawn on white (the tests never read real photos)."""
    p = Painter(size)
    DRAWERS[cls](p, np.random.default_rng(seed), size)
    a = cv2.cvtColor(p.mask, cv2.COLOR_GRAY2BGR).astype(np.float32) / 255.0
    return np.clip(255.0 * (1 - a) + p.layer, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for ci, cls in enumerate(("ring", "watch", "bracelet")):
        (root / cls).mkdir()
        for k in range(3):
            cv2.imwrite(str(root / cls / f"{cls}{k}.jpg"), _drawn_photo(cls, 10 * ci + k))
    cv2.imwrite(str(root / "ring" / "white.jpg"), np.full((120, 120, 3), 255, np.uint8))  # nothing to key
    (root / "ring" / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A 2-minute drawn day at 320x192 (600 frames)."""
    return make_day(tmp_path_factory.mktemp("day") / "day.mp4", minutes=2, size=(320, 192), seed=3)


def test_files_and_truth(day):
    cap = cv2.VideoCapture(str(day["video"]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 600 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    cap.release()
    slots = yaml.safe_load(day["slots"].read_text())["slots"]
    assert [s["name"] for s in slots] == [f"r{r}c{c}" for r in range(3) for c in range(4)]
    assert all(len(s["rect"]) == 4 and 0 <= min(s["rect"]) and max(s["rect"]) <= 1 for s in slots)
    lines = _lines(day["events"])
    head = lines[0]
    assert head["kind"] == "day" and head["seconds"] == 120.0 and head["grace_s"] == GRACE
    assert head["slot_map"] == day["slots"].name and head["stocking"] == "drawn"
    kinds = collections.Counter(line.get("kind") or line["action"] for line in lines[1:])
    for kind in KINDS:
        assert kinds[kind] >= 1, kind
    assert kinds["stock"] == 12 and kinds["hand_pass"] == math.ceil(PER_HOUR["hand_pass"] * 2 / 60)
    assert kinds["mark_sold"] == kinds["sale"] and kinds["enrol"] >= kinds["restock"]
    assert [line["t"] for line in lines[1:]] == sorted(line["t"] for line in lines[1:])
    assert {line["class"] for line in lines if line.get("kind") == "stock"} <= set(DRAWN_CLASSES)


def test_truth_rules(day):
    lines = _lines(day["events"])
    end = lines[0]["seconds"]
    events = [e for e in lines[1:] if "kind" in e]
    actions = [e for e in lines[1:] if "action" in e]
    for e in events:
        if e["kind"] == "lift_return":
            assert 0 < e["t_end"] - e["t"] < GRACE
        if e["kind"] in ("theft", "swap", "smash"):
            assert e.get("t_end", e["t"]) <= end - (GRACE + SEPARATION_S)
        if e["kind"] == "swap":
            assert e["new_piece"] != e["piece"] and e["t_end"] > e["t"]
        if e["kind"] == "smash":
            assert len(e["slots"]) >= 3 and e["t_end"] - e["t"] <= 10.0
            assert sorted(e["removals"]) == sorted(e["slots"]) and min(e["removals"].values()) == e["t"]
        if e["kind"] == "sale":
            sold = [a for a in actions if a["action"] == "mark_sold" and a["slot"] == e["slots"][0]]
            assert len(sold) == 1 and e["t"] < sold[0]["t"] < e["t"] + 10.0
        if e["kind"] == "restock":
            enrol = [a for a in actions if a["action"] == "enrol" and a["slot"] == e["slots"][0] and a["t"] > e["t"]]
            assert enrol and enrol[0]["t"] > e["hands"][-1][1]
        if e["kind"] == "hand_pass":
            assert e["target"] in e["slots"] and e["t_end"] > e["t"]
    # Events on one slot keep the grace and 5 s between them.
    per_slot = collections.defaultdict(list)
    for e in events:
        if "hands" in e:
            for s in e["slots"]:
                per_slot[s].append((e["hands"][0][0], e.get("t_end", e["t"])))
    for spans in per_slot.values():
        spans.sort()
        assert all(b[0] - a[1] >= GRACE + SEPARATION_S for a, b in zip(spans, spans[1:]))


def _plan(minutes: float, seed: int = 0):
    layout = slot_layout(3, 4, 960, 540)
    return plan_day(np.random.default_rng([seed, 20]), (3, 4), minutes * 60.0, 5.0, GRACE, list(DRAWN_CLASSES),
                    None, (960, 540), [r for _, r in layout]), layout


def test_an_hour_has_the_counts_the_issue_asks_for():
    plan, _ = _plan(60)
    counts = collections.Counter(e["kind"] for e in plan.events)
    counts.update(a.kind for a in plan.ambient)
    for kind, n in {"hand_pass": 200, "lift_return": 40, "sale": 10, "theft": 10, "swap": 10, "smash": 2,
                    "lighting": 1, "flicker": 1, "nudge": 1, "glare": 1, "restock": 10}.items():
        assert counts[kind] >= n, kind
    hands = sorted((v.t_in, v.t_out) for v in plan.visits)
    assert all(b[0] > a[1] for a, b in zip(hands, hands[1:])), "one hand in the case at a time"


def test_every_change_happens_under_a_hand_that_covers_the_slot():
    plan, layout = _plan(10, seed=4)
    film = _Film(plan, layout, 960, 540, 5.0, 0, linings=None, art=None)
    for c in plan.changes:
        if c.t == 0.0:
            continue
        v = next(v for v in plan.visits if v.slot == c.slot and v.t_reach <= c.t <= v.t_leave)
        frame = np.zeros((540, 960, 3), np.uint8)
        film.hand(frame, v, c.t, (0, 0))
        x0, y0, x1, y1 = layout[c.slot][1]
        assert np.count_nonzero(frame[y0:y1, x0:x1].max(axis=2)) > 0.5 * (x1 - x0) * (y1 - y0)


def test_the_film_shows_what_the_truth_says():
    """Frame by frame, each slot of the filmed case holds what the plan says: a stolen piece is gone once
    the hand has left, a piece passed over by a hand is untouched, a lifted piece comes back."""
    seed, side = 2, None
    layout = slot_layout(3, 4, 320, 192)
    side = layout[0][1][2] - layout[0][1][0]
    plan = plan_day(np.random.default_rng([seed, 20]), (3, 4), 120.0, 5.0, GRACE, list(DRAWN_CLASSES), None,
                    (320, 192), [r for _, r in layout])
    linings = [slot_lining(seed, k, side) for k in range(12)]
    film = _Film(plan, layout, 320, 192, 5.0, seed, linings,
                 lambda pid: drawn_piece(plan.pieces[pid].cls, np.random.default_rng([seed, 7, int(pid[1:])]), side))

    def slot(k):
        x0, y0, x1, y1 = layout[k][1]
        return film.scene[y0 + PAD:y1 + PAD, x0 + PAD:x1 + PAD].copy()

    theft = next(e for e in plan.events if e["kind"] == "theft")
    lift = next(e for e in plan.events if e["kind"] == "lift_return")
    passes = [e for e in plan.events if e["kind"] == "hand_pass"]
    probes = {int(theft["hands"][0][0] * 5) - 1: ("theft before", theft["slots"][0]),
              int(theft["hands"][-1][1] * 5) + 1: ("theft after", theft["slots"][0]),
              int(lift["t"] * 5) + 1: ("lifted", lift["slots"][0]),
              int(lift["t_end"] * 5) + 1: ("returned", lift["slots"][0])}
    for p in passes:
        probes[int(p["t"] * 5)] = ("pass before", p["target"], id(p))
        probes[int(p["t_end"] * 5) + 1] = ("pass after", p["target"], id(p))
    seen = {}
    for i, _ in enumerate(film.frames(600)):
        if i in probes:
            seen[probes[i]] = slot(probes[i][1])
    t_slot = theft["slots"][0]
    empty = linings[t_slot].empty
    assert not np.array_equal(seen[("theft before", t_slot)], empty)
    assert np.array_equal(seen[("theft after", t_slot)], empty)
    assert np.array_equal(seen[("lifted", lift["slots"][0])], linings[lift["slots"][0]].empty)
    assert not np.array_equal(seen[("returned", lift["slots"][0])], linings[lift["slots"][0]].empty)
    untouched = [p for p in passes if not any(c.slot == p["target"] and p["t"] <= c.t <= p["t_end"] + 0.2
                                             for c in plan.changes)]
    assert untouched
    for p in untouched:
        assert np.array_equal(seen[("pass before", p["target"], id(p))], seen[("pass after", p["target"], id(p))])


def test_same_seed_same_day(tmp_path):
    kw = dict(minutes=1.5, size=(256, 160), seed=9, grace_s=10.0)
    a = make_day(tmp_path / "a.mp4", **kw)
    b = make_day(tmp_path / "b.mp4", **kw)
    strip = [json.dumps({k: v for k, v in line.items() if k not in ("video", "slot_map")}) for line in
             _lines(a["events"])]
    assert strip == [json.dumps({k: v for k, v in line.items() if k not in ("video", "slot_map")})
                     for line in _lines(b["events"])]
    fa, fb = _frames(a["video"], [0.0, 30.0, 60.0, 89.8], 5.0), _frames(b["video"], [0.0, 30.0, 60.0, 89.8], 5.0)
    assert all(np.array_equal(fa[t], fb[t]) for t in fa)


def test_key_photo_finds_the_piece_and_refuses_a_busy_background():
    for cls in ("watch", "ring"):
        p = Painter(160)
        DRAWERS[cls](p, np.random.default_rng(2), 160)
        mask, why = key_photo(_drawn_photo(cls, 2))
        assert why == ""
        truth, keyed = p.mask > 127, mask > 0
        near = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert np.count_nonzero(keyed & near) > 0.95 * np.count_nonzero(keyed), "no background kept"
        assert np.count_nonzero(keyed & truth) > 0.9 * np.count_nonzero(truth), "the piece kept"
    busy = np.random.default_rng(0).integers(0, 255, (160, 160, 3), dtype=np.uint8)
    assert "not plain" in key_photo(busy)[1]
    assert "covers" in key_photo(np.full((160, 160, 3), 250, np.uint8))[1]


def test_a_hair_thin_piece_is_skipped(tmp_path):
    (tmp_path / "ring").mkdir()
    thin = np.full((200, 200, 3), 255, np.uint8)
    cv2.circle(thin, (100, 100), 80, (40, 120, 200), 1)
    cv2.imwrite(str(tmp_path / "ring" / "thin.jpg"), thin)
    cv2.imwrite(str(tmp_path / "ring" / "good.jpg"), _drawn_photo("ring", 2))
    assert [p.source for p in load_photos(tmp_path)["ring"]] == ["ring/good.jpg"]


def test_photo_day_uses_a_distinct_photo_per_piece(tmp_path, photo_dir):
    keyed = load_photos(photo_dir)
    assert {k: len(v) for k, v in keyed.items()} == {"bracelet": 3, "ring": 3, "watch": 3}
    out = make_day(tmp_path / "p.mp4", minutes=2, size=(320, 192), seed=5, photos=photo_dir)
    lines = _lines(out["events"])
    assert lines[0]["stocking"] == "photos" and lines[0]["photos"] == str(photo_dir)
    placed = [(e["class"], e["source"]) for e in lines if e.get("kind") in ("stock", "restock")]
    assert {c for c, _ in placed} <= {"ring", "watch", "bracelet"}
    assert all(src.startswith(f"{c}/") and "white" not in src for c, src in placed)
    by_class = collections.defaultdict(list)
    for c, src in placed[:12]:
        by_class[c].append(src)
    # Stock takes every photo of a class once before showing one again, mirrored.
    for v in by_class.values():
        assert len({src.split(" ")[0] for src in v[:3]}) == len(v[:3]) and len(set(v)) == len(v)
        assert all(src.endswith("(mirrored)") for src in v[3:])
    source = {e["piece"]: e["source"] for e in lines if "source" in e}
    swap = next(e for e in lines if e.get("kind") == "swap")
    assert swap["new_source"].split(" ")[0] != source[swap["piece"]].split(" ")[0]
    assert swap["new_source"].startswith(swap["class"] + "/")


@pytest.mark.parametrize("argv, field", [
    (["--minutes", "1"], "--minutes"),
    (["--minutes", "0"], "--minutes"),
    (["--minutes", "-3"], "--minutes"),
    (["--fps", "0"], "--fps"),
    (["--fps", "-5"], "--fps"),
    (["--fps", "0.5"], "--fps"),
    (["--grace-s", "0"], "--grace-s"),
    (["--grace-s", "2"], "--grace-s"),
    (["--slots", "1x2"], "--slots"),
    (["--size", "321x240"], "--size"),
    (["--photos", "missing"], "--photos"),
    (["--photos", "empty"], "--photos"),
    (["--photos", "blank"], "no usable photo"),
    (["--photos", "odd"], "tiara"),
])
def test_bad_input_is_one_line_naming_the_option(tmp_path, capsys, monkeypatch, argv, field):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank" / "ring").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "blank" / "ring" / "white.jpg"), np.full((100, 100, 3), 255, np.uint8))
    (tmp_path / "odd" / "tiara").mkdir(parents=True)
    code = main(["day", "OUT.mp4", "--minutes", "2", "--size", "320x192", *argv])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gemsight-synth: error:") and field in err, err
    assert not list(tmp_path.rglob("OUT*"))


def test_cli_day_prints_its_three_files(tmp_path, capsys):
    assert main(["day", str(tmp_path / "d.mp4"), "--minutes", "1.5", "--size", "256x160", "--grace-s", "10",
                 "--fps", "4"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "d.mp4"), str(tmp_path / "d.slots.yaml"), str(tmp_path / "d.events.jsonl")]
    assert _lines(tmp_path / "d.events.jsonl")[0]["frames"] == 360
