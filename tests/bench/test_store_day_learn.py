"""The fine-tune bench's test crops: what lies in a slot when, and no crop near a hand or a change."""
from __future__ import annotations


import cv2
import pytest

from bench.store_day_learn import case_crops, hand_spans, handfree, piece_at, piece_timeline
from bench.store_day_score import load_events

EVENTS = [
    {"t": 0.0, "kind": "day", "fps": 5.0},
    {"t": 0.0, "kind": "stock", "slots": ["a"], "class": "ring"},
    {"t": 0.0, "kind": "stock", "slots": ["b"], "class": "watch"},
    {"t": 0.0, "kind": "stock", "slots": ["c"], "class": "earring"},
    {"t": 10.0, "kind": "lift_return", "slots": ["a"], "t_end": 20.0, "class": "ring",
     "hands": [[9.0, 11.0], [19.0, 21.0]]},
    {"t": 30.0, "kind": "swap", "slots": ["b"], "t_end": 31.0, "class": "watch", "hands": [[29.0, 32.0]]},
    {"t": 40.0, "kind": "theft", "slots": ["c"], "hands": [[39.0, 41.0]]},
    {"t": 50.0, "kind": "hand_pass", "slots": ["a", "b"], "t_end": 52.0},
    {"t": 60.0, "kind": "restock", "slots": ["c"], "class": "necklace", "hands": [[59.0, 61.0]]},
    {"t": 70.0, "kind": "smash", "slots": ["a", "b"], "removals": {"a": 70.0, "b": 72.0},
     "hands": [[69.0, 71.0], [71.5, 73.0]]},
]


def test_the_timeline_follows_every_kind_of_event():
    tl = piece_timeline(EVENTS)
    assert [piece_at(tl["a"], t)[0] for t in (5, 15, 25, 75)] == ["ring", None, "ring", None]
    assert [piece_at(tl["b"], t)[0] for t in (5, 30.5, 35, 73)] == ["watch", None, "watch", None]
    assert [piece_at(tl["c"], t)[0] for t in (5, 45, 65)] == ["earring", None, "necklace"]
    # the distance to the slot's nearest change (the stock at 0 is not a change)
    assert piece_at(tl["a"], 5.0)[1] == pytest.approx(5.0)
    assert piece_at(tl["c"], 61.0)[1] == pytest.approx(1.0)


def test_a_hand_anywhere_in_the_case_rules_a_frame_out():
    spans = hand_spans(EVENTS)
    assert (50.0, 52.0) in spans and (19.0, 21.0) in spans
    assert not handfree(spans, 52.5)          # within a second of the hand pass
    assert not handfree(spans, 8.5)
    assert handfree(spans, 54.0) and handfree(spans, 5.0)


def test_a_filmed_days_crops_are_labelled_by_the_truth(tmp_path):
    from trainer.synth.day import make_day

    video = tmp_path / "day.mp4"
    make_day(video, minutes=1.8, fps=5.0, size=(480, 270), seed=3)
    day = {"video": video, "slots": video.with_suffix(".slots.yaml"), "events": video.with_suffix(".events.jsonl")}
    counts = case_crops(day, tmp_path / "crops", "t0", every_s=10.0)
    files = sorted((tmp_path / "crops").glob("*/*.jpg"))
    assert sum(counts.values()) == len(files) > 0
    events = load_events(day["events"])
    tl, spans = piece_timeline(events), hand_spans(events)
    for f in files:                           # t0_<frame>_<slot>.jpg in <class>/
        _, frame, slot = f.stem.split("_")
        t = int(frame) / 5.0
        cls, near = piece_at(tl[slot], t)
        assert cls == f.parent.name and near >= 2.0 and handfree(spans, t)
        assert cv2.imread(str(f)) is not None
    # a slot emptied by a removal gives no crop while it is empty
    gone = [(ev["slots"][0], ev["t"]) for ev in events if ev.get("kind") == "theft"]
    assert gone
    for slot, t in gone:
        assert not any(f.stem.endswith(slot) and t + 2 < int(f.stem.split("_")[1]) / 5.0 < t + 30 for f in files)


def test_missing_photo_folders_are_named(tmp_path):
    from bench.store_day_learn import main

    (tmp_path / "train").mkdir()
    with pytest.raises(SystemExit, match="no val/ class folders"):
        main(["--photos", str(tmp_path), "--work", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()


def test_reuse_crops_without_an_earlier_collection_is_refused_before_any_work(tmp_path):
    from bench.store_day_learn import main

    for split in ("train", "val"):
        (tmp_path / "photos" / split).mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"--reuse-crops: .*w/crops holds no collected crops"):
        main(["--photos", str(tmp_path / "photos"), "--work", str(tmp_path / "w"), "--reuse-crops"])
    assert not (tmp_path / "w").exists()
