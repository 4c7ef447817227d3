"""The synthetic display-case generator: datasets, videos, pictures and the command line."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from edge.errors import ConfigError
from trainer.synth import (DEFAULT_CLASSES, contact_sheet, make_images, make_video, preview_frame, render_item,
                           split_counts)
from trainer.synth.cli import main


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def _read_frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A small 2x3 case video (3 s at 8 fps, 320x240)."""
    return make_video(tmp_path_factory.mktemp("video") / "case.mp4", slots=(2, 3), seconds=3.0, fps=8.0,
                      size=(320, 240), seed=5)


def test_render_item_every_class():
    for cls in DEFAULT_CLASSES:
        img = render_item(cls, np.random.default_rng(1), 64)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert img.std() > 3, f"{cls}: a flat image"
    # The same generator state gives the same pixels.
    a = render_item("ring", np.random.default_rng(9), 80)
    b = render_item("ring", np.random.default_rng(9), 80)
    assert np.array_equal(a, b)


def test_items_differ_from_empty_tray():
    """An item must actually show: rendered with the same tray generator, it changes the slot."""
    from trainer.synth.render import render_scene

    for cls in DEFAULT_CLASSES[:-1]:
        item = render_scene(cls, np.random.default_rng(3), 96, tray_rng=np.random.default_rng(4), noise=False)
        empty = render_scene("empty", np.random.default_rng(3), 96, tray_rng=np.random.default_rng(4), noise=False)
        changed = np.mean(np.abs(item.astype(int) - empty.astype(int)).max(axis=2) > 30)
        assert changed > 0.02, f"{cls}: covers only {changed:.1%} of the slot"


def test_split_counts():
    assert split_counts(10, 0.2) == (8, 2)
    assert split_counts(3, 0.1) == (2, 1)  # a non-zero fraction keeps one validation image
    assert split_counts(5, 0.0) == (5, 0)
    assert split_counts(1, 0.5) == (1, 0)


def test_make_images_counts_split_and_determinism(tmp_path):
    kwargs = dict(classes=("ring", "earring", "empty"), per_class=6, size=48, val_fraction=0.34, seed=3)
    a = make_images(tmp_path / "a", **kwargs)
    for cls in kwargs["classes"]:
        assert len(list((a / "train" / cls).glob("*.jpg"))) == 4
        assert len(list((a / "val" / cls).glob("*.jpg"))) == 2
    img = cv2.imread(str(next((a / "train" / "ring").glob("*.jpg"))))
    assert img.shape == (48, 48, 3)
    meta = json.loads((a / "synth.json").read_text())
    assert meta["train_per_class"] == 4 and meta["val_per_class"] == 2
    b = make_images(tmp_path / "b", **kwargs)
    c = make_images(tmp_path / "c", workers=2, **kwargs)
    ta = _tree_bytes(a)
    assert len(ta) == 18
    assert ta == _tree_bytes(b), "two runs with the same seed differ"
    assert ta == _tree_bytes(c), "workers=2 differs from workers=1"
    d = make_images(tmp_path / "d", **{**kwargs, "seed": 4})
    assert ta.keys() == _tree_bytes(d).keys() and ta != _tree_bytes(d)


def test_make_images_rerun_replaces_old_files(tmp_path):
    make_images(tmp_path, classes=("watch",), per_class=5, size=32, val_fraction=0.2)
    make_images(tmp_path, classes=("watch",), per_class=3, size=32, val_fraction=0.0)
    assert len(list((tmp_path / "train" / "watch").glob("*.jpg"))) == 3
    assert not list((tmp_path / "val" / "watch").glob("*.jpg"))


@pytest.mark.parametrize("kwargs, field", [
    (dict(classes=("ring", "tiara")), "--classes"),
    (dict(classes=()), "--classes"),
    (dict(per_class=0), "--per-class"),
    (dict(size=31), "--size"),
    (dict(val_fraction=1.0), "--val-fraction"),
    (dict(val_fraction=-0.1), "--val-fraction"),
    (dict(workers=0), "--workers"),
])
def test_make_images_bad_arguments(tmp_path, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        make_images(tmp_path, **kwargs)
    assert not list(tmp_path.rglob("*.jpg"))


def test_video_reads_back(video):
    frames = _read_frames(video["video"])
    assert len(frames) == 24
    assert frames[0].shape == (240, 320, 3)
    assert frames[0].std() > 10


def test_video_truth_covers_every_frame_and_slot(video):
    slots = yaml.safe_load(video["slots"].read_text())["slots"]
    names = [s["name"] for s in slots]
    assert names == ["r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2"]
    lines = video["truth"].read_text().splitlines()
    assert len(lines) == 24
    for i, line in enumerate(lines):
        rec = json.loads(line)
        assert rec["frame"] == i
        assert list(rec["slots"]) == names
        assert set(rec["slots"].values()) <= set(DEFAULT_CLASSES)
        assert set(rec["hand"]) <= set(names)


def test_video_slot_rectangles_inside_frame_and_square(video):
    slots = yaml.safe_load(video["slots"].read_text())["slots"]
    for s in slots:
        x0, y0, x1, y1 = s["rect"]
        assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0, s
        w, h = (x1 - x0) * 320, (y1 - y0) * 240
        assert w >= 32 and abs(w - h) <= 1.0, s
    # Slots do not overlap.
    rects = [s["rect"] for s in slots]
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_video_is_deterministic(video, tmp_path):
    again = make_video(tmp_path / "case.mp4", slots=(2, 3), seconds=3.0, fps=8.0, size=(320, 240), seed=5)
    a, b = _read_frames(video["video"]), _read_frames(again["video"])
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert video["truth"].read_bytes() == again["truth"].read_bytes()
    assert video["slots"].read_text().split("\n", 1)[1] == again["slots"].read_text().split("\n", 1)[1]


def test_video_stock_seed_films_the_same_case_with_other_items(video, tmp_path):
    """Same case seed, another stock: the case around the slots is the same, what lies in them is not."""
    other = make_video(tmp_path / "own.mp4", slots=(2, 3), seconds=3.0, fps=8.0, size=(320, 240), seed=5,
                       stock_seed=77)
    a, b = _read_frames(video["video"])[0], _read_frames(other["video"])[0]
    rects = [s["rect"] for s in yaml.safe_load(video["slots"].read_text())["slots"]]
    h, w = a.shape[:2]
    outside = np.ones((h, w), bool)
    for x0, y0, x1, y1 in rects:
        outside[int(y0 * h) - 4:int(y1 * h) + 4, int(x0 * w) - 4:int(x1 * w) + 4] = False
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff[outside].mean() < 2.0              # the same floor, light and glass (MPEG-4 noise aside)
    assert diff[~outside].mean() > 3 * max(diff[outside].mean(), 1.0)   # other items in the slots
    truth = [json.loads(line)["slots"] for line in video["truth"].read_text().splitlines()]
    truth_other = [json.loads(line)["slots"] for line in other["truth"].read_text().splitlines()]
    assert truth != truth_other

def test_video_changes_are_sparse_and_hands_rare(tmp_path):
    fps = 10.0
    paths = make_video(tmp_path / "long.mp4", slots=(2, 2), seconds=24.0, fps=fps, size=(192, 160), seed=2)
    recs = [json.loads(line) for line in paths["truth"].read_text().splitlines()]
    hand_frames = sum(1 for r in recs if r["hand"])
    assert 0 < hand_frames <= 0.05 * len(recs)
    changes = 0
    for name in recs[0]["slots"]:
        seq = [r["slots"][name] for r in recs]
        at = [i for i in range(1, len(seq)) if seq[i] != seq[i - 1]]
        changes += len(at)
        assert all(b - a >= 3 * fps for a, b in zip([0] + at, at)), f"{name}: changes at {at}"
    assert changes >= 1


def test_contact_sheet_and_preview_frame(tmp_path, video):
    ds = make_images(tmp_path / "ds", classes=("ring", "necklace", "empty"), per_class=3, size=32, val_fraction=0.0)
    sheet = contact_sheet(ds, tmp_path / "sheet.png", per_class=4)
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[0] >= 3 * 96 and img.shape[1] >= 4 * 96
    frame = preview_frame(video["video"], video["slots"], tmp_path / "frame.png", frame_index=5)
    img = cv2.imread(str(frame))
    assert img.shape == (240, 320, 3)
    # The slot outlines are drawn in pure yellow.
    assert np.count_nonzero((img[..., 0] < 40) & (img[..., 1] > 220) & (img[..., 2] > 220)) > 500


def test_cli_images_preview_video_frame(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["images", str(out), "--classes", "ring,empty", "--per-class", "2", "--size", "32",
                 "--val-fraction", "0.5", "--seed", "1"]) == 0
    assert len(list(out.rglob("*.jpg"))) == 4
    assert main(["preview", str(out), str(tmp_path / "sheet.png")]) == 0
    assert (tmp_path / "sheet.png").stat().st_size > 1000
    vid = tmp_path / "v.mp4"
    assert main(["video", str(vid), "--slots", "1x2", "--seconds", "1", "--fps", "5", "--size", "160x96"]) == 0
    assert len(_read_frames(vid)) == 5
    assert main(["frame", str(vid), str(tmp_path / "f.png")]) == 0
    assert cv2.imread(str(tmp_path / "f.png")).shape == (96, 160, 3)
    printed = capsys.readouterr().out
    assert str(vid) in printed


@pytest.mark.parametrize("argv, field", [
    (["images", "OUT", "--classes", "ring,tiara"], "--classes"),
    (["images", "OUT", "--per-class", "0"], "--per-class"),
    (["images", "OUT", "--per-class", "many"], "--per-class"),
    (["images", "OUT", "--size", "16"], "--size"),
    (["images", "OUT", "--val-fraction", "1.5"], "--val-fraction"),
    (["video", "OUT.mp4", "--slots", "20x20", "--size", "320x240"], "--slots"),
    (["video", "OUT.mp4", "--slots", "3"], "--slots"),
    (["video", "OUT.mp4", "--size", "1280by720"], "--size"),
    (["video", "OUT.mp4", "--size", "321x240"], "--size"),
    (["video", "OUT.mp4", "--fps", "0"], "--fps"),
    (["video", "OUT.mp4", "--seconds", "-1"], "--seconds"),
    (["video", "OUT.mp4", "--classes", "ring,crown"], "--classes"),
    (["frame", "missing.mp4", "OUT.png", "--slots", "missing.slots.yaml"], "missing.slots.yaml"),
    (["bogus"], "bogus"),
])
def test_cli_bad_arguments(tmp_path, capsys, monkeypatch, argv, field):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gemsight-synth: error:") and field in err, err
    assert not list(tmp_path.rglob("*.jpg")) and not list(tmp_path.rglob("*.mp4"))
